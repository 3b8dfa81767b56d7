"""Who may reach a served app: the checks it runs before it draws anything.

Without sign-in the app is one person's: every visitor acts as its owner (they can
start, stop and delete everything). So it listens on loopback only, and an address
that others can reach is refused unless whoever runs the server gives the opt-in
``TRANSFER_LAB_OPEN_WITHOUT_SIGN_IN`` with its long value word for word.

With sign-in, the cookie that carries who someone is must be signed with a real
secret: the placeholder of ``.streamlit/secrets.toml.example``, or anything short
enough to guess, would let anyone forge a cookie and sign in as anyone.

``python -m core.serving ADDRESS`` runs the first check for ``scripts/serve.sh``.
"""

from __future__ import annotations

import ipaddress
import sys
import tomllib
from pathlib import Path

from core import settings

MIN_SECRET_CHARS = 32
MIN_SECRET_SYMBOLS = 12  # distinct characters: "aaaa…" is long but not secret
EXAMPLE_SECRETS = frozenset({
    "a long random string: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
})
MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
SECRETS_FILE = Path(__file__).resolve().parents[1] / ".streamlit" / "secrets.toml"


def is_loopback(address: str | None) -> bool:
    """True for an address only this machine reaches (an empty one means every interface)."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def open_without_sign_in_refusal(address: str | None) -> str | None:
    """Why the app refuses to serve ``address`` without sign-in, or None when it may."""
    if is_loopback(address) or settings.open_without_sign_in():
        return None
    where = address or "every network interface"
    return (f"This server listens on {where} without sign-in, so anyone who reaches it would control every "
            "run and dataset on it. Configure sign-in (README, \"Serving a team\"), or listen on 127.0.0.1 "
            f"only. To open it anyway, whoever runs the server sets "
            f"{settings.OPEN_WITHOUT_SIGN_IN_ENV}={settings.OPEN_WITHOUT_SIGN_IN_VALUE}.")


def weak_cookie_secret(secret: object) -> str | None:
    """Why ``[auth] cookie_secret`` cannot protect sign-in, or None when it is fit to."""
    text = secret if isinstance(secret, str) else ""
    if text in EXAMPLE_SECRETS or "long random string" in text:
        problem = "is the example's placeholder, which anyone can read"
    elif len(text) < MIN_SECRET_CHARS:
        problem = f"has {len(text)} characters; at least {MIN_SECRET_CHARS} are needed"
    elif len(set(text)) < MIN_SECRET_SYMBOLS:
        problem = "repeats too few characters to be secret"
    else:
        return None
    return (f"Sign-in is turned off: the cookie_secret in .streamlit/secrets.toml {problem}, so anyone could "
            f"forge a sign-in. Whoever runs the server makes one with `{MAKE_ONE}` and restarts the app.")


def sign_in_configured(path: Path = SECRETS_FILE) -> bool:
    """Whether the app's secrets file has an ``[auth]`` section (what ``st.login`` reads)."""
    try:
        return bool(tomllib.loads(path.read_text(encoding="utf-8")).get("auth"))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def main(argv: list[str]) -> int:
    address = argv[0] if argv else ""
    if sign_in_configured():
        try:
            secret = tomllib.loads(SECRETS_FILE.read_text(encoding="utf-8"))["auth"].get("cookie_secret")
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            secret = None
        problem = weak_cookie_secret(secret)
    else:
        problem = open_without_sign_in_refusal(address)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
