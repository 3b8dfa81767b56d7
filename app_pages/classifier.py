"""Classifier: predictions on uploaded photos or the camera, with top-k, Grad-CAM and
latency, for a finished run or a plain ImageNet classifier; and the model's export
(.keras, SavedModel, TFLite, OpenVINO IR, ONNX) with a top-1 parity check."""

import hashlib

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from app_pages import common
from core.serve import export, inference
from core.data import UPLOAD_TYPES, UPLOAD_TYPES_TEXT, uploads
from core.nets import list_backbones, missing_weights_message, weights_location
from core.errors import TransferLabError
from core.runs import RunStore, display
from core.train import plans, registry

MAX_CARDS = 12  # photos drawn with chart and Grad-CAM; every photo is in the table
RESULTS = "tl_clf_results"  # (key, results) of the last classification, so reruns don't recompute
CAMS = "tl_clf_cams"  # Grad-CAM overlays already computed, by (results key, photo index)
EXPORTS = "tl_clf_export"  # (model key, ExportReport) of the last export
INT8 = "tl_clf_int8"  # serve the int8 export of the last export (when its measured parity holds)
INT8_PREDICTOR = "tl_clf_int8_predictor"  # (artifact path, Predictor) running the int8 export
CARD = "tl_clf_card"  # (model key, deployment card frame)
CARD_PHOTOS = 50  # validation photos the deployment card measures each format on (every format, on this CPU)

st.title("Classifier")
st.write(
    "Try a model on new photos: a run you trained, or a plain ImageNet classifier. Each photo gets "
    "its top classes, a Grad-CAM heatmap of the regions that drove the top prediction, and the time "
    "it took. The photos reach the model exactly as training images did (same decoder, same resize)."
)

# ---------------------------------------------------------------- model choice
store = RunStore()
finished = [r for r in store.list(state="done") if r.model_path.is_file()]
left, right = st.columns([1, 2])
kind = left.radio(
    "Model", ["run", "imagenet"] if finished else ["imagenet", "run"], key="tl_clf_kind",
    format_func={"run": "A finished run", "imagenet": "ImageNet classifier (1,000 classes)"}.get,
)

predictor = None
model_key = None
model_title = None
run = None
if kind == "imagenet":
    specs = [s for s in list_backbones() if s.has_top]
    offline = {s.name for s in specs if weights_location(s, include_top=True) is not None}
    names = [s.name for s in specs]
    by_name = {s.name: s for s in specs}
    sidebar_choice = common.current_backbone()
    default = sidebar_choice if sidebar_choice in names else next((n for n in names if n in offline), names[0])
    backbone = right.selectbox(
        "ImageNet classifier", names, index=names.index(default), key="tl_clf_backbone",
        format_func=lambda n: by_name[n].display_name + ("  ✓ offline" if n in offline else ""),
    )
    weights = "imagenet"
    if backbone not in offline:
        right.info(missing_weights_message(by_name[backbone], include_top=True), icon=":material/cloud_download:")
        how = right.radio("Weights", ["download", "random"], index=None, key="tl_clf_weights", horizontal=True,
                          format_func={"download": "Download the ImageNet weights now",
                                       "random": "Random weights (runs and times, but predicts nonsense)"}.get)
        weights = {"download": "imagenet", "random": None}.get(how, "")
    if weights != "":
        model_key = ("imagenet", backbone, weights)
        with st.spinner("Loading the model (once per app process)…"):
            with common.friendly_errors():
                predictor = common.load_predictor("imagenet", backbone, weights)
else:
    if not finished:
        right.info("No finished run with a saved model yet: train one on the Strategies page, "
                   "or pick the ImageNet classifier.", icon=":material/info:")
        st.page_link(common.STRATEGIES_PAGE, label="Open the Strategies page", icon=":material/compare_arrows:")
    else:
        by_id = {r.id: r for r in finished}

        def run_label(run_id: str) -> str:
            r = by_id[run_id]
            strategy = r.config.get("strategy", "")
            name = r.name if r.name != r.id else plans.run_name(r.config)  # a run started unnamed (CLI)
            return display.run_choice_label(name, registry.label(strategy) if strategy else "",
                                            r.config.get("backbone", "") if registry.uses_backbone(strategy) else "",
                                            (r.metrics() or {}).get("val_accuracy"))

        run_id = right.selectbox("Run", list(by_id), format_func=run_label, key="tl_clf_run")
        model_title = run_label(run_id)  # the run as the list names it, not its id and raw strategy name
        run = by_id[run_id]
        model_key = ("run", run_id, run.model_path.stat().st_mtime_ns)
        with st.spinner("Loading the model (once per app process)…"):
            with common.friendly_errors():
                predictor = common.load_predictor("run", run_id)

serving_int8 = False
saved_export = st.session_state.get(EXPORTS)
if predictor is not None and st.session_state.get(INT8) and saved_export and saved_export[0] == model_key:
    quantized = saved_export[1].int8
    artifact = saved_export[1].artifacts.get("openvino_int8")
    if quantized is not None and quantized.parity_holds and artifact is not None and artifact.path.is_file():
        cached_int8 = st.session_state.get(INT8_PREDICTOR)
        if not cached_int8 or cached_int8[0] != str(artifact.path):
            with common.friendly_errors():
                cached_int8 = (str(artifact.path), inference.int8_predictor(predictor, artifact.path))
                st.session_state[INT8_PREDICTOR] = cached_int8
        if cached_int8 and cached_int8[0] == str(artifact.path):
            predictor, serving_int8 = cached_int8[1], True

if predictor is not None:
    if serving_int8:
        st.info("Serving the int8 export (its measured accuracy and agreement with the float model hold; see "
                "Export). The unlike-data check needs the float model's features, so it is off meanwhile.",
                icon=":material/memory:")
    st.caption(
        f"**{common.plain(model_title or predictor.name)}** · input {predictor.input_size} x {predictor.input_size} px · "
        f"{predictor.num_classes:,} classes · {predictor.model.count_params():,} parameters · "
        "loaded once per app process, so each photo costs only its own decode and forward pass"
    )
    if predictor.kind == "run":
        if predictor.calibrated:
            cal = predictor.trust.calibration
            how = (f"temperature {cal.temperature:.2f}" if cal.method == "temperature"
                   else "the network's own probabilities were already the best calibrated")
            st.caption(f"Calibrated on the run's validation photos ({how}; expected calibration error "
                       f"{cal.ece_before:.3f} → {cal.ece_after:.3f}): a probability here is how often such an "
                       "answer was right." + ("" if predictor.trust.ood else " No feature statistics: photos are "
                                              "not checked against the training data."))
        else:
            st.caption("This run is not calibrated (trained before calibration was measured): probabilities are the "
                       "network's own, and there is no “not sure” or “unlike the training data”.")


# ---------------------------------------------------------------- helpers
def topk_figure(result, height: int = 260) -> go.Figure:
    labels = [label for _, label, _ in result.top][::-1]
    probs = [p for _, _, p in result.top][::-1]
    fig = go.Figure(go.Bar(
        x=probs, y=labels, orientation="h", text=[f"{p:.1%}" for p in probs], textposition="auto",
        marker={"color": ["#1f6f8b"] * (len(probs) - 1) + ["#e4572e"]},
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title={"text": f"Top {len(probs)}", "font": {"size": 14}},
                      xaxis={"range": [0, 1], "tickformat": ".0%"}, yaxis={"automargin": True})
    return fig


def tradeoff_figure(abstention, point: dict) -> go.Figure:
    """Accuracy on the answered validation photos against the share answered; the chosen threshold marked."""
    curve = abstention.curve
    fig = go.Figure(go.Scatter(
        x=[c["coverage"] for c in curve], y=[c["accuracy"] for c in curve], mode="lines", line={"color": "#1f6f8b"},
        customdata=[c["threshold"] for c in curve], name="validation photos",
        hovertemplate="threshold %{customdata:.3f}: answers %{x:.1%}, %{y:.1%} correct<extra></extra>"))
    fig.add_scatter(x=[point["coverage"]], y=[point["accuracy"]], mode="markers", name="chosen threshold",
                    marker={"size": 12, "color": "#e4572e"})
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                      xaxis={"title": "photos answered", "tickformat": ".0%", "autorange": "reversed"},
                      yaxis={"title": "accuracy on them", "tickformat": ".0%"})
    return fig


def int8_panel(q) -> None:
    """The int8 export against float32 on the validation photos, and the switch to serve it."""
    st.subheader("int8 against float32")
    m = st.columns(4)
    m[0].metric("Accuracy, int8", f"{q.int8_accuracy:.1%}",
                delta=f"{(q.int8_accuracy - q.float_accuracy) * 100 + 0.0:+.1f} points vs float32")
    m[1].metric("Top-1 agreement", f"{q.agreement:.1%}")
    m[2].metric("Size", f"{q.int8_bytes / 1e6:.1f} MB", delta=f"{q.int8_bytes / max(q.float_bytes, 1):.0%} of float32",
                delta_color="off")
    m[3].metric("Throughput", f"{q.speedup:.2f}x float32", delta=f"{q.int8_speed['photos_per_s']:.0f} photos/s",
                delta_color="off")
    st.caption(f"On {q.images} validation photos, calibrated on {q.calibration_images} training photos; float32 is "
               "the OpenVINO IR of the same model, both on this CPU (batch of 16 for throughput).")
    st.dataframe(q.per_class, hide_index=True, key="tl_clf_int8_classes", column_config={
        "float": st.column_config.NumberColumn("accuracy, float32", format="%.3f"),
        "int8": st.column_config.NumberColumn("accuracy, int8", format="%.3f"),
        "change": st.column_config.NumberColumn("change", format="%+.3f")})
    if q.parity_holds:
        st.toggle("Serve the int8 model in this classifier", key=INT8,
                  help="Its parity holds: top-1 agreement at least 98% and at most 1 point of accuracy lost.")
    else:
        st.warning("int8 does not keep parity here (it needs top-1 agreement of at least 98% and at most 1 point of "
                   "accuracy lost): the classifier keeps the float model.", icon=":material/warning:")


def card_panel(report) -> None:
    """Each exported format measured on this machine, on demand (it runs every format)."""
    st.subheader("Deployment card")
    saved = st.session_state.get(CARD)
    if st.button("Measure each format on this machine", key="tl_clf_card_btn", icon=":material/speed:"):
        data = export.run_int8_data(run, CARD_PHOTOS) if run is not None else None
        photos, labels = (data.validation, data.labels) if data else (parity_sources, None)
        with st.spinner("Running every format…"), common.friendly_errors():
            saved = (model_key, export.deployment_card(predictor.model, report, photos, labels))
            st.session_state[CARD] = saved
    if saved and saved[0] == model_key:
        st.dataframe(saved[1], hide_index=True, key="tl_clf_card", column_config={
            "size (MB)": st.column_config.NumberColumn(format="%.2f"),
            "p50 (ms)": st.column_config.NumberColumn(format="%.1f"),
            "p95 (ms)": st.column_config.NumberColumn(format="%.1f"),
            "photos/s (batch 16)": st.column_config.NumberColumn(format="%.0f"),
            "accuracy": st.column_config.NumberColumn(format="%.3f"),
            "agreement with Keras": st.column_config.NumberColumn(format="%.3f")})
        st.caption("Latency: one photo's forward pass (p50, p95 of 20, the formats timed in turns); accuracy on the run's validation photos (none "
                   "for an ImageNet classifier); agreement: the same top-1 class as the Keras model. Measured here, "
                   "on this machine's CPU, while it does whatever else it is doing.")
    else:
        st.caption("Size, latency (p50, p95), accuracy and agreement with the Keras model of each exported format, "
                   f"measured on up to {CARD_PHOTOS} validation photos.")


def items_key(items) -> tuple:
    return tuple((name, len(data), hashlib.sha1(data).hexdigest()[:16]) for name, data in items)


def gradcam_overlay(result, data: bytes):
    """The photo with the Grad-CAM heatmap of its top class laid over it."""
    from core.nets import explain

    cam = explain.gradcam(predictor.model, result.pixels, result.index)
    photo = inference.display_image(data, max_side=480)
    return explain.overlay(photo, cam.heatmap), cam


# ---------------------------------------------------------------- inputs
if predictor is not None:
    st.header("Photos")
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    photo_mb = uploads.photo_limit_mb(st.get_option("server.maxUploadSize"))
    files = c1.file_uploader(
        f"Photos: {UPLOAD_TYPES_TEXT}; one or many", type=UPLOAD_TYPES,
        accept_multiple_files=True, key="tl_clf_files", max_upload_size=photo_mb,
    )
    k = c2.slider("Top-k", 1, min(10, predictor.num_classes), min(5, predictor.num_classes), key="tl_clf_topk")
    show_cam = c3.toggle("Grad-CAM heatmaps", value=True, key="tl_clf_show_cam",
                         help="Where in the photo the evidence for the top class is (last convolutional layer).")
    use_camera = c3.toggle("Use the camera", value=False, key="tl_clf_use_camera")
    shot = st.camera_input("Take a photo", key="tl_clf_camera") if use_camera else None

    named = [(f.name, f) for f in files or []]
    if shot is not None:
        named.append((f"camera-{len(named) + 1}.jpg", shot))
    accepted, too_big = uploads.within_limit(named, photo_mb)
    if too_big:
        rest = f"; the other {common.plural(len(accepted), 'photo')} went on" if accepted else ""
        if len(too_big) == 1:
            st.error(f"Rejected: {common.plain(too_big[0].rstrip('.'))}{rest}.", icon=":material/block:")
        else:
            st.error(f"Rejected {len(too_big)} photos{rest}:\n\n" + "\n".join(f"- {common.plain(r)}" for r in too_big),
                     icon=":material/block:")
    items = [(name, f.getvalue()) for name, f in accepted]

    if not items:
        st.info("Upload photos or take one with the camera to classify them.", icon=":material/photo_camera:")
    else:
        key = (model_key, serving_int8, items_key(items))
        cached = st.session_state.get(RESULTS)
        if cached and cached[0] == key:
            results = cached[1]
            for r in results:  # a new top-k needs no new forward pass
                if r.ok and len(r.top) != min(k, predictor.num_classes):
                    r.top = inference.top_k(r.probabilities, predictor.classes, k)
        else:
            bar = st.progress(0.0, text=f"Classifying {len(items)} photo(s)…")
            results = inference.classify_many(
                predictor, items, k=k,
                progress=lambda done, total: bar.progress(done / max(total, 1),
                                                          text=f"Classified {done} of {total} photos"),
            )
            bar.empty()
            st.session_state[RESULTS] = (key, results)
            st.session_state[CAMS] = {}

        if predictor.calibrated:
            abstention = predictor.trust.abstention
            with st.expander("“Not sure” threshold: the accuracy / coverage trade-off", icon=":material/tune:"):
                floor = 1.0 / predictor.num_classes
                threshold = st.slider(
                    "Answer only when the calibrated probability reaches", floor, 1.0,
                    float(min(max(abstention.threshold, floor), 1.0)), 0.005, format="%.3f", key="tl_clf_not_sure",
                    help="Below it the classifier says “not sure” and names the two closest classes. The default "
                         "halves the validation error on the photos it answers.")
                point = abstention.at(threshold)
                st.plotly_chart(tradeoff_figure(abstention, point), key="tl_clf_tradeoff",
                                config={"displayModeBar": False})
                st.caption(f"On the run's validation photos: at {threshold:.3f} it answers {point['coverage']:.1%} "
                           f"of them, {point['accuracy']:.1%} correctly (all of them: {abstention.accuracy_all:.1%}). "
                           f"Default {abstention.threshold:.3f}.")
            inference.apply_threshold(results, threshold)

        good = [r for r in results if r.ok]
        bad = [r for r in results if not r.ok]
        m = st.columns(4)
        m[0].metric("Photos", len(results))
        m[1].metric("Classified", len(good))
        m[2].metric("Could not be read", len(bad))
        if good:
            m[3].metric("Median latency per photo", f"{np.median([r.latency_ms for r in good]):.0f} ms",
                        help="Decode + resize + forward pass + label decoding. In a batch the forward pass "
                             "is shared, so each photo counts its share.")
        if bad:
            if len(bad) == 1:
                rest = f"; the other {common.plural(len(good), 'photo')} {'was' if len(good) == 1 else 'were'} " \
                       "classified" if good else ""
                st.warning(f"**{common.plain(bad[0].name)}** could not be read: {common.plain(str(bad[0].error).rstrip('.'))}{rest}.",
                           icon=":material/warning:")
            else:
                rest = f"; the other {len(good)} were classified" if good else ""
                st.warning(f"{len(bad)} photos could not be read{rest}:\n\n"
                           + "\n".join(f"- **{common.plain(r.name)}**: {common.plain(r.error)}" for r in bad), icon=":material/warning:")

        if predictor.calibrated and good:
            n = st.columns(4)
            n[0].metric("Answered", sum(not r.not_sure for r in good))
            n[1].metric("Not sure", sum(bool(r.not_sure) for r in good))
            if predictor.trust.ood is not None:
                n[2].metric("Unlike the training data", sum(bool(r.unlike_data) for r in good),
                            help="Flagged when the photo's features lie further from the training photos' than "
                                 "99% of the validation photos' do.")

        frame = inference.results_frame(results, k)
        trust_columns = ["answer", "unlike_data"] if predictor.calibrated else []
        # The top-k text is what a reader came for: wide, and before the narrow numbers (1400 px window).
        st.dataframe(frame, hide_index=True, placeholder="—",
                     column_order=["file", *trust_columns[:1], "top1", "probability", "top_k", *trust_columns[1:],
                                   "latency_ms", "error"],
                     column_config={
                         "file": st.column_config.TextColumn("file", width="small"),
                         "top1": st.column_config.TextColumn("top 1", width="small"),
                         "probability": st.column_config.ProgressColumn("probability", format="%.3f", min_value=0,
                                                                        max_value=1, width="small"),
                         "top_k": st.column_config.TextColumn(f"top {k}", width="large"),
                         "latency_ms": st.column_config.NumberColumn("latency (ms)", format="%.1f", width="small"),
                         "error": st.column_config.TextColumn("could not be read", width="medium"),
                         "answer": st.column_config.TextColumn("answer", width="medium"),
                         "unlike_data": st.column_config.CheckboxColumn("unlike the training data", width="small"),
                     })
        st.download_button("Download the results (CSV)", inference.results_csv(results, k),
                           file_name="predictions.csv", mime="text/csv", icon=":material/download:",
                           on_click="ignore", key="tl_clf_csv")

        data_by_index = [data for _, data in items]
        shown = [i for i, r in enumerate(results) if r.ok][:MAX_CARDS]
        if len(good) > MAX_CARDS:
            st.caption(f"Showing the first {MAX_CARDS} photos in detail; all {len(results)} are in the table.")
        cams = st.session_state.setdefault(CAMS, {})
        for i in shown:
            r = results[i]
            with st.container(border=True):
                if r.not_sure:
                    closest = " or ".join(f"**{common.plain(c)}**" for c in r.closest)
                    st.markdown(f"**{common.plain(r.name)}** → not sure: closest classes {closest} "
                                f"(top-1 at {r.confidence:.1%}, below the threshold)")
                else:
                    st.markdown(f"**{common.plain(r.name)}** → top-1: **{common.plain(r.label)}** ({r.confidence:.1%})")
                if r.unlike_data:
                    st.warning(f"This photo is unlike the training data: its features are further from the training "
                               f"photos' than {r.unusual:.1%} of the validation photos' are. Whatever the answer, "
                               "the model has not learnt photos like it.", icon=":material/help:")
                cols = st.columns([1, 1.3, 1])
                try:
                    cols[0].image(inference.display_image(data_by_index[i], max_side=480), caption="the photo")
                except TransferLabError as exc:
                    cols[0].caption(f"Cannot draw this photo: {common.plain(exc)}")
                cols[1].plotly_chart(topk_figure(r), key=f"tl_clf_chart_{i}", config={"displayModeBar": False})
                if show_cam:
                    if i not in cams:
                        try:
                            with st.spinner("Grad-CAM…"):
                                cams[i] = gradcam_overlay(r, data_by_index[i])
                        except TransferLabError as exc:
                            cams[i] = str(exc)
                        except Exception as exc:  # noqa: BLE001  an explanation failing must not hide the prediction
                            cams[i] = f"Grad-CAM is not available for this model ({type(exc).__name__}: {exc})."
                    if isinstance(cams[i], str):
                        cols[2].caption(common.plain(cams[i]))
                    else:
                        picture, cam = cams[i]
                        cols[2].image(picture, caption=f"Grad-CAM for “{common.plain(r.label)}” at {cam.layer.split('/')[-1]}")
                share = " (its share of the batch)" if len(good) > 1 else ""
                st.caption(f"Latency {r.latency_ms:.0f} ms: decode + resize {r.decode_ms:.1f} ms, "
                           f"forward pass + labels {r.forward_ms:.1f} ms{share}.")

# ---------------------------------------------------------------- export
if predictor is not None:
    st.header("Export")
    st.write(
        "Download the model to run it elsewhere. Every format holds the preprocessing, so it takes raw "
        f"RGB pixels (0–255) at {predictor.input_size} x {predictor.input_size} and returns class "
        "probabilities" + (" (one sigmoid: the probability of the second class)" if predictor.binary else "")
        + ". Each export is checked against the Keras model: the same top-1 class on a few images."
    )
    formats = st.multiselect(
        "Formats", list(export.LABELS), default=["keras", "savedmodel", "tflite"], format_func=export.LABELS.get,
        key="tl_clf_formats",
        help="Keras and SavedModel for TensorFlow; TFLite for phones and small devices; OpenVINO IR for "
             "OpenVINO Runtime on Intel CPUs and GPUs; ONNX for ONNX Runtime and most other runtimes. "
             "The parity check runs OpenVINO IR and ONNX on OpenVINO at float32. int8 (a run's model only) is "
             "quantized with NNCF on training photos and measured against float32 on validation photos.",
    )
    if run is not None:
        parity_sources = export.validation_images(run, 8)
        where = "validation images of the run"
    else:
        ok_uploads = [(name, data) for (name, data), r in zip(items, results) if r.ok] if items else []
        ds = common.current_dataset()
        if ok_uploads:
            parity_sources = ok_uploads[:8]
            where = "uploaded photo" if len(parity_sources) == 1 else "uploaded photos"
        elif ds is not None:
            parity_sources, where = ds.paths("validation")[:8] or [r.path for r in ds.records[:8]], \
                f"images of the dataset {common.plain(ds.name)}"
        else:
            parity_sources, where = [], ""
    if parity_sources:
        st.caption(f"Parity check on {len(parity_sources)} {where}.")
    else:
        st.caption("Upload photos (or choose a dataset) for the parity check; the files export without it.")

    if st.button("Export", type="primary", icon=":material/package_2:", key="tl_clf_export_btn",
                 disabled=not formats):
        with st.status("Exporting…", expanded=True) as status:
            with common.friendly_errors():
                report = export.export_all(
                    predictor.model, export.export_folder("-".join(str(p) for p in model_key)), formats,
                    parity_images=parity_sources, classes=predictor.classes,
                    progress=lambda msg: status.update(label=msg + "…") or st.write(msg),
                    int8=export.run_int8_data(run) if run is not None and "openvino_int8" in formats else None,
                )
                st.session_state[EXPORTS] = (model_key, report)
            status.update(label="Export finished", state="complete", expanded=False)

    saved = st.session_state.get(EXPORTS)
    if saved and saved[0] == model_key:
        report = saved[1]
        for fmt, message in report.errors.items():
            st.error(f"{export.LABELS.get(fmt, 'Parity check')}: {common.plain(message)}", icon=":material/error:")
        present = {f: a for f, a in report.artifacts.items() if a.path.is_file()}
        if present:
            st.dataframe(report.sizes(), hide_index=True, column_config={
                "size (MB)": st.column_config.NumberColumn(format="%.2f"),
                "export seconds": st.column_config.NumberColumn(format="%.1f"),
            })
            buttons = st.container(horizontal=True)  # they wrap: seven in a row of columns would be cut short
            for fmt, artifact in present.items():
                buttons.download_button(
                    f"{artifact.label} · {artifact.size_bytes / 1e6:.1f} MB", data=artifact.path.read_bytes,
                    file_name=artifact.file_name, mime="application/octet-stream", on_click="ignore",
                    icon=":material/download:", key=f"tl_clf_dl_{fmt}",
                )
        if report.parity is not None:
            parity = report.parity
            checked = parity["all agree"].notna()
            agree = int(parity.loc[checked, "all agree"].astype(bool).sum())
            total = int(checked.sum())
            if agree == total:
                st.success(f"Same top-1 as the Keras model on {agree} of {total} images, in every format.",
                           icon=":material/check_circle:")
            else:
                st.warning(f"Top-1 differs from the Keras model on {total - agree} of {total} images "
                           "(see the table; quantized formats can flip close calls).", icon=":material/warning:")
            st.dataframe(parity, hide_index=True)
            st.caption("One row per image: each format's top-1 class, and max |Δp|, the largest difference "
                       "from the Keras model's class probabilities (0 = identical).")
        if report.int8 is not None:
            int8_panel(report.int8)
        if present:
            card_panel(report)
