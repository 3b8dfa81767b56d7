"""Training curves: live curves of running jobs and finished runs, overlaid; then one
run in detail: confusion matrix, per-class scores, the worst validation predictions,
downloads and the TensorBoard log folder."""

import html
import json

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app_pages import common
from core.runs import RunStore, compare, curves, display, jobs, progress
from core.serve import trust
from core.train import registry

REFRESH_S = 2.0
FINISHED_IDS = "tl_curves_finished"  # selected runs seen finished at the last refresh
PALETTE = px.colors.qualitative.Plotly

st.title("Training curves")

store = RunStore()
with common.friendly_errors():
    jobs.pump(store)
runs = {r.id: r for r in store.list()}
if not runs:
    st.info("No runs yet: train a strategy on the Strategies page and its curves appear here, live.",
            icon=":material/show_chart:")
    st.page_link(common.STRATEGIES_PAGE, label="Open the Strategies page", icon=":material/arrow_forward:")
    st.stop()

table = compare.comparison_table(runs.values()).set_index("run_id", drop=False)


CHIPS = display.chip_labels(table.to_dict("records"))  # the names the Strategies page shows
LEGEND = display.chip_labels(table.to_dict("records"), tail_first=False)


def label(run_id: str) -> str:
    return CHIPS.get(run_id, run_id)


# Which runs: those sent here by the Strategies page, else the running ones, else the newest.
wanted = st.session_state.get(common.CURVES_RUNS)
if wanted is None:
    wanted = [r for r in table.index if table.loc[r, "state"] in compare.ACTIVE][:4] or list(table.index[:1])
st.session_state[common.CURVES_RUNS] = [r for r in wanted if r in runs]
c = st.columns([4, 1, 1], vertical_alignment="bottom")
selected = c[0].multiselect("Runs", list(table.index), key=common.CURVES_RUNS, format_func=label,
                            placeholder="Pick one or more runs to overlay")
weight = c[1].slider("Smoothing", 0.0, 0.95, 0.0, 0.05, key="tl_curves_smooth",
                     help="Exponential moving average, as in TensorBoard (0: raw values).")
show_raw = c[2].checkbox("Show raw", True, key="tl_curves_raw", disabled=weight == 0,
                         help="Keep the unsmoothed values as faint lines.")
if not selected:
    st.caption("Pick runs above to see their curves.")
    st.stop()


# ---------------------------------------------------------------- curves (live while running)

def curves_figure(ids: list[str]) -> tuple[go.Figure, list[str]]:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"), horizontal_spacing=0.08)
    notes: list[str] = []
    single = len(ids) == 1
    for n, run_id in enumerate(ids):
        run = runs[run_id]
        history = run.history()
        if history.empty:
            continue
        name = table.loc[run_id, "name"] if single else LEGEND.get(run_id, run_id)
        colour = PALETTE[n % len(PALETTE)]
        frame = curves.curves_frame(history, weight)
        for col, quantity in ((1, "accuracy"), (2, "loss")):
            for split, dash in (("train", "dot"), ("validation", "solid")):
                part = frame[(frame["quantity"] == quantity) & (frame["split"] == split)]
                if part.empty or part["value"].isna().all():
                    continue
                colour_here = (PALETTE[0] if split == "train" else PALETTE[1]) if single else colour
                legend = f"{split}" if single else f"{name} ({split})"
                if weight and show_raw:
                    fig.add_scatter(x=part["epoch"], y=part["value"], mode="lines", line=dict(color=colour_here, dash=dash,
                                    width=1), opacity=0.3, showlegend=False, hoverinfo="skip", row=1, col=col)
                fig.add_scatter(x=part["epoch"], y=part["smoothed"], mode="lines+markers", name=legend,
                                legendgroup=legend, showlegend=col == 1, marker=dict(size=5),
                                line=dict(color=colour_here, dash=dash), row=1, col=col)
        best = curves.best_epoch(history)
        if best:
            for col, metric in ((1, "val_accuracy"), (2, "val_loss")):
                if metric in history:
                    y = history[metric].iloc[best["index"]]
                    fig.add_scatter(x=[best["epoch"]], y=[y], mode="markers", showlegend=single and col == 1,
                                    name="best epoch", marker=dict(symbol="star", size=15, color="gold",
                                                                   line=dict(color="black", width=1)),
                                    hovertext=f"best epoch {best['epoch']:g}", row=1, col=col)
        boundary = curves.fine_tune_boundary(history, run.metrics())
        if boundary is not None:
            for col in (1, 2):
                fig.add_vline(x=boundary - 0.5, line_dash="dash", line_color=colour if not single else "grey",
                              row=1, col=col, annotation_text="fine-tuning starts" if col == 1 else None,
                              annotation_position="top left")
        hint = curves.overfit_hint(history)
        if hint:
            notes.append(f"**{table.loc[run_id, 'name']}**: {hint['message']}")
    fig.update_xaxes(title_text="epoch", dtick=1 if max((len(runs[i].history()) for i in ids), default=0) <= 20 else None)
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    fig.update_layout(height=400, margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return fig, notes


def curves_panel() -> None:
    states = {i: runs[i].effective_state() for i in selected if i in runs}
    finished_now = {i for i, s in states.items() if s not in compare.ACTIVE}
    before = st.session_state.get(FINISHED_IDS)
    st.session_state[FINISHED_IDS] = finished_now
    if before is not None and finished_now - before:
        st.rerun()  # a run just finished: redraw the details below as well
    for run_id, state in states.items():
        if state in compare.ACTIVE:
            fraction, text = progress.progress_summary(runs[run_id].progress() if state == "running" else {}, state)
            line = f"{table.loc[run_id, 'name']}: {text}"
            st.progress(fraction, text=line) if fraction is not None else st.caption(line)
    if not any(not runs[i].history().empty for i in selected):
        st.caption("No epoch finished yet: the curves start after the first epoch.")
        return
    fig, notes = curves_figure(selected)
    st.plotly_chart(fig, key="tl_curves_chart")
    st.caption("Solid: validation; dotted: training. ★ the best epoch (highest validation accuracy), the one a "
               "run keeps. A dashed vertical line marks where fine-tuning unfroze the base.")
    for note in notes:
        st.warning(note, icon=":material/trending_up:")


live = any(table.loc[i, "state"] in compare.ACTIVE for i in selected)
st.fragment(run_every=REFRESH_S if live else None)(curves_panel)()


# ---------------------------------------------------------------- calibration

def reliability_figure(cal) -> go.Figure:
    """Accuracy against confidence per bin, before and after calibration; the diagonal is perfect."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dash"), name="perfectly calibrated")
    for bins, name, colour in ((cal.bins_before, f"network's own (ECE {cal.ece_before:.3f})", "#e4572e"),
                               (cal.bins_after, f"calibrated (ECE {cal.ece_after:.3f})", "#1f6f8b")):
        fig.add_scatter(x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
                        name=name, line=dict(color=colour), marker=dict(size=[6 + 14 * (b["count"] / max(cal.images, 1)) ** 0.5
                                                                               for b in bins]),
                        customdata=[b["count"] for b in bins],
                        hovertemplate="confidence %{x:.1%}: accuracy %{y:.1%} (%{customdata} images)<extra></extra>")
    fig.update_layout(height=380, margin=dict(t=30, b=10), legend=dict(orientation="h", y=-0.2),
                      xaxis=dict(title="top-1 confidence", tickformat=".0%", range=[0, 1.02]),
                      yaxis=dict(title="accuracy", tickformat=".0%", range=[0, 1.02]))
    return fig


def reliability_section(found) -> None:
    st.subheader("Calibration")
    if found is None:
        st.caption(f"This run is {trust.NOT_CALIBRATED}: the Classifier shows its network's own probabilities.")
        return
    cal = found.calibration
    left, right = st.columns([3, 2])
    left.plotly_chart(reliability_figure(cal), key="tl_curves_reliability")
    c = right.columns(2)
    c[0].metric("ECE before", f"{cal.ece_before:.3f}")
    c[1].metric("ECE after", f"{cal.ece_after:.3f}", delta=f"{cal.ece_after - cal.ece_before:+.3f}", delta_color="inverse")
    if cal.method == "temperature":
        right.markdown(f"Temperature **T = {cal.temperature:.2f}** ({'softens' if cal.temperature > 1 else 'sharpens'} "
                       "the network's confidence). The class a photo gets, and so the accuracy, cannot change.")
    else:
        right.markdown("Kept the network's own probabilities: a fitted temperature did not lower the held-out ECE.")
    right.caption(f"Expected calibration error (ECE): on the {cal.images} validation images, the average gap between "
                  "the confidence and the accuracy, over 15 bins of confidence. The temperature is fitted on the "
                  "validation log loss; ECE after is held out (each half scaled by the temperature fitted on the other).")


# ---------------------------------------------------------------- one run in detail

st.header("Run details", divider="gray")
run_id = st.selectbox("Run", selected, format_func=label, key="tl_curves_detail")
run = runs[run_id]
with common.friendly_errors(stop=True):
    status = run.effective_status()
state = status["state"]
cfg = run.config
st.caption(f"{registry.label(cfg.get('strategy'))} · backbone {table.loc[run_id, 'backbone']} "
           f"({cfg.get('weights')}) · dataset `{cfg.get('dataset')}` · seed {cfg.get('seed')} · `{run.dir}`")
if cfg.get("started_by"):
    st.caption(f"Started by **{common.plain(cfg['started_by'])}**.")

if state == "failed":
    st.error(f"This run failed: {common.plain(status.get('reason') or 'no reason recorded')}", icon=":material/error:")
    if status.get("error"):
        with st.expander("Error details (traceback)"):
            st.code(status["error"], language="text")
elif state == "cancelled":
    st.info(f"This run was cancelled ({common.plain(status.get('reason') or 'by user')}). The epochs it finished are kept above.",
            icon=":material/cancel:")
elif state in compare.ACTIVE:
    st.info("This run is still " + ("waiting in the queue." if state == "queued" else
                                   "training; the details appear when it finishes."), icon=":material/hourglass_top:")
    if st.button("Cancel this run", key="tl_curves_cancel", icon=":material/stop:"):
        with common.friendly_errors():
            st.toast(f"'{common.plain(run.name)}' is {jobs.cancel(run)}" + (" (stopping after the current batch)"
                                                            if run.effective_state() == "running" else ""))

metrics = run.metrics() if state == "done" else None
if metrics:
    c = st.columns(6)
    c[0].metric("Validation accuracy", f"{metrics['val_accuracy']:.1%}",
                help=" · ".join(display.uncertainty_lines(metrics)[:1]) or None)
    c[1].metric("Validation loss", f"{metrics['val_loss']:.3g}")
    c[2].metric("Macro F1", f"{metrics.get('macro_f1', float('nan')):.3f}")
    c[3].metric("Training time", progress.format_seconds(metrics.get("train_seconds"), short=True),
                help=progress.format_seconds(metrics.get("train_seconds")))
    c[4].metric("Trainable params", f"{metrics.get('trainable_params', 0):,}")
    c[5].metric("Epochs", metrics.get("epochs_run", "?"))
    best = curves.best_epoch(run.history())
    if best:
        st.caption(f"Best epoch {best['epoch']:g} ({best['value']:.1%} validation accuracy); the saved model "
                   f"keeps those weights. {metrics.get('val_images', '?')} validation images, "
                   f"{metrics.get('train_images', '?')} training images, {metrics.get('input_size')} px.")

    st.caption(common.plain(" · ".join(line.split(":", 1)[0] + ": " + line.split(":", 1)[1].strip()
                                       for line in display.uncertainty_lines(metrics))))
    augmentation = curves.augmentation_summary(metrics)
    if augmentation:
        with st.expander(f"Augmentation: {augmentation}", icon=":material/auto_awesome:"):
            checks = curves.flip_checks_frame(metrics)
            if not checks.empty:
                st.caption("Each flip was tested before training: a linear probe on the backbone's features (on "
                           "raw pixels only where the features cannot separate the classes) learnt the classes on "
                           "originals, then read flipped copies; rotation, zoom, shift and contrast the same way "
                           "(see the reasons below). A flip is allowed "
                           "when the probe reads the flipped copies as well as the originals (so the class "
                           "survives) and cannot tell copies from originals (near 50%: they look like the data).")
                shares = checks.columns[1:4]
                st.dataframe(checks.assign(**{c: checks[c] * 100 for c in shares}), hide_index=True,
                             key="tl_curves_flips",
                             column_config={c: st.column_config.NumberColumn(format="%.1f%%") for c in shares})
            for reason in metrics["augment_decision"].get("reasons", []):
                st.markdown(f"- {common.plain(reason)}")
            st.caption("Choose a flip or fill on the Strategies page to override the measurement.")

    left, right = st.columns([3, 2])
    cm = curves.confusion_frame(metrics)
    if not cm.empty:
        cm = cm.rename(index=html.escape, columns=html.escape)  # Plotly draws markup in labels
        heat = px.imshow(cm, text_auto=True, color_continuous_scale="Blues", aspect="auto",
                         labels=dict(x="predicted", y="true", color="images"))
        heat.update_layout(height=max(300, 40 * len(cm) + 120), margin=dict(t=30))
        left.markdown("**Confusion matrix** (rows: true class; columns: predicted)")
        left.plotly_chart(heat, key="tl_curves_cm")
    scores = curves.per_class_frame(metrics)
    right.markdown("**Per class**")
    right.dataframe(scores, hide_index=True, key="tl_curves_per_class", column_config={
        "precision": st.column_config.NumberColumn(format="%.3f"),
        "recall": st.column_config.NumberColumn(format="%.3f"),
        "f1": st.column_config.NumberColumn("F1", format="%.3f")})
    right.caption("Precision: of the images predicted as the class, how many are. Recall: of the class's images, "
                  "how many were found.")

    reliability_section(trust.load(run.dir))

    st.subheader("Worst validation predictions")
    predictions = run.predictions()
    c = st.columns([1, 3], vertical_alignment="bottom")
    count = c[0].number_input("How many", 6, 60, 12, 6, key="tl_curves_worst_n")
    wrong_only = c[1].checkbox("Mistakes only", False, key="tl_curves_wrong_only")
    worst = curves.worst_predictions(predictions, int(count), wrong_only)
    if worst.empty:
        st.caption("No predictions recorded." if predictions is None or predictions.empty else "No mistakes at all.")
    else:
        mistakes = int((~predictions["correct"].astype(bool)).sum())
        st.caption("Sorted by the probability given to the true class, lowest first: "
                   + (f"{mistakes} of {len(predictions)} validation images are misclassified (✗)." if mistakes else
                      "every validation image is classified correctly, so these are the least confident ones."))
        cols = st.columns(6)
        for i, row in worst.iterrows():
            mark = "✓" if row["correct"] else "✗"
            cols[i % 6].image(common.stored_thumb(row["path"], run.dir, 160), width=160,
                              caption=f"{mark} true {common.plain(row['true'])} → {common.plain(row['predicted'])} ({row['confidence']:.0%})")

history = run.history()
if not history.empty or metrics:
    st.subheader("Downloads")
    c = st.columns([1, 1, 3])
    c[0].download_button("History CSV", history.to_csv(index=False), f"{run.id}-history.csv", "text/csv",
                         icon=":material/download:", disabled=history.empty, key="tl_curves_dl_history")
    c[1].download_button("Metrics JSON", json.dumps(metrics or {}, indent=2), f"{run.id}-metrics.json",
                         "application/json", icon=":material/download:", disabled=not metrics,
                         key="tl_curves_dl_metrics")
if run.tb_dir.is_dir():
    st.markdown("Prefer TensorBoard? Its logs for this run are in the run folder:")
    st.code(f'tensorboard --logdir "{run.tb_dir}"', language="bash")
elif state == "done":
    st.caption("This strategy writes no TensorBoard log (a linear probe has no epochs to log).")
