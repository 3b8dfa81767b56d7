"""Zip uploads: hostile archives are rejected and leave nothing behind; good ones scan."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from core import layout
from core.data.archives import dataset_from_zip, extract_zip, safe_name
from core.data.dataset import scan_folder
from core.errors import UnsafeArchive


def make_zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buf.getvalue()


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture
def area(tmp_path) -> Path:
    """An empty parent folder for ``dest``: after a rejection it must still be empty."""
    folder = tmp_path / "area"
    folder.mkdir()
    return folder


def reject(data, area: Path, match: str, **limits) -> None:
    with pytest.raises(UnsafeArchive, match=match):
        extract_zip(data, area / "out", **limits)
    assert listing(area) == set(), "a rejected zip left files behind"


@pytest.mark.parametrize("name", ["../evil.txt", "good/../../evil.txt", "..\\evil.txt"])
def test_traversal_rejected(area, tmp_path, name):
    data = make_zip({"ok.txt": b"fine", name: b"pwned"})
    reject(data, area, "outside the folder")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("name", ["/tmp/abs-evil.txt", "C:/evil.txt", "c:\\evil.txt"])
def test_absolute_path_rejected(area, name):
    with pytest.raises(UnsafeArchive, match="absolute path") as err:
        extract_zip(make_zip({"ok.txt": b"fine", name: b"pwned"}), area / "out")
    assert name in str(err.value)
    assert listing(area) == set()
    assert not Path("/tmp/abs-evil.txt").exists()


def test_symlink_member_rejected(area):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/real.txt", b"fine")
        link = zipfile.ZipInfo("a/link")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match="symbolic link") as err:
        extract_zip(buf.getvalue(), area / "out")
    assert "a/link" in str(err.value)
    assert listing(area) == set()


def test_zip_bomb_ratio_rejected_before_inflating(area, monkeypatch):
    data = make_zip({"a/ok.txt": b"fine", "a/bomb.bin": bytes(8 * 1024 * 1024)})
    assert len(data) < 100_000  # really a bomb: 8 MiB from a few KB
    reject(data, area, r"a/bomb\.bin.*zip bomb")
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a: pytest.fail("inflated a member of a bomb"))
    reject(data, area, r"a/bomb\.bin' expands \d+x")


def test_total_size_limit(area):
    data = make_zip({"a.bin": os.urandom(3000), "b.bin": os.urandom(3000)})
    reject(data, area, r"exceed.*b\.bin", max_total_bytes=5000)
    assert extract_zip(data, area / "out", max_total_bytes=6000).files == 2


def test_lying_size_header_rejected(area):
    """A member whose headers declare fewer bytes than it inflates to is caught while streaming."""
    payload = b"0123456789" * 1000
    data = bytearray(make_zip({"a/small.txt": payload}))
    declared = len(payload).to_bytes(4, "little")
    assert data.count(declared) == 2  # local header and central directory
    data = data.replace(declared, (100).to_bytes(4, "little"))
    reject(bytes(data), area, "bad zip|larger than its header")


class EndlessMember(io.RawIOBase):
    """A member stream that never ends, as if the zip library trusted a lying header."""

    chunks = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        EndlessMember.chunks += 1
        buf[:] = bytes(len(buf))
        return len(buf)


def test_streaming_counts_real_bytes(area, monkeypatch):
    """The byte counter stops a member that inflates past its declared size, whatever the library does."""
    data = make_zip({"a/small.txt": b"x" * 100})
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info: io.BufferedReader(EndlessMember()))
    reject(data, area, r"a/small\.txt.*larger than its header")
    assert EndlessMember.chunks < 1000, "extraction kept reading an endless member"


def test_too_many_files(area):
    data = make_zip({f"a/{i}.txt": b"x" for i in range(6)})
    reject(data, area, "more than 5 files", max_files=5)
    assert extract_zip(data, area / "out", max_files=6).files == 6


def test_skipped_members_count_toward_the_limit(area):
    """Hidden junk is skipped, but each member still costs work: 70,000 of them (past the 65,535 a
    zip's classic end record can count) and two photos are refused from that record, before a
    member is parsed or a byte written."""
    import tracemalloc

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a/one.png", b"\x89PNG")
        zf.writestr("b/two.png", b"\x89PNG")
        for i in range(70_000):
            zf.writestr(f".junk/{i}", b"")
    tracemalloc.start()
    reject(buf.getvalue(), area, "more than 20,000 files")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 1024**2  # no ZipInfo per member (parsing 300,000 took 196 MB)
    small = io.BytesIO()
    with zipfile.ZipFile(small, "w") as zf:
        zf.writestr("a/one.png", b"\x89PNG")
        for i in range(6):
            zf.writestr(f".junk/{i}", b"")
    reject(small.getvalue(), area, "more than 5 files", max_files=5)  # counted after parsing too


@pytest.mark.parametrize("data", [b"this is not a zip", b"", b"PK\x03\x04" + bytes(40)])
def test_not_a_zip(area, data):
    reject(data, area, "bad zip")


def test_truncated_and_corrupt_member(area):
    good = make_zip({"a/one.bin": os.urandom(50_000), "a/two.bin": os.urandom(50_000)})
    reject(good[: len(good) // 2], area, "bad zip")
    corrupt = bytearray(good)
    start = corrupt.index(b"a/two.bin") + len("a/two.bin") + 1000  # inside the second member's data
    corrupt[start:start + 64] = bytes(64)
    reject(bytes(corrupt), area, r"bad zip.*a/two\.bin")


def test_encrypted_member_rejected(area):
    data = bytearray(make_zip({"a/secret.txt": b"hidden"}))
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the "encrypted" flag bit
        at = data.index(sig) + offset
        data[at] |= 0x1
    reject(bytes(data), area, "encrypted")


def test_non_utf8_name_stays_inside(area):
    raw = bytearray(make_zip({"a/cafX.txt": b"latte"}))
    assert raw.count(b"cafX") == 2
    raw = raw.replace(b"cafX", b"caf\xe9")  # latin-1 bytes, no UTF-8 flag: zipfile decodes cp437
    report = extract_zip(bytes(raw), area / "out")
    assert report.files == 1
    (extracted,) = [p for p in (area / "out").rglob("*") if p.is_file()]
    assert extracted.read_bytes() == b"latte"
    assert extracted.parent == area / "out" / "a"
    assert listing(area) == {"out", "out/a", f"out/a/{extracted.name}"}


def test_nested_zip_and_junk_skipped(area):
    inner = make_zip({"../escape.txt": b"pwned"})
    data = make_zip({
        "a/img.txt": b"kept", "a/inner.zip": inner, "__MACOSX/a/._img.txt": b"junk",
        "a/.DS_Store": b"junk", "a/b/": b"",
    })
    report = extract_zip(data, area / "out")
    assert listing(area) == {"out", "out/a", "out/a/img.txt"}
    reasons = {s.name: s.reason for s in report.skipped}
    assert "nested archive" in reasons["a/inner.zip"]
    assert set(reasons) == {"a/inner.zip", "__MACOSX/a/._img.txt", "a/.DS_Store"}


def test_duplicate_member_names_keep_first(area):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("a/x.txt", b"first")
        zf.writestr("a/x.txt", b"second")
    report = extract_zip(buf.getvalue(), area / "out")
    assert (area / "out" / "a" / "x.txt").read_bytes() == b"first"
    assert [s.reason for s in report.skipped] == ["duplicate name in the zip (first copy kept)"]


def test_replace_is_all_or_nothing(area):
    dest = area / "out"
    extract_zip(make_zip({"old.txt": b"v1"}), dest)
    with pytest.raises(UnsafeArchive):
        extract_zip(make_zip({"new.txt": b"v2", "../evil.txt": b"x"}), dest)
    assert listing(area) == {"out", "out/old.txt"}, "a failed upload must keep the previous dataset"
    extract_zip(make_zip({"new.txt": b"v2"}), dest)
    assert listing(area) == {"out", "out/new.txt"}


class ReadOnlyStream:
    """An upload stream that cannot seek."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(n)


def test_good_zip_with_wrapper_folder_scans(tmp_path, image_folder, tl_home):
    members = {
        f"My Pets/{p.relative_to(image_folder).as_posix()}": p.read_bytes()
        for p in sorted(image_folder.rglob("*.png"))
    }
    members["__MACOSX/My Pets/._junk"] = b"junk"
    members["My Pets/extra.zip"] = make_zip({"x.txt": b"x"})
    zip_path = tmp_path / "pets.zip"
    zip_path.write_bytes(make_zip(members, zipfile.ZIP_STORED))

    for source in (zip_path, zip_path.read_bytes(), ReadOnlyStream(zip_path.read_bytes())):
        report = dataset_from_zip(source, "../My Pets!.zip")
        assert report.folder == layout.workspace_dir("datasets") / "My_Pets"
        assert report.folder.is_relative_to(tl_home)
        assert report.files == 32
        assert len(report.skipped) == 2

    ds = scan_folder(report.folder)
    assert ds.classes == ["a", "b"]
    assert ds.counts() == {"train": {"a": 12, "b": 12}, "validation": {"a": 4, "b": 4}}
    assert ds.bad_files == []
    assert listing(layout.workspace_dir("datasets")) == {"My_Pets"} | {
        f"My_Pets/{rel}" for rel in listing(report.folder)
    }


@pytest.mark.parametrize("raw,expected", [
    ("cats.zip", "cats"), ("../../etc", "etc"), ("..", "dataset"), ("été photos", "t_photos"),
    ("a/b\\c", "a_b_c"), ("x" * 100, "x" * 64),
])
def test_safe_name(raw, expected):
    assert safe_name(raw) == expected

