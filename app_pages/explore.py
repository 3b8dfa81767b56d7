"""Explore: how a backbone's features see this dataset, before training anything — a
2-D feature map, how well each backbone separates the classes, photos that look
mislabelled, and outliers."""

import html
from pathlib import Path

import plotly.express as px
import streamlit as st

from core.data import builder as db
from core.analysis import embedding, label_issues, separability, speed
from core.features import dataset_features, features_cached
from core.nets import get_spec
from core.errors import TransferLabError
from app_pages import common

THUMB_PX = 150
SEP = "tl_exp_sep"  # {"fingerprint", "per_class", "table", "note"}
FINDINGS = "tl_exp_findings"  # {feature keys: (issues frame, outliers frame)}
RESCAN = "tl_exp_rescan"  # (root, name) to rescan after a relabel

st.title("Explore features")
st.write(
    "How does a pretrained network see **your** photos? Its pooled features, drawn in 2-D, show whether the "
    "classes fall apart on their own; a table measures it for every backbone; and the same features point at "
    "photos that look mislabelled and at outliers."
)
if st.session_state.get(RESCAN):  # a relabel moved a file: the dataset every page uses is scanned again
    root, name = st.session_state.pop(RESCAN)
    common.scan(root, name=name)
common.show_messages()

ds = common.current_dataset()
if ds is None:
    st.info("No dataset yet: choose one on the Dataset page, or build one on the Label page.",
            icon=":material/arrow_back:")
    left, right = st.columns(2)
    left.page_link(common.DATASET_PAGE, label="Dataset page", icon=":material/photo_library:")
    right.page_link(common.LABEL_PAGE, label="Label page", icon=":material/label:")
    st.stop()
if len(ds.classes) < 2:
    st.info(f"Dataset '{common.plain(ds.name)}' has one class; exploring needs at least two.", icon=":material/info:")
    st.stop()

backbone = common.current_backbone()
spec = get_spec(backbone)
left, right = st.columns([3, 2], vertical_alignment="center")
random = right.toggle("Random weights (baseline)", key="tl_exp_random",
                      help="The same network untrained: what the map looks like without ImageNet pretraining.")
weights = None if random else "imagenet"
wlabel = "random weights" if random else "ImageNet weights"
left.markdown(f"**{common.plain(ds.name)}** · {len(ds.records):,} photos · {ds.num_classes} classes · "
              f"**{spec.display_name}** ({wlabel}; change the network in the sidebar)")

with common.friendly_errors(stop=True):
    cached = features_cached(ds, spec, weights)


_estimate: list = []  # once per run: three tabs show the button, and the estimate decodes a few photos


def extract_button(where: str) -> None:
    if not _estimate:
        _estimate.append(speed.extraction_estimate(backbone, len(ds.records), [r.path for r in ds.records[:8]]))
    est = _estimate[0]
    eta = ""
    if est is not None:  # the whole step: warm-up, decode and the forward passes, not the bare forward pass
        took = f"{est.seconds:,.0f} s" if est.seconds < 90 else f"{est.seconds / 60:,.1f} min"
        warm = "building the network included" if est.fixed_s is not None else "plus loading the network"
        eta = f" — an estimate: about {took} ({warm}; per photo from {est.basis}), longer while other work runs"
    st.info(f"This needs the {spec.display_name} features of the {len(ds.records):,} photos{eta}. "
            "They are extracted once, then cached.", icon=":material/memory:")
    if st.button("Extract features", type="primary", icon=":material/play_arrow:", key=f"tl_exp_extract_{where}"):
        bar = st.progress(0.0, text="Loading the network…")
        with common.friendly_errors():
            dataset_features(ds, spec, weights, progress=common.stage_progress(bar))
            st.rerun()
        bar.empty()


def features():
    return dataset_features(ds, spec, weights)


def findings(feats):
    store = st.session_state.setdefault(FINDINGS, {})
    key = "+".join(feats.keys)
    if key not in store:
        store.clear()
        store[key] = (label_issues.label_issues(feats.X, feats.y, ds.classes, feats.paths),
                      label_issues.outliers(feats.X, feats.y, ds.classes, feats.paths))
    return store[key]


def relabel(path: str, new_label: str) -> None:
    try:
        moved = db.relabel(ds, path, new_label)
    except TransferLabError as exc:
        common.say("error", exc)
        return
    common.say("success", f"Moved {Path(path).name} to '{new_label}' ({moved}). The dataset was rescanned; "
                          "its features are extracted again for the new fingerprint.")
    st.session_state[RESCAN] = (ds.root, ds.name)


tab_map, tab_sep, tab_issues, tab_out = st.tabs(
    ["Feature map", "Separability across backbones", "Possibly mislabelled", "Outliers"])

# ---------------------------------------------------------------- map
with tab_map:
    if not cached:
        extract_button("map")
    else:
        method = st.segmented_control("Projection", embedding.METHODS, format_func=embedding.METHOD_NAMES.get,
                                      default="pca", required=True, key="tl_exp_method",
                                      help="PCA: the two directions of largest spread, instant. t-SNE: keeps "
                                           "neighbours together (clusters read better), takes seconds; cached.")
        hint = "about 10–30 s for a few thousand photos, then cached" if method == "tsne" else "a moment"
        with st.spinner(f"{embedding.METHOD_NAMES[method]} of {len(ds.records):,} photos ({hint})…"):
            fmap = None
            with common.friendly_errors():
                fmap = embedding.feature_map(ds, backbone, weights=weights, method=method)
        if fmap is not None:
            frame = fmap.frame
            axis = embedding.METHOD_NAMES[method]
            fig = px.scatter(common.chart_text(frame, "label", "file"), x="x", y="y", color="label", symbol="split",
                             hover_name="file",
                             hover_data={"x": False, "y": False, "label": True, "split": True},
                             custom_data=["path"], symbol_map={"train": "circle", "validation": "x"},
                             color_discrete_sequence=px.colors.qualitative.Set1,
                             labels={"label": "class", "split": "split"}, height=600,
                             title=f"{spec.display_name} features of {html.escape(ds.name)}, {axis} to 2-D "
                                   "(colour: class, marker: split)")
            fig.update_traces(marker={"size": 9, "opacity": 0.8})
            fig.update_layout(xaxis_title=f"{axis} 1", yaxis_title=f"{axis} 2", legend_title_text="class, split")
            event = st.plotly_chart(fig, key=f"tl_exp_map_{method}", on_select="rerun",
                                    selection_mode=("points", "box", "lasso"))
            took = f"computed in {fmap.seconds:.1f} s" + (" earlier, read from the cache" if fmap.from_cache else "")
            extra = ""
            if method == "pca" and fmap.info.get("explained_variance"):
                extra = " · the two axes hold {:.0%} of the variance".format(sum(fmap.info["explained_variance"]))
            st.caption(f"{axis} of {len(frame):,} photos {took}{extra}. Hover a point for its file and class; "
                       "click one, or drag a box or lasso, to see the photos.")
            points = (event or {}).get("selection", {}).get("points", []) if event else []
            paths = []
            for p in points:
                cd = p.get("customdata")
                if cd:
                    paths.append(cd[0] if isinstance(cd, (list, tuple)) else cd)
            if paths:
                sel = frame.set_index("path").loc[[p for p in dict.fromkeys(paths) if p in set(frame["path"])]]
                st.markdown(f"**{len(sel)} selected photo{'s' if len(sel) != 1 else ''}**"
                            + (" (the first 24 shown)" if len(sel) > 24 else ""))
                cols = st.columns(8)
                for i, (path, row) in enumerate(sel.head(24).iterrows()):
                    with cols[i % 8]:
                        st.image(common.square_thumb(path, 120), caption=f"{common.plain(row['label'])} · {common.plain(row['file'])}", width=120)

# ---------------------------------------------------------------- separability
with tab_sep:
    st.write("How well each backbone's features separate **your** classes, measured on your photos: "
             "a 5-nearest-neighbour vote (leave-one-out), a linear probe (5-fold cross-validated) and the "
             "silhouette score (-1 to 1; higher means tight, well-apart classes), beside the extraction speed on "
             "this machine.")
    from core.nets import list_backbones, weights_location

    every = {s.name: s for s in list_backbones()}
    offline = [s for s in every.values() if weights_location(s) is not None]
    options = [(s.name, "imagenet") for s in offline] + [(s.name, None) for s in offline]
    if (backbone, weights) not in options:
        options.append((backbone, weights))
    label_of = {o: f"{(every.get(o[0]) or spec).display_name} · {separability.weights_label(o[1])}"
                for o in options}
    default = [o for o in separability.default_entries() if o in options]
    picked = st.multiselect("Backbones to compare", options, default=default, format_func=label_of.get,
                            key="tl_exp_sep_entries",
                            help="Those whose weights are on this machine, and random-weight baselines.")
    train_counts = ds.counts()["train"]
    biggest = max(train_counts.values()) if train_counts else 0
    per_class = st.number_input("Training photos a class to measure on (0: all)", 0, max(biggest, 1),
                                min(100, biggest), 10, key="tl_exp_sep_n",
                                help="Extraction through big backbones is slow on a CPU: a seeded sample keeps it "
                                     "short. The same sample is used for every backbone.")
    per_class = int(per_class) or None
    if st.button("Measure separability", type="primary", icon=":material/leaderboard:", disabled=not picked,
                 key="tl_exp_sep_go"):
        bar = st.progress(0.0, text="Starting…")
        with common.friendly_errors():
            table = separability.separability_table(ds, picked, per_class=per_class, progress=common.stage_progress(bar))
            st.session_state[SEP] = {"fingerprint": ds.fingerprint, "table": table,
                                     "note": separability.sample_note(ds, per_class)}
        bar.empty()
    held = st.session_state.get(SEP)
    if held and held["fingerprint"] == ds.fingerprint:
        table = held["table"]
        shown = table.drop(columns=["name", "chance"]).copy()
        if not shown["error"].fillna("").astype(bool).any():
            shown = shown.drop(columns=["error"])
        # Short headers (the help says the rest) and the long "measured by" text last: a 1400 px window
        # shows every measurement without scrolling sideways.
        if "knn_ci_low" in shown.columns:
            shown["knn_ci"] = [f"{lo:.1%}–{hi:.1%}" if lo == lo else None  # NaN: not measured
                               for lo, hi in zip(shown["knn_ci_low"], shown["knn_ci_high"])]
        order = ["backbone", "weights", "error", "knn_loo_accuracy", "knn_ci", "probe_cv_accuracy", "silhouette",
                 "images_per_s", "dims", "speed_from"]  # the photos measured on: the same sample, said below
        st.dataframe(shown, hide_index=True, column_order=[c for c in order if c in shown.columns], column_config={
            "backbone": st.column_config.TextColumn("backbone", width="medium"),
            "weights": st.column_config.TextColumn("weights", width="small"),
            "knn_loo_accuracy": st.column_config.ProgressColumn(
                "5-NN accuracy", format="percent", min_value=0.0, max_value=1.0, width=130,
                help="Each photo's class voted by its 5 nearest neighbours among the others (leave-one-out)."),
            "probe_cv_accuracy": st.column_config.ProgressColumn(
                "probe accuracy", format="percent", min_value=0.0, max_value=1.0, width=130,
                help="A logistic regression on the features, trained on 4/5 and scored on the other fifth, "
                     "5 times (cross-validated): about what a head trained on cached features reaches."),
            "knn_ci": st.column_config.TextColumn("95% CI", width="small",
                                                  help="Wilson interval of the 5-NN accuracy on these photos."),
            "silhouette": st.column_config.NumberColumn("silhouette", format="%.3f", width="small",
                                                        help="Cosine silhouette, -1 to 1: higher is tighter, "
                                                             "better-apart classes."),
            "images_per_s": st.column_config.NumberColumn(
                "images/s", format="%.1f", width="small",
                help="Here, from the speed benchmark on the Backbones page when it was run; else from this "
                     "extraction, whose first batch includes warm-up (small samples understate the speed)."),
            "speed_from": st.column_config.TextColumn("speed measured by", width="medium"),
            "images": st.column_config.NumberColumn("photos", format="%d", width="small"),
            "dims": st.column_config.NumberColumn("dims", format="%d", width="small",
                                                  help="Length of the pooled feature vector."),
            "error": st.column_config.TextColumn("problem", width="medium"),
        })
        verdict = separability.table_verdict(table, held["note"]) if "verdict" in table.columns else ""
        if verdict:  # the marker only for a resolved lead, or the fastest of those within noise
            st.success(common.plain(verdict), icon=":material/emoji_events:")
    else:
        st.caption("Pick backbones and press “Measure separability”; photos already extracted come from the cache.")

# ---------------------------------------------------------------- mislabelled
with tab_issues:
    if not cached:
        extract_button("issues")
    else:
        issues = outs = None
        with common.friendly_errors():
            issues, outs = findings(features())
        if issues is not None:
            flagged = int(issues["flagged"].sum())
            disagree = int((issues["suggested"] != issues["label"]).sum())
            st.write(
                "Each photo's label is checked by a linear probe that never saw that photo (5-fold: trained on the "
                "other four fifths) and by its 5 nearest neighbours. Flagged photos come first, then those the "
                "probe puts in another class, then the rest: lowest probability for the label they have first."
            )
            if flagged:
                st.warning(f"**{flagged}** photo{'s look' if flagged != 1 else ' looks'} mislabelled: confident "
                           "learning (cleanlab) on the probe's probabilities calls the label wrong. "
                           f"{'They are' if flagged != 1 else 'It is'} shown first below, marked flagged; "
                           "one click moves a photo.", icon=":material/report:")
            elif disagree:
                st.info(f"No photo is flagged with confidence; the probe leans to another class for {disagree} "
                        f"photo{'s' if disagree != 1 else ''}, shown first.", icon=":material/info:")
            else:
                st.success("No photo looks mislabelled: the probe agrees with every label. Below are the photos "
                           "it is least sure of.", icon=":material/check_circle:")
            most = min(60, len(issues))
            n_show = (st.slider("Show", 4, most, min(max(12, -(-flagged // 4) * 4), most), 4, key="tl_exp_issues_n")
                      if len(issues) > 4 else len(issues))  # by default every flagged photo, up to 60
            if flagged > n_show:
                st.caption(f"Showing {n_show} of the {flagged} flagged photos: move the slider to see more.")
            read_only = not db.writable(Path(ds.root))
            cols = st.columns(4)
            for i, row in issues.head(n_show).reset_index(drop=True).iterrows():
                with cols[i % 4].container(border=True):
                    st.image(common.square_thumb(row["path"], THUMB_PX), width=THUMB_PX)
                    if row["suggested"] != row["label"]:
                        badge = ":red-badge[:material/report: flagged]" if row["flagged"] else \
                            ":orange-badge[:material/help: doubtful]"
                        st.markdown(f"**{common.plain(row['file'])}** {badge}  \nlabelled **{common.plain(row['label'])}**, looks like "
                                    f"**{common.plain(row['suggested'])}** ({row['p_suggested']:.0%} sure)")
                    else:
                        st.markdown(f"**{common.plain(row['file'])}** :green-badge[label agrees]  \nlabelled **{common.plain(row['label'])}**, "
                                    f"the probe agrees ({row['p_given']:.0%} sure)")
                    st.caption(f"{row['knn_disagree'] * 5:.0f} of its 5 nearest neighbours have another label")
                    if row["suggested"] != row["label"]:
                        st.button(f"Relabel as {common.plain(row['suggested'])}", key=f"tl_exp_relabel::{row['path']}",
                                  on_click=relabel, args=(row["path"], row["suggested"]),
                                  disabled=not db.writable(Path(row["path"]).parent),
                                  help="Moves the file into that class's folder (same split).")
            if read_only:
                st.caption("This dataset's folders are read-only, so photos cannot be relabelled here; build an "
                           "editable copy on the Label page.")

# ---------------------------------------------------------------- outliers
with tab_out:
    if not cached:
        extract_button("outliers")
    else:
        outs = None
        with common.friendly_errors():
            _, outs = findings(features())
        if outs is not None:
            st.write("The photos farthest from every class centre (cosine distance of their features): often broken, "
                     "off-topic or odd images worth a look.")
            n_show = (st.slider("Show", 4, min(60, len(outs)), min(12, len(outs)), 4, key="tl_exp_out_n")
                      if len(outs) > 4 else len(outs))
            cols = st.columns(4)
            for i, row in outs.head(n_show).reset_index(drop=True).iterrows():
                with cols[i % 4].container(border=True):
                    st.image(common.square_thumb(row["path"], THUMB_PX), width=THUMB_PX)
                    odd = " :orange-badge[unusually far]" if row["z_score"] >= 2 else ""
                    st.markdown(f"**{common.plain(row['file'])}**{odd}  \nlabelled **{common.plain(row['label'])}** · closest to the "
                                f"**{row['nearest_class']}** centre")
                    st.caption(f"cosine distance {row['distance']:.3f} to that centre, {row['z_score']:.1f} standard "
                               "deviations above the average photo")
