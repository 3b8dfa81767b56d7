"""AppTest of the Label and Explore pages, with a tiny local backbone (fast tier)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data import builder as db
from tests import tiny_backbone
from tests.helpers import REPO, texts, write_images

APP = str(REPO / "streamlit_app.py")
TIMEOUT = 240


@pytest.fixture(autouse=True)
def tiny(tiny):
    """Every test here uses the tiny backbone."""
    return tiny


def png(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/png")


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return ok(at.switch_page(page).run())


def button(at: AppTest, label_start: str):
    found = [b for b in at.button if b.label.startswith(label_start)]
    assert found, f"no button starting with {label_start!r}: {[b.label for b in at.button]}"
    return found[0]



def test_create_a_dataset_and_add_photos(tmp_path):
    at = open_page("app_pages/label.py")
    assert at.title[0].value == "Label"
    assert at.selectbox(key="tl_lab_ds").value.startswith("➕")
    assert "No dataset yet" in texts(at.info)
    at.text_input(key="tl_lab_new_name").set_value("my pets")
    at.text_input(key="tl_lab_new_classes").set_value("cats, dogs")
    ok(button(at, "Create dataset").click().run())
    assert at.selectbox(key="tl_lab_ds").value == "my_pets"
    assert "Created dataset 'my_pets'" in texts(at.success)
    assert {m.label: m.value for m in at.metric}["Classes"] == "2"

    cats = write_images(tmp_path / "c", 0, 3)
    uploader = at.file_uploader[0]
    uploader.set_value([png(p) for p in cats] + [("broken.png", b"\x89PNG\r\n\x1a\n nope", "image/png")])
    ok(at.run())
    ok(button(at, "Add 4 photos to 'cats'").click().run())
    warning = texts(at.warning)
    assert "Added to 'cats': 3 photos" in warning and "broken.png" in warning and "rejected 1" in warning
    assert sorted(p.name for p in db.photos("my_pets")["cats"]) == ["img_000.png", "img_001.png", "img_002.png"]
    assert {m.label: m.value for m in at.metric}["Photos"] == "3"
    assert len(at.image) == 3  # the thumbnails of 'cats'
    assert not at.file_uploader[0].value  # cleared for the next batch


def test_classes_and_photos_can_be_edited(tmp_path):
    db.create_dataset("d", ["a", "b"])
    db.add_photos("d", "a", [(p.name, p) for p in write_images(tmp_path / "a", 0, 3)])
    at = open_page("app_pages/label.py")
    assert at.selectbox(key="tl_lab_ds").value == "d"
    fp = db.fingerprint("d")

    at.text_input(key="tl_lab_new_class").set_value("birds")
    ok(button(at, "Add class").click().run())
    assert db.classes("d") == ["a", "b", "birds"]
    at.selectbox(key="tl_lab_rename_old").set_value("birds")
    at.text_input(key="tl_lab_rename_new").set_value("parrots")
    ok(button(at, "Rename").click().run())
    assert db.classes("d") == ["a", "b", "parrots"]

    at.selectbox(key="tl_lab_delete_class").set_value("parrots")
    ok(button(at, "Delete class").click().run())
    assert "Tick" in texts(at.warning) and "parrots" in db.classes("d")
    at.selectbox(key="tl_lab_delete_class").set_value("parrots")
    at.checkbox(key="tl_lab_delete_sure").check()
    ok(button(at, "Delete class").click().run())
    assert db.classes("d") == ["a", "b"]

    at.checkbox(key="tl_lab_sel::a::img_000.png").check()
    at.checkbox(key="tl_lab_sel::a::img_001.png").check()
    ok(at.run())
    at.selectbox(key="tl_lab_move_to::a").set_value("b")
    ok(at.button(key="tl_lab_move::a").click().run())
    assert [p.name for p in db.photos("d")["b"]] == ["img_000.png", "img_001.png"]
    at.checkbox(key="tl_lab_sel::b::img_000.png").check()
    ok(at.run())
    ok(at.button(key="tl_lab_del::b").click().run())
    assert {c: [p.name for p in ps] for c, ps in db.photos("d").items()} == {"a": ["img_002.png"], "b": ["img_001.png"]}
    assert db.fingerprint("d") != fp
    assert not at.error

    at.text_input(key="tl_lab_new_class").set_value("train")
    ok(button(at, "Add class").click().run())
    assert "split folder" in texts(at.error)  # a friendly error, not a traceback


def test_auto_label_a_folder_and_accept(tmp_path):
    db.create_dataset("pets", ["cats", "dogs"])
    for cls, idx in (("cats", 0), ("dogs", 1)):
        db.add_photos("pets", cls, [(p.name, p) for p in write_images(tmp_path / "lab" / cls, idx, 5, seed=4)])
    inbox = tmp_path / "inbox"
    for cls, idx in (("c", 0), ("d", 1)):
        for p in write_images(tmp_path / "gen" / cls, idx, 4, seed=8):
            inbox.mkdir(exist_ok=True)
            p.rename(inbox / f"{cls}_{p.name}")
    (inbox / "junk.jpg").write_bytes(b"not a photo")

    at = open_page("app_pages/label.py")
    at.radio(key="tl_lab_src").set_value("Folder on this machine")
    ok(at.run())
    ok(at.text_input(key="tl_lab_inbox_path").set_value(str(inbox)).run())
    ok(button(at, "Use this folder").click().run())
    assert "8 photos" in texts(at.caption) and "1 unreadable" in texts(at.caption)

    assert at.radio(key="tl_lab_method").value == "zero_shot"
    assert "tabby" in texts(at.markdown)  # the ImageNet classes behind 'cats'
    assert at.multiselect(key="tl_lab_map::cats").value == [281, 282, 283, 284, 285]
    ok(button(at, "Suggest labels").click().run())
    assert "Suggestions for 8 photos" in texts(at.subheader)
    picks = [s for s in at.selectbox if (s.key or "").startswith("tl_lab_pick::")]
    assert len(picks) == 8
    assert {Path(s.key.split("::", 1)[1]).name[0] + s.value for s in picks} == {"ccats", "ddogs"}

    at.slider(key="tl_lab_thr").set_value(1.0)
    ok(at.run())
    picks = [s for s in at.selectbox if (s.key or "").startswith("tl_lab_pick::")]
    assert all(s.value == "— skip —" for s in picks)
    assert button(at, "Add 0 labelled photos").disabled
    first = picks[0]
    right = "cats" if Path(first.key.split("::", 1)[1]).name.startswith("c") else "dogs"
    first.set_value(right)  # correct one by hand
    ok(at.run())
    ok(button(at, "Add 1 labelled photo").click().run())
    assert len(db.photos("pets")[right]) == 6

    at.slider(key="tl_lab_thr").set_value(0.0)
    ok(at.run())
    ok(button(at, "Add 7 labelled photos").click().run())
    counts = {c: len(v) for c, v in db.photos("pets").items()}
    assert counts == {"cats": 9, "dogs": 9}
    assert "Every suggested photo has been added" in texts(at.success)


def test_few_shot_needs_photos_of_every_class(tmp_path):
    db.create_dataset("half", ["cats", "dogs"])
    db.add_photos("half", "cats", [(p.name, p) for p in write_images(tmp_path / "c", 0, 3)])
    inbox = tmp_path / "inbox"
    write_images(inbox, 1, 3)
    at = open_page("app_pages/label.py")
    at.radio(key="tl_lab_src").set_value("Folder on this machine")
    ok(at.run())
    ok(at.text_input(key="tl_lab_inbox_path").set_value(str(inbox)).run())
    ok(button(at, "Use this folder").click().run())
    at.radio(key="tl_lab_method").set_value("few_shot")
    ok(at.run())
    ok(button(at, "Suggest labels").click().run())
    assert "'dogs'" in texts(at.error) and "zero-shot" in texts(at.error)


def test_explore_needs_a_dataset():
    at = open_page("app_pages/explore.py")
    assert at.title[0].value == "Explore features"
    assert "No dataset yet" in texts(at.info)


def test_explore_map_separability_issues_outliers(tmp_path):
    db.create_dataset("colours", ["red", "green"])
    for cls, idx in (("red", 0), ("green", 1)):
        db.add_photos("colours", cls, [(p.name, p) for p in write_images(tmp_path / cls, idx, 10, seed=2)])
    at = open_page("app_pages/label.py")
    ok(button(at, "Use this dataset on every page").click().run())
    assert "every page uses" in texts(at.success)
    ok(at.switch_page("app_pages/explore.py").run())
    assert "colours" in texts(at.markdown)
    ok(at.button(key="tl_exp_extract_map").click().run())
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    assert "PCA of 20 photos" in texts(at.caption)

    at.segmented_control(key="tl_exp_method").set_value("tsne")
    ok(at.run())
    assert "t-SNE of 20 photos" in texts(at.caption)

    assert at.multiselect(key="tl_exp_sep_entries").value == [("tinynet", "imagenet"), ("tinynet", None)]
    at.number_input(key="tl_exp_sep_n").set_value(0)
    ok(at.button(key="tl_exp_sep_go").click().run())
    table = at.dataframe[0].value
    assert list(table["weights"])[0] in ("ImageNet", "random") and len(table) == 2
    order = list(at.dataframe[0].proto.column_order)  # the measurements first, the long "measured by" last
    assert order[-1] == "speed_from" and order.index("knn_loo_accuracy") < order.index("images_per_s")
    assert "Best separated by" in texts(at.success)

    assert "never saw that photo" in texts(at.markdown)
    assert at.success or at.info or at.warning  # the verdict on the labels, in words
    assert "farthest from every class centre" in texts(at.markdown)
    assert len(at.image) >= 8  # suspects and outliers with thumbnails


def test_explore_relabel_moves_the_file(tmp_path):
    db.create_dataset("mixed", ["red", "green"])
    db.add_photos("mixed", "red", [(p.name, p) for p in write_images(tmp_path / "r", 0, 8, seed=3)])
    greens = write_images(tmp_path / "g", 1, 8, seed=3)
    db.add_photos("mixed", "green", [(p.name, p) for p in greens])
    db.add_photos("mixed", "red", [("wrong.png", greens[0])])  # a green photo labelled red
    at = open_page("app_pages/label.py")
    ok(button(at, "Use this dataset on every page").click().run())
    ok(at.switch_page("app_pages/explore.py").run())
    ok(at.button(key="tl_exp_extract_issues").click().run())
    relabel = [b for b in at.button if (b.key or "").startswith("tl_exp_relabel::")]
    assert relabel and relabel[0].key.endswith("wrong.png") and relabel[0].label == "Relabel as green"
    ok(relabel[0].click().run())
    assert "wrong.png" in [p.name for p in db.photos("mixed")["green"]]
    assert "Moved wrong.png to 'green'" in texts(at.success)


def test_camera_snapshot_is_added(tmp_path):
    import io

    from PIL import Image

    db.create_dataset("cam", ["me", "you"])
    at = open_page("app_pages/label.py")
    ok(at.toggle(key="tl_lab_camera_on").set_value(True).run())
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(buf, "JPEG")
    ok(at.camera_input[0].set_value(("image.jpg", buf.getvalue(), "image/jpeg")).run())
    ok(button(at, "Add the snapshot to 'me'").click().run())
    added = db.photos("cam")["me"]
    assert len(added) == 1 and added[0].name.startswith("camera_") and added[0].suffix == ".jpg"
    assert "Added 1 photo" in texts(at.success)


def test_explore_shows_flagged_photos_first_and_estimates_the_whole_step(tmp_path):
    """The tab said "2 look mislabelled, check them first" while they sat at positions 13 and 20;
    the extraction estimate was the bare forward pass (5 s said, 10.7 to 40.7 s taken)."""
    from dataclasses import asdict

    from core import atomic
    from core.analysis import speed

    db.create_dataset("mixed", ["red", "green"])
    reds = write_images(tmp_path / "r", 0, 12, seed=4)
    greens = write_images(tmp_path / "g", 1, 12, seed=4)
    db.add_photos("mixed", "red", [(p.name, p) for p in reds] + [("wrong1.png", greens[0]), ("wrong2.png", greens[1])])
    db.add_photos("mixed", "green", [(p.name, p) for p in greens[2:]] + [("wrong3.png", reds[0])])
    atomic.write_json(speed.bench_path(tiny_backbone.NAME, 32), asdict(speed.SpeedResult(
        tiny_backbone.NAME, 32, 8, 3, 400.0, 0.02, "CPU test", "host", 2, "2.x", "2030-01-01T00:00:00+00:00",
        warmup_s=3.0)))
    at = open_page("app_pages/label.py")
    ok(button(at, "Use this dataset on every page").click().run())
    ok(at.switch_page("app_pages/explore.py").run())
    info = texts(at.info)
    assert "an estimate: about" in info and "building the network included" in info
    assert "400 images/s" in info  # the forward pass, plus the decode timed on these photos
    ok(at.button(key="tl_exp_extract_issues").click().run())
    flagged_text = [w.value for w in at.warning if "mislabelled" in w.value]
    assert flagged_text and "shown first below" in flagged_text[0]
    n = int(flagged_text[0].split("**")[1])
    by_column = [m.value for m in at.markdown if "labelled **" in m.value and ("badge[" in m.value)]
    # AppTest lists a grid column by column; tile i sits in column i % 4, row i // 4
    sizes = [len(range(c, len(by_column), 4)) for c in range(4)]
    starts = [sum(sizes[:c]) for c in range(4)]
    tiles = [by_column[starts[i % 4] + i // 4] for i in range(len(by_column))]
    assert len(tiles) >= n
    assert all("flagged" in t for t in tiles[:n]) and not any("flagged" in t for t in tiles[n:]), (n, [t[:60] for t in tiles[:6]])
