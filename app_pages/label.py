"""Label: build a dataset in the browser (classes, photos), and let a pretrained
network suggest labels for a pile of unlabelled photos (zero-shot from ImageNet,
or few-shot from the photos already labelled)."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core.data import UPLOAD_TYPES, UPLOAD_TYPES_TEXT, archives, uploads
from core.data import builder as db
from core.analysis import LabelReview, imagenet_mapping, labeling
from core.nets import get_spec
from core.errors import TransferLabError
from app_pages import common

NEW = "➕ New dataset…"
LEAVE_OUT = "— skip —"
SOURCES = ("Upload photos", "Upload a zip", "Folder on this machine")
PHOTO_TYPES = UPLOAD_TYPES  # the one list every uploader reads: what core decodes
GRID_COLS, GRID_ROWS, THUMB_PX = 8, 3, 120
SUGGEST_COLS, SUGGEST_ROWS, SUGGEST_PX = 5, 4, 170
DEFAULT_THRESHOLD = 0.6

NEXT_DS = "tl_lab_ds_next"  # dataset to select on the next run (set before the selectbox exists)
INBOX = "tl_lab_inbox"  # {"folder": str, "dataset": core.data.dataset.Dataset of the unlabelled photos}
RESULT = "tl_lab_result"  # {"dataset": name, "result": LabelResult}
REVIEW = "tl_lab_review"  # core.analysis.review.LabelReview: what "Add" will do
UPLOADS = "tl_lab_uploads"  # counter in the uploaders' keys: bumped to clear them after an add
UPLOAD_MB = st.get_option("server.maxUploadSize")  # a zip; photos have their own, lower limit
PHOTO_MB = uploads.photo_limit_mb(UPLOAD_MB)



def within_limit(items, limit_mb: int) -> list:
    """The uploaded ``(name, file)`` items within the size limit; each one over it is reported."""
    kept, too_big = uploads.within_limit(items, limit_mb)
    for reason in too_big:
        common.say("error", f"Rejected: {reason}")
    return kept


def act(fn, *args, ok: str | None = None, **kwargs):
    """Run an edit; its friendly error (or ``ok``) is shown after the rerun."""
    try:
        out = fn(*args, **kwargs)
    except TransferLabError as exc:
        common.say("error", str(exc))
        return None
    if ok:
        common.say("success", ok)
    return out


def after_edit(name: str) -> None:
    """Keep the dataset every page uses in step with the folder when it is this one."""
    current = common.current_dataset()
    if current is not None and Path(current.root).resolve() == db.dataset_path(name).resolve():
        try:
            st.session_state[common.DATASET] = db.scan(name)
        except TransferLabError:
            st.session_state.pop(common.DATASET, None)  # no photos left: nothing to scan


def bump_uploads() -> None:
    st.session_state[UPLOADS] = st.session_state.get(UPLOADS, 0) + 1


st.title("Label")
st.write(
    "Build a dataset right here — one class per label, photos uploaded or taken with the camera — "
    "then let a pretrained network label a pile of unlabelled photos for you. It is stored as ordinary "
    "class folders under the data directory, so every other page can use it."
)
common.show_messages()

# ---------------------------------------------------------------- 1. dataset
st.header("1. Your dataset", divider="gray")
if NEXT_DS in st.session_state:
    st.session_state["tl_lab_ds"] = st.session_state.pop(NEXT_DS)
with common.friendly_errors(stop=True):
    existing = db.list_datasets()
if st.session_state.get("tl_lab_ds") not in existing + [NEW]:
    st.session_state.pop("tl_lab_ds", None)
choice = st.selectbox("Dataset", existing + [NEW], key="tl_lab_ds",
                      help="Datasets made of class folders under the data directory. "
                           "Datasets split into train/ and validation/ folders are not edited here.")

if choice == NEW:
    with st.form("tl_lab_new_form", border=True):
        new_name = st.text_input("Name of the new dataset", placeholder="pets", key="tl_lab_new_name")
        new_classes = st.text_input("Classes, separated by commas (you can add more later)",
                                    placeholder="cats, dogs", key="tl_lab_new_classes")
        create = st.form_submit_button("Create dataset", type="primary", icon=":material/create_new_folder:")
    if create:
        classes_wanted = [c.strip() for c in new_classes.split(",") if c.strip()]
        folder = act(db.create_dataset, new_name, classes_wanted)
        if folder is not None:
            common.say("success", f"Created dataset '{folder.name}'"
                + (f" with classes {', '.join(classes_wanted)}." if classes_wanted else ". Add classes below."))
            st.session_state[NEXT_DS] = folder.name
        st.rerun()
    if not existing:
        st.info("No dataset yet built on this page: give the new one a name (and its classes) above. "
                "Datasets chosen on the Dataset page stay as they are; they are not edited here.",
                icon=":material/arrow_upward:")
    st.stop()

name = choice
with common.friendly_errors(stop=True):
    folder = db.dataset_path(name)
    classes = db.classes(name)
    photos = db.photos(name)

total = sum(len(v) for v in photos.values())
cols = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
cols[0].metric("Classes", len(classes))
cols[1].metric("Photos", total)
cols[2].metric("Smallest class", min((len(v) for v in photos.values()), default=0))
current = common.current_dataset()
in_use = current is not None and Path(current.root).resolve() == folder.resolve()
with cols[3]:
    if in_use:
        st.success("This is the dataset every page uses.", icon=":material/check:")
    elif st.button("Use this dataset on every page", icon=":material/input:", disabled=total == 0,
                   help="Scans it like any class-folder dataset (20% of each class held out for validation)."):
        common.scan(folder, name=name)
        st.rerun()
st.caption(f"{common.plain(folder)} · fingerprint `{db.fingerprint(name)}` (changes with every edit)")

with st.expander("Classes: add, rename, delete", icon=":material/category:", expanded=not classes):
    left, middle, right = st.columns(3)
    with left.form("tl_lab_add_class_form"):
        new_class = st.text_input("New class", placeholder="birds", key="tl_lab_new_class")
        if st.form_submit_button("Add class", icon=":material/add:"):
            if act(db.add_class, name, new_class, ok=f"Added class '{new_class.strip()}'."):
                after_edit(name)
            st.rerun()
    with middle.form("tl_lab_rename_form"):
        old = st.selectbox("Class to rename", classes, key="tl_lab_rename_old")
        new = st.text_input("New name", key="tl_lab_rename_new")
        if st.form_submit_button("Rename", icon=":material/edit:", disabled=not classes):
            if act(db.rename_class, name, old, new, ok=f"Renamed '{old}' to '{new.strip()}'."):
                after_edit(name)
            st.rerun()
    with right.form("tl_lab_delete_class_form"):
        gone = st.selectbox("Class to delete", classes, key="tl_lab_delete_class")
        sure = st.checkbox("Yes, delete it and its photos", key="tl_lab_delete_sure")
        if st.form_submit_button("Delete class", icon=":material/delete:", disabled=not classes):
            if not sure:
                common.say("warning", "Tick “Yes, delete it and its photos” to delete a class.")
            else:
                n = act(db.delete_class, name, gone)
                if n is not None:
                    common.say("success", f"Deleted class '{gone}' and its {n} photo{'s' if n != 1 else ''}.")
                    after_edit(name)
            st.rerun()

if not classes:
    st.info("Add a class (one per label, e.g. cats and dogs) to start adding photos.", icon=":material/arrow_upward:")
    st.stop()

st.subheader("Add photos")
n_up = st.session_state.get(UPLOADS, 0)
left, right = st.columns([1, 3])
target = left.selectbox("To class", classes, key="tl_lab_add_to")
photo_files = right.file_uploader(f"Photos ({UPLOAD_TYPES_TEXT})", type=PHOTO_TYPES, accept_multiple_files=True,
                                  key=f"tl_lab_up_{n_up}", max_upload_size=PHOTO_MB,
                                  help="Each photo is checked; unreadable files are rejected with the reason.")
n_files = len(photo_files or [])
if photo_files and right.button(f"Add {n_files} photo{'s' if n_files != 1 else ''} to '{common.plain(target)}'",
                                type="primary", icon=":material/add_photo_alternate:", key="tl_lab_add_btn"):
    report = act(db.add_photos, name, target, within_limit(db.as_items(photo_files), PHOTO_MB))
    if report is not None:
        common.say("warning" if report.rejected else "success", report.summary().replace("Added", f"Added to '{target}':", 1))
        after_edit(name)
    bump_uploads()
    st.rerun()
with st.expander("Take a photo with the camera", icon=":material/photo_camera:"):
    if st.toggle("Turn the camera on", key="tl_lab_camera_on"):
        shot = st.camera_input("Camera", key=f"tl_lab_cam_{n_up}", label_visibility="collapsed")
        if shot is not None and st.button(f"Add the snapshot to '{common.plain(target)}'", key="tl_lab_cam_add"):
            report = act(db.add_photos, name, target, within_limit([(db.camera_name(), shot)], PHOTO_MB))
            if report is not None:
                common.say("warning" if report.rejected else "success", report.summary())
                after_edit(name)
            bump_uploads()
            st.rerun()

tabs = st.tabs([f"{common.plain(c)} ({len(photos[c])})" for c in classes])
per_page = GRID_COLS * GRID_ROWS
for cls, tab in zip(classes, tabs):
    with tab:
        files = photos[cls]
        if not files:
            st.caption(f"No photos in '{common.plain(cls)}' yet: add some above, or let auto-labelling fill it below.")
            continue
        pages = (len(files) - 1) // per_page + 1
        page = 1
        if pages > 1:
            page = st.number_input(f"Page (of {pages})", 1, pages, 1, key=f"tl_lab_page::{cls}")
        shown = files[(page - 1) * per_page: page * per_page]
        grid = st.columns(GRID_COLS)
        for i, path in enumerate(shown):
            with grid[i % GRID_COLS]:
                st.image(common.square_thumb(str(path), THUMB_PX), width=THUMB_PX)
                st.checkbox(common.plain(path.name), key=f"tl_lab_sel::{cls}::{path.name}")
        selected = [p for p in shown if st.session_state.get(f"tl_lab_sel::{cls}::{p.name}")]
        others = [c for c in classes if c != cls]
        a, b, c = st.columns([2, 1, 1], vertical_alignment="bottom")
        dest = a.selectbox("Move the ticked photos to", others or ["(no other class)"], key=f"tl_lab_move_to::{cls}",
                           disabled=not others)
        if b.button(f"Move {len(selected)}", key=f"tl_lab_move::{cls}", disabled=not (selected and others),
                    icon=":material/drive_file_move:"):
            if act(db.move_photos, name, selected, dest, ok=f"Moved {len(selected)} photo(s) from '{cls}' to '{dest}'."):
                after_edit(name)
            for p in selected:
                st.session_state.pop(f"tl_lab_sel::{cls}::{p.name}", None)
            st.rerun()
        if c.button(f"Delete {len(selected)}", key=f"tl_lab_del::{cls}", disabled=not selected,
                    icon=":material/delete:"):
            if act(db.delete_photos, name, selected, ok=f"Deleted {len(selected)} photo(s) from '{cls}'."):
                after_edit(name)
            for p in selected:
                st.session_state.pop(f"tl_lab_sel::{cls}::{p.name}", None)
            st.rerun()

# ---------------------------------------------------------------- 2. auto-label
st.header("2. Auto-label unlabelled photos", divider="gray")
if len(classes) < 2:
    st.info("Auto-labelling picks one of your classes for each photo: add at least two classes first.",
            icon=":material/info:")
    st.stop()
st.write(
    "Give a pile of unlabelled photos; a pretrained network suggests one of your classes for each, "
    "most confident first. Accept everything above a confidence threshold, correct the rest, and add "
    "them in one click."
)


def use_inbox(path) -> None:
    unl = act(labeling.scan_unlabelled, path)
    if unl is not None:
        st.session_state[INBOX] = {"folder": str(path), "dataset": unl}
        st.session_state.pop(RESULT, None)


source = st.radio("Unlabelled photos from", SOURCES, horizontal=True, key="tl_lab_src")
if source == SOURCES[0]:
    inbox_up = st.file_uploader("Unlabelled photos", type=PHOTO_TYPES, accept_multiple_files=True,
                                key=f"tl_lab_inbox_up_{n_up}", max_upload_size=PHOTO_MB)
    if inbox_up and st.button(f"Use these {len(inbox_up)} photos", key="tl_lab_inbox_use", icon=":material/inbox:"):
        where = db.new_inbox(name)
        report = db.save_photos(where, within_limit(db.as_items(inbox_up), PHOTO_MB))
        if report.rejected:
            common.say("warning", report.summary())
        if report.added:
            use_inbox(where)
        bump_uploads()
        st.rerun()
elif source == SOURCES[1]:
    inbox_zip = st.file_uploader("Zip of unlabelled photos (any folders inside)", type=["zip"],
                                 key=f"tl_lab_inbox_zip_{n_up}")
    if inbox_zip is not None and st.button("Unpack and use it", key="tl_lab_inbox_unzip", icon=":material/unarchive:"):
        where = db.new_inbox(name)
        report = None
        if within_limit([(inbox_zip.name, inbox_zip)], UPLOAD_MB):
            report = act(archives.extract_zip, inbox_zip, where)
        if report is not None:
            if report.skipped:
                common.say("info", f"{len(report.skipped)} entries of the zip were skipped: "
                    + "; ".join(f"{s.name} ({s.reason})" for s in report.skipped[:5]))
            use_inbox(where)
        bump_uploads()
        st.rerun()
else:
    path = st.text_input("Folder of unlabelled photos (any depth)", key="tl_lab_inbox_path",
                         placeholder="/data/unsorted")
    if st.button("Use this folder", key="tl_lab_inbox_folder", disabled=not path.strip(), icon=":material/folder_open:"):
        folder = common.checked_folder(path.strip())  # inside the server's allowed folders, links included
        if folder is not None:
            use_inbox(folder)
            st.rerun()

inbox = st.session_state.get(INBOX)
if inbox is None:
    st.info("No unlabelled photos yet: give some above.", icon=":material/arrow_upward:")
    st.stop()
unl = inbox["dataset"]
st.caption(f"**{len(unl.records):,} photos** to label from {common.plain(inbox['folder'])}"
           + (f" · {len(unl.bad_files)} unreadable, left out" if unl.bad_files else ""))
if unl.bad_files:
    with st.expander(f"{len(unl.bad_files)} unreadable files"):
        st.dataframe(pd.DataFrame([(Path(b.path).name, b.reason) for b in unl.bad_files], columns=["file", "reason"]),
                     hide_index=True)

method = st.radio("Method", labeling.METHODS, format_func=labeling.METHOD_NAMES.get, horizontal=True,
                  key="tl_lab_method",
                  help="Zero-shot: the network's own ImageNet classes, mapped to yours; needs no labelled photo. "
                       "Few-shot: a small classifier on the network's features of the photos you already labelled "
                       "(about 5 a class is enough). Compare: both; photos where they disagree come last.")
backbone = common.current_backbone()
spec = get_spec(backbone)
st.caption(f"Network: **{spec.display_name}** (change it in the sidebar).")

mapping = None
if method in ("zero_shot", "compare"):
    with common.friendly_errors(stop=True):
        names = imagenet_mapping.imagenet_names(spec)
    suggested = imagenet_mapping.default_mapping(classes, names)
    unmapped = [c for c in classes if not suggested[c]]
    mapping = {}
    with st.expander("Which ImageNet classes mean each of your classes", icon=":material/link:",
                     expanded=bool(unmapped)):
        st.caption("Suggested from the class names; search the 1,000 ImageNet classes to add or remove. "
                   "A photo gets the class whose ImageNet classes have the highest summed probability.")
        for c in classes:
            mapping[c] = st.multiselect(c, range(len(names)), default=suggested[c], format_func=lambda i: names[i],
                                        key=f"tl_lab_map::{c}", placeholder="Search ImageNet classes…")
    summary = []
    for c in classes:
        picked = [names[i] for i in mapping[c]]
        summary.append(f"**{c}** → " + (", ".join(picked[:4]) + (f" … ({len(picked)})" if len(picked) > 4 else "")
                                        if picked else ":red[nothing yet: pick some above]"))
    st.markdown(" · ".join(summary))
model = "logreg"
if method in ("few_shot", "compare"):
    model = st.radio("Few-shot classifier", labeling.FEW_SHOT_MODELS, format_func=labeling.FEW_SHOT_NAMES.get,
                     horizontal=True, key="tl_lab_model",
                     help="Logistic regression on L2-normalised features is usually the more accurate.")
    st.caption("Learns from your labelled photos: " + ", ".join(f"{common.plain(c)} {len(photos[c])}" for c in classes))

if st.button("Suggest labels", type="primary", icon=":material/auto_awesome:", key="tl_lab_go"):
    bar = st.progress(0.0, text="Loading the network…")
    with common.friendly_errors():
        labelled = db.scan(name) if total else None
        result = labeling.auto_label(unl, classes, spec, method=method, mapping=mapping, labelled=labelled,
                                     model=model, progress=common.stage_progress(bar))
        st.session_state[RESULT] = {"dataset": name, "result": result, "threshold": None}
        st.session_state.pop(REVIEW, None)  # a new result starts a new review
        st.session_state.pop("tl_lab_thr", None)  # a new result starts from the default threshold
        st.session_state.pop("tl_lab_sugg_page", None)
    bar.empty()

# ---------------------------------------------------------------- suggestions
held = st.session_state.get(RESULT)
if not held or held["dataset"] != name:
    st.stop()
result = held["result"]
frame = result.frame
if frame.empty:
    st.success("Every suggested photo has been added.", icon=":material/done_all:")
    st.stop()
if result.classes != classes:
    st.warning("The classes changed since these suggestions were made: suggest labels again.", icon=":material/sync:")
    st.stop()
for note in result.notes:
    st.info(note, icon=":material/info:")


def defaults(threshold: float) -> None:
    """Apply the threshold, and set the tiles' widgets too (the browser keeps a widget's value
    unless the server sends a new one)."""
    review = st.session_state.setdefault(REVIEW, LabelReview())
    for path, choice in review.apply_threshold(st.session_state[RESULT]["result"].frame, threshold).items():
        st.session_state[f"tl_lab_pick::{path}"] = choice or LEAVE_OUT


def on_threshold() -> None:
    defaults(st.session_state["tl_lab_thr"])


def on_pick(path: str) -> None:
    value = st.session_state[f"tl_lab_pick::{path}"]
    st.session_state.setdefault(REVIEW, LabelReview()).pick(path, None if value == LEAVE_OUT else value)


st.subheader(f"Suggestions for {len(frame):,} photos, most confident first")
what = {"zero_shot": "summed probability of the mapped ImageNet classes",
        "few_shot": f"probability from the {labeling.FEW_SHOT_NAMES.get(result.model, 'classifier').lower()}",
        "compare": "the lower of the two methods' confidences where they agree, 0 where they disagree"}[result.method]
threshold = st.slider("Accept suggestions with a confidence of at least", 0.0, 1.0, DEFAULT_THRESHOLD, 0.01,
                      key="tl_lab_thr", on_change=on_threshold, help=f"Confidence: {what}.")
if REVIEW not in st.session_state:
    defaults(threshold)
review = st.session_state[REVIEW]
chosen = review.chosen(frame)
st.markdown(review.summary(frame, threshold))
if st.button(f"Add {len(chosen)} labelled photo{'s' if len(chosen) != 1 else ''} to '{common.plain(name)}'", type="primary",
             icon=":material/library_add:", disabled=not chosen, key="tl_lab_accept"):
    report = act(db.add_labelled, name, list(chosen.items()))
    if report is not None:
        common.say("warning" if report.rejected else "success", report.summary())
        done = {str(p) for p, _ in chosen.items()} - {r.name for r in report.rejected}
        result.frame = frame[~frame["path"].isin(done)].reset_index(drop=True)
        review.added(done)
        for p in done:
            st.session_state.pop(f"tl_lab_pick::{p}", None)
        after_edit(name)
    st.rerun()

per_page = SUGGEST_COLS * SUGGEST_ROWS
pages = (len(frame) - 1) // per_page + 1
page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="tl_lab_sugg_page") if pages > 1 else 1
shown = frame.iloc[(page - 1) * per_page: page * per_page]
grid = st.columns(SUGGEST_COLS)
options = [LEAVE_OUT] + classes
for i, (_, row) in enumerate(shown.iterrows()):
    with grid[i % SUGGEST_COLS].container(border=True):
        st.image(common.square_thumb(row["path"], SUGGEST_PX), width=SUGGEST_PX)
        conf = float(row["confidence"])
        adding = review.choices.get(row["path"]) is not None
        mark = ":green[:material/check_circle:]" if adding else ":orange[:material/help:]"
        st.progress(min(max(conf, 0.0), 1.0), text=f"{mark} **{row['suggestion']}** · {conf:.0%}")
        if result.method == "compare":
            agree = "agree" if row["agree"] else ":orange[disagree]"
            st.caption(f"zero-shot: {common.plain(row['zero_shot'])} {row['zero_shot_confidence']:.0%}  \n"
                       f"few-shot: {row['few_shot']} {row['few_shot_confidence']:.0%} · {agree}")
        elif "imagenet_top" in row:
            st.caption(f"ImageNet sees: {row['imagenet_top']}")
        key = f"tl_lab_pick::{row['path']}"
        if st.session_state.get(key) not in options:  # first shown, or its class was renamed meanwhile
            st.session_state[key] = review.choices.get(row["path"]) or LEAVE_OUT
        st.selectbox(common.plain(row["file"]), options, key=key, on_change=on_pick, args=(row["path"],))
