"""Dataset: choose a source, scan it, and look at it before training anything:
counts, sizes, colour modes, thumbnails, unreadable files, duplicates, leaks."""

import os

import pandas as pd
import plotly.express as px
import streamlit as st

from core.data import DEFAULT_SEED, DEFAULT_VAL_FRACTION, archives, check_trainable, samples, stats, uploads
from core.errors import TransferLabError
from core.train import registry
from app_pages import common
from app_pages.advice import advisor_panel, budget_figure

SOURCES = ("Sample dataset", "Local folder", "Upload a zip")
GRID_COLUMNS, GRID_ROWS, THUMB_PX = 6, 3, 160
SCATTER_MAX = 5000  # dots in the size chart; more are sampled
PAIRS_SHOWN = 6
ZIP_STATE = "tl_zip_done"  # (file_id, error message or None, skipped members, extracted folder)
DUPS_STATE = "tl_dups"  # {fingerprint: duplicates DataFrame}
BUDGET_STATE = "tl_budget_done"  # {(fingerprint, backbone): label_budget.summary(...) or the refusal's text}

st.title("Dataset")

pending = st.session_state.pop(common.PENDING, None)
if pending == "sample":
    st.session_state["tl_source"] = SOURCES[0]

source = st.radio("Where are the images?", SOURCES, key="tl_source", horizontal=True, persist_state="session")

if source == SOURCES[0]:
    found = samples.find_sample()
    if found is not None:
        st.caption(f"Cats vs dogs found at `{found}`.")
        if st.button("Use the sample dataset", type="primary") or pending == "sample":
            common.scan(found, name=samples.SAMPLE_NAME)
    else:
        st.info(samples.missing_message(), icon=":material/cloud_off:")
        if st.button("Download it now (about 70 MB)"):
            bar = st.progress(0.0, text="Downloading the sample…")
            with common.friendly_errors():
                folder = samples.download_sample(
                    progress=lambda done, total: bar.progress(
                        min(done / total, 1.0) if total else 0.0, text=f"Downloaded {done / 1e6:.0f} MB"
                    )
                )
                bar.empty()
                common.scan(folder, name=samples.SAMPLE_NAME)

elif source == SOURCES[1]:
    path = st.text_input(
        "Folder path on this machine",
        key="tl_folder",
        persist_state="session",
        placeholder="/data/flowers",
        help="One subfolder per class (roses/, tulips/…), optionally inside train/ and validation/. "
        "Without a validation/ folder, 20% of each class is held out.",
    )
    if st.button("Scan folder", type="primary", disabled=not path.strip()):
        folder = common.checked_folder(path.strip())  # inside the server's allowed folders, links included
        if folder is not None:
            common.scan(folder)

else:
    limit_mb = st.get_option("server.maxUploadSize")
    st.caption(
        f"Limits: upload up to {limit_mb} MB; at most {archives.MAX_FILES:,} files and "
        f"{archives.MAX_TOTAL_BYTES / 1024**3:.0f} GiB unpacked; no links, no paths outside the zip, "
        f"no passwords, no member expanding over {archives.MAX_RATIO}x. Hidden files, __MACOSX/ and "
        "nested archives are skipped. Larger datasets: use a local folder."
    )
    upload = st.file_uploader("Zip of class folders", type=["zip"], key="tl_zip")
    if upload is not None:
        done = st.session_state.get(ZIP_STATE)
        if done is None or done[0] != upload.file_id:
            try:
                uploads.check_size(upload.name, upload.size, limit_mb)
                report = archives.dataset_from_zip(upload, upload.name)
                done = (upload.file_id, None, report.skipped, str(report.folder))
            except TransferLabError as exc:
                done = (upload.file_id, str(exc), [], None)
            st.session_state[ZIP_STATE] = done
            if done[3]:
                common.scan(done[3], name=archives.safe_name(upload.name))
        _, error, skipped, _ = done
        if error:
            said = error if error.startswith("Rejected zip") else f"Zip rejected: {error}"
            st.error(common.plain(said), icon=":material/block:")
        elif skipped:
            with st.expander(f"{common.plural(len(skipped), 'entry', 'entries')} of the zip skipped"):
                st.dataframe(pd.DataFrame([(s.name, s.reason) for s in skipped], columns=["entry", "reason"]),
                             hide_index=True)

ds = common.current_dataset()
if ds is None:
    st.info("No dataset yet: pick a source above.", icon=":material/arrow_upward:")
    st.stop()

# ---------------------------------------------------------------- overview
st.divider()
st.header(f"Current dataset: {common.plain(ds.name)}")
st.caption(f"{common.plain(ds.root)} · fingerprint `{ds.fingerprint}`")
counts = ds.counts()
cols = st.columns(5)
cols[0].metric("Usable images", f"{len(ds.records):,}")
cols[1].metric("Classes", ds.num_classes)
cols[2].metric("Training", f"{sum(counts['train'].values()):,}")
cols[3].metric("Validation", f"{sum(counts['validation'].values()):,}")
cols[4].metric("Unreadable files", len(ds.bad_files))
untrainable = None
try:
    check_trainable(ds)
except TransferLabError as exc:  # said at once, not when a queued run fails
    untrainable = str(exc)
    st.error(f"{common.plain(untrainable)} Training is not offered for it: add a class folder with photos and scan again, "
             "or grow it on the Label page (it can add classes and photos to a class-folder dataset).",
             icon=":material/block:")
    st.page_link(common.LABEL_PAGE, label="Open the Label page", icon=":material/label:")
if ds.split_source == "stratified":
    st.caption(
        f"No validation/ folder: {DEFAULT_VAL_FRACTION:.0%} of each class is held out for validation "
        f"(stratified, seed {DEFAULT_SEED}, the same split every time)."
    )
balance = stats.imbalance(ds)
if balance and balance["warning"]:
    st.warning(balance["warning"], icon=":material/balance:")
if (balance and balance["ratio"] >= registry.IMBALANCE_RATIO
        and (weighting := registry.imbalance_note(ds.counts()["train"]))):
    st.info(common.plain(weighting), icon=":material/balance:")
if gaps := stats.unvalidated(ds):
    st.warning(gaps, icon=":material/rule:")

images = stats.image_frame(ds)
st.subheader("Counts and sizes")
left, right = st.columns(2)
left.plotly_chart(
    px.bar(common.chart_text(stats.counts_frame(ds), "class"), x="class", y="count", color="split", barmode="group", text_auto=True,
           title="Images per class and split"),
    key="chart_counts",
)
sizes = images[["width", "height"]].drop_duplicates()
if len(sizes) == 1:
    right.markdown("**Image sizes**")
    right.info(f"All {len(images):,} images are {sizes.iloc[0]['width']} × {sizes.iloc[0]['height']} pixels "
               "(width × height).", icon=":material/aspect_ratio:")
else:
    sized = images if len(images) <= SCATTER_MAX else images.sample(SCATTER_MAX, random_state=0)
    right.plotly_chart(
        px.scatter(common.chart_text(sized, "label"), x="width", y="height", color="label", opacity=0.4,
                   hover_name=common.chart_text(sized, "path")["path"].map(os.path.basename),
                   title="Image sizes in pixels (one dot per image"
                         + (f", {SCATTER_MAX:,} sampled)" if len(sized) < len(images) else ")"),
                   labels={"label": "class"}),
        key="chart_sizes",
    )
left, right = st.columns(2)
left.plotly_chart(
    px.histogram(common.chart_text(images, "label"), x="aspect", color="label", nbins=40,
                 title="Aspect ratio (1 = square, above 1 = landscape)",
                 labels={"aspect": "width / height", "label": "class"}),
    key="chart_aspect",
)
right.plotly_chart(
    px.histogram(images, x="mode", color="format", title="Colour modes and file formats",
                 labels={"mode": "colour mode (all are converted to RGB)", "format": "format"}),
    key="chart_modes",
)

# ---------------------------------------------------------------- thumbnails
st.subheader("Browse images")
left, right = st.columns([1, 2])
label = left.selectbox("Class", ds.classes, key="tl_grid_class", persist_state="session")
split = right.segmented_control("Split", ["all", "train", "validation"], default="all", required=True,
                                key="tl_grid_split", persist_state="session")
shown = images[(images["label"] == label) & ((split == "all") | (images["split"] == split))]
per_page = GRID_COLUMNS * GRID_ROWS
if shown.empty:
    st.info(f"No {split} images in '{common.plain(label)}'.")
else:
    n_pages = -(-len(shown) // per_page)
    page = st.pagination(n_pages, key=f"tl_grid_page_{label}_{split}") if n_pages > 1 else 1
    chunk = shown.iloc[(page - 1) * per_page: page * per_page]
    st.caption(f"{len(shown):,} images · page {page} of {n_pages}")
    for start in range(0, len(chunk), GRID_COLUMNS):
        row = st.columns(GRID_COLUMNS)
        for col, rec in zip(row, chunk.iloc[start:start + GRID_COLUMNS].itertuples()):
            col.image(common.thumb(rec.path, THUMB_PX),
                      caption=f"{common.plain(os.path.basename(rec.path))} · {rec.width}×{rec.height} · {rec.split}")

# ---------------------------------------------------------------- problems
st.subheader("Unreadable files")
if ds.bad_files:
    st.warning(f"{common.plural(len(ds.bad_files), 'file')} could not be read and will be left out of training.",
               icon=":material/broken_image:")
    st.dataframe(
        pd.DataFrame([(os.path.relpath(b.path, ds.root), b.reason) for b in ds.bad_files], columns=["file", "reason"]),
        hide_index=True,
    )
else:
    st.success("Every file decoded as an image.", icon=":material/check_circle:")

st.subheader("Duplicates and train/validation leaks")
pairs = st.session_state.get(DUPS_STATE, {}).get(ds.fingerprint)
if pairs is None:
    bar = st.progress(0.0, text="Hashing images to find duplicates…")
    pairs = stats.duplicates(
        ds, progress=lambda done, total: bar.progress(done / max(total, 1), text=f"Hashed {done:,} of {total:,} images")
    )
    bar.empty()
    st.session_state[DUPS_STATE] = {ds.fingerprint: pairs}
leaks = stats.leak_pairs(pairs)
cols = st.columns(4)
cols[0].metric("Exact copies", int((pairs["kind"] == "exact").sum()), help="Pairs of files with identical bytes.")
cols[1].metric("Near duplicates", int((pairs["kind"] == "near").sum()),
               help=f"Pairs whose perceptual hashes differ by at most {stats.NEAR_THRESHOLD} of 64 bits "
               "(resized or re-encoded copies).")
cols[2].metric("Train/validation leaks", len(leaks),
               help="The same picture in both splits: the validation score would be inflated.")
cols[3].metric("Label conflicts", int(pairs["label_conflict"].sum()),
               help="The same picture filed under two different classes.")


def _pair_rows(rows: pd.DataFrame, a: str, b: str, title_a: str, title_b: str) -> None:
    """Pairs side by side: two thumbnails and what makes them a pair."""
    for rec in rows.head(PAIRS_SHOWN).itertuples():
        one, two, what = st.columns([1, 1, 2], vertical_alignment="center")
        with one:
            common.show_thumb(getattr(rec, a), ds.root, f"{title_a or rec.split_a}: ", THUMB_PX)
        with two:
            common.show_thumb(getattr(rec, b), ds.root, f"{title_b or rec.split_b}: ", THUMB_PX)
        kind = "exact copy" if rec.kind == "exact" else f"near duplicate ({rec.distance} of 64 bits differ)"
        what.markdown(f"**{kind}**")
    if len(rows) > PAIRS_SHOWN:
        st.caption(f"…and {len(rows) - PAIRS_SHOWN} more (full list below).")


if leaks.empty:
    st.success("No picture appears in both train and validation.", icon=":material/check_circle:")
else:
    st.warning(f"{common.plural(len(leaks), 'picture')} in both train and validation: remove one copy of each, "
               "or the validation accuracy will be too optimistic.", icon=":material/content_copy:")
    _pair_rows(leaks, "train_path", "validation_path", "train", "validation")
inside = pairs[~pairs["leak"]]
if not inside.empty:
    st.markdown("**Duplicates within one split** (they weigh twice in training or evaluation)")
    _pair_rows(inside, "path_a", "path_b", "", "")
if not pairs.empty:
    with st.expander(f"All duplicates as a table ({common.plural(len(pairs), 'pair')})"):
        st.dataframe(
            pairs.assign(path_a=pairs["path_a"].map(lambda p: os.path.relpath(p, ds.root)),
                         path_b=pairs["path_b"].map(lambda p: os.path.relpath(p, ds.root))),
            hide_index=True,
        )

# ---------------------------------------------------------------- how many more labels pay
st.divider()
st.header("How many more labels pay")
backbone = common.current_backbone()
budgets = st.session_state.setdefault(BUDGET_STATE, {})
cell = (ds.fingerprint, backbone)
if untrainable:
    st.info("A learning curve needs a dataset that can train (see above).", icon=":material/block:")
elif cell not in budgets:
    from core.nets import get_spec

    st.write(f"A linear probe on the {get_spec(backbone).display_name} features, trained on fractions of the "
             "training photos (several seeds each) and scored on the validation photos: the learning curve, "
             "and a law fitted to it that says about how many more photos a class would pay, and where "
             "more stop paying. The features are extracted once, then cached.")
    if st.button("Measure the learning curve", key="tl_budget", icon=":material/trending_up:"):
        from core.analysis import label_budget

        bar = st.progress(0.0, text="Features…")
        try:
            budgets[cell] = label_budget.dataset_budget(ds, backbone, progress=common.stage_progress(bar))
        except TransferLabError as exc:
            budgets[cell] = str(exc)
        st.rerun()
if cell in budgets and not untrainable:
    found = budgets[cell]
    if isinstance(found, str):
        st.error(common.plain(found), icon=":material/error:")
        if st.button("Measure again", key="tl_budget_again"):
            del budgets[cell]
            st.rerun()
    else:
        st.plotly_chart(budget_figure(found), key="chart_budget")
        st.info(common.plain(found["text"]), icon=":material/trending_up:")
        scored = ("validation photos" if found["evaluation"] == "validation" else
                  "training photos, cross-fitted (too few validation photos)")
        st.caption(f"Each point: the probe's mean accuracy on the {scored} over {found['points']['seeds'][0]} "
                   "seeded subsets, with its 95% Wilson interval on those photos. The law (error = power law of "
                   f"the photos; here: {found['law']}) is fitted to the curve's upper part, picked by how well it "
                   "predicts the largest sizes from the smaller ones; its band is a bootstrap over photos and seeds. "
                   "Fitted on half the photos, it predicted the full-data probe within 2 points on cats vs dogs and "
                   "on oriented gratings (tests/test_label_budget.py).")

# ---------------------------------------------------------------- strategy advisor
st.divider()
st.header("Strategy advisor")
st.write("Which way of training fits this dataset? The advisor recommends one of the strategies on the "
         "Strategies page from what it measures on a sample: a minute or two the first time, seconds after.")
if untrainable:
    st.info("The advisor recommends a way to train: it needs a dataset that can train (see above).",
            icon=":material/block:")
else:
    advisor_panel(ds, common.current_backbone(), key="tl_advise")
