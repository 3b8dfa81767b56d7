"""AppTest of the app shell: first render without TensorFlow, sidebar state, settings, home."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from streamlit.testing.v1 import AppTest

from core import settings
from tests.helpers import REPO, unescaped, write_images

APP = str(REPO / "streamlit_app.py")


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_no_legacy_pages_folder():
    """A pages/ folder beside the entry script would switch Streamlit to its legacy
    auto-discovery and run page files without the shell; pages live in app_pages/."""
    assert not (REPO / "pages").exists(), "move page modules to app_pages/ and register them in streamlit_app.py"


def test_first_render_does_not_import_tensorflow(tl_home):
    """In a fresh process, as `streamlit run` would: TF only loads when a page needs a model,
    and the first page already stops Streamlit's end-of-run ``clear_session`` for every page."""
    code = (
        "import sys, json; from streamlit.testing.v1 import AppTest\n"
        "from streamlit.runtime.scriptrunner import script_runner as sr\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=120); at.run()\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'keras': 'keras' in sys.modules,\n"
        "  'exc': [e.value for e in at.exception], 'title': [t.value for t in at.title],\n"
        "  'kernels_kept': getattr(sr._clean_problem_modules, '_tl_keeps_kernels', False)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=os.environ.copy(), timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"tf": False, "keras": False, "exc": [], "title": ["Transfer Lab"], "kernels_kept": True}


def test_home_and_sidebar(tl_home):
    at = new_app()
    assert "transfer learning" in at.markdown[0].value
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown)
    assert "none yet" in sidebar_text
    assert str(tl_home) in unescaped(" ".join(c.value for c in at.sidebar.caption))
    backbone = at.sidebar.selectbox(key="tl_backbone")
    assert backbone.value == "mobilenet_v2"  # no weights on this machine: a small download
    backbone.set_value("vgg16").run()
    at.switch_page("app_pages/dataset.py").run()  # the choice survives a page switch
    assert at.sidebar.selectbox(key="tl_backbone").value == "vgg16"


def test_local_weights_make_a_backbone_the_default(tmp_path, monkeypatch):
    from core.nets.backbones import get_spec

    (tmp_path / get_spec("resnet50").weights_filename()).write_bytes(b"x")
    monkeypatch.setenv("TRANSFER_LAB_WEIGHTS_DIR", str(tmp_path))
    at = new_app()
    box = at.sidebar.selectbox(key="tl_backbone")
    assert box.value == "resnet50"
    assert box.format_func("resnet50") == "✓ ResNet50" and box.format_func("vgg16") == "VGG16"
    assert "✓ ImageNet weights on this machine" in [c.value for c in at.sidebar.caption]


def test_settings_are_the_servers_and_read_only(tl_home):
    """No visitor chooses where the server keeps data or reads weights: the sidebar names the
    caller's workspace and the server's configuration, and has no field to change either."""
    at = new_app()
    assert not at.sidebar.text_input and not at.sidebar.button
    captions = unescaped(" ".join(c.value for c in at.sidebar.caption))
    assert f"Your workspace: {tl_home}/users/local" in captions
    assert str(tl_home) in unescaped(" ".join(m.value for m in at.sidebar.markdown))


def test_start_with_sample_scans_it(tmp_path, monkeypatch):
    for i, cls in enumerate(["cats", "dogs"]):
        write_images(tmp_path / "samples" / "cats_vs_dogs" / "train" / cls, i, 5)
        write_images(tmp_path / "samples" / "cats_vs_dogs" / "validation" / cls, i, 2)
    monkeypatch.setenv("TRANSFER_LAB_SAMPLES_DIR", str(tmp_path / "samples"))
    at = new_app()
    at.button[0].click().run()
    assert not at.exception
    assert at.title[0].value == "Dataset"
    assert at.session_state["tl_dataset"].name == "cats_vs_dogs"
    assert [m.value for m in at.metric][:4] == ["14", "2", "10", "4"]
    assert "cats\\_vs\\_dogs" in " ".join(m.value for m in at.sidebar.markdown)  # shown as plain text


def test_start_without_sample_explains_where_to_put_it(monkeypatch):
    monkeypatch.delenv("TRANSFER_LAB_SAMPLES_DIR", raising=False)
    at = new_app()
    at.button[0].click().run()
    assert at.title[0].value == "Dataset"
    assert any("cats_and_dogs_filtered.zip" in i.value for i in at.info)
    assert any(b.label.startswith("Download it now") for b in at.button)
    assert "tl_dataset" not in at.session_state
