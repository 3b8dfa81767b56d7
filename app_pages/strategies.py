"""Strategies: train one or more strategies as background jobs, watch the queue,
compare the finished runs (table, charts, accuracy vs time), check the advisor's
recommendation against the measurement, and sweep the fine-tuning depth."""

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app_pages import common
from app_pages.advice import ADVICE, advisor_panel
from core import access, report, settings
from core.runs import RunStore, cluster, compare, display, jobs, progress, sweep
from core.train import FILLS, FLIPS, OPTIMIZERS, folds, plans, registry
from core.nets import POOLINGS, get_spec, weights_location
from core.data import check_trainable
from core.errors import TransferLabError

REFRESH_S = 2.0  # queue refresh while jobs run
IDLE_REFRESH_S = 10.0  # and while none does (runs started elsewhere, e.g. `python -m core train --background`)
LEARNING_RATES = (1e-6, 3e-6, 1e-5, 2e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
ACTIVE_IDS = "tl_strat_active"  # run ids seen queued/running at the last refresh
SCOPE = "tl_strat_scope"

st.title("Strategies")
st.write(
    "Train the transfer-learning strategies on your data and compare them: how accurate, how fast, "
    "how many weights each one trains. Runs are background jobs: they keep going while you browse, "
    "and you can cancel any of them."
)

ds = common.current_dataset()
backbone = common.current_backbone()
store = RunStore()
with common.friendly_errors():
    jobs.pump(store)
common.show_messages()


# ---------------------------------------------------------------- helpers (widgets only)

def _lr(where, label: str, value: float, key: str, help: str | None = None) -> float:
    choices = sorted(set(LEARNING_RATES) | {float(value)})
    return where.selectbox(label, choices, index=choices.index(float(value)), key=key, help=help,
                           format_func=lambda v: f"{v:g}", persist_state="session")


def _int(where, label: str, value: int, key: str, lo: int = 0, hi: int = 1000, help: str | None = None) -> int:
    return int(where.number_input(label, min_value=lo, max_value=hi, value=int(value), step=1, key=key, help=help,
                                  persist_state="session"))


def _option(where, option, value, key: str):
    """One widget for one of a strategy's options, by the kind the registry gives it."""
    if option.kind == "rate":
        return _lr(where, option.label, value, key, help=option.help or None)
    if option.kind == "int":
        return _int(where, option.label, value or 0, key, int(option.lo), int(option.hi), help=option.help or None)
    if option.kind == "float":
        step = 0.05 if option.hi <= 1 else None
        return float(where.number_input(option.label, min_value=float(option.lo), max_value=float(option.hi),
                                        value=float(value), step=step, format="%g", key=key,
                                        help=option.help or None, persist_state="session"))
    if option.kind == "text":
        return where.text_input(option.label, str(value or ""), key=key, persist_state="session",
                                help=option.help or None).strip()
    text = where.text_input(option.label, ", ".join(str(v) for v in value), key=key, persist_state="session",
                            help=option.help or None)
    return plans.parse_ints(text, option.label.lower())


def strategy_options(strategy: str, preset: str) -> dict:
    """The widgets of one strategy's own options (from the registry); returns its overrides."""
    d = registry.make_config(strategy, preset)
    options = registry.get(strategy).options
    out: dict = {}
    for row in range(0, len(options), 4):
        cols = st.columns(4)
        for col, option in zip(cols, options[row:row + 4]):
            key = common.option_key(preset, strategy, option.field)
            out[option.field] = _option(col, option, getattr(d, option.field), key)
    return out


def common_options(preset: str, ds) -> tuple[dict, str]:
    """Options shared by every selected strategy, folded away in an expander."""
    d = registry.make_config("feature_extraction", preset)
    k = lambda field: common.option_key(preset, "all", field)  # noqa: E731
    spec = get_spec(backbone if preset == "modern" else d.backbone)
    with st.expander("Advanced options (all strategies)", icon=":material/tune:"):
        c = st.columns(4)
        weights = c[0].selectbox("Backbone weights", ["imagenet", "random"], key=k("weights"),
                                 persist_state="session",
                                 help="random: the same network untrained; shows what ImageNet pretraining is worth.")
        size = _int(c[1], "Input size (px, 0: backbone default)", d.input_size, k("input_size"), 0, 1024,
                    help=f"{spec.display_name} default: {spec.default_size} px; at least {spec.min_size}.")
        pooling = c[2].selectbox("Pooling of the feature map", POOLINGS, index=POOLINGS.index(d.pooling),
                                 key=k("pooling"),
                                 persist_state="session")
        batch = _int(c[3], "Batch size", d.batch_size, k("batch_size"), 1, 1024)
        c = st.columns(4)
        optimizer = c[0].selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(d.optimizer), key=k("optimizer"),
                                   persist_state="session")
        seed = _int(c[1], "Seed", d.seed, k("seed"), 0, 2**31 - 1, help="Same seed, same split, same subset.")
        val_fraction = float(c[2].number_input(
            "Validation fraction", 0.05, 0.5, float(d.val_fraction), 0.05, key=k("val_fraction"),
            persist_state="session", help="Used only when the dataset has no validation/ folder."))
        limit = _int(c[3], "Images per class (0: all)", 0, k("limit_per_class"), 0, 10**6,
                     help="Train on a seeded subset per class and split: quick trials on big datasets.")
        c = st.columns(4)
        restore = c[0].checkbox("Keep the best epoch", d.restore_best, key=k("restore_best"), persist_state="session")
        weighting = {None: "auto (uneven classes)", True: "on", False: "off"}
        balanced = c[1].selectbox("Class weights", list(weighting), format_func=weighting.get,
                                  index=list(weighting).index(d.class_weights), key=k("class_weights"),
                                  persist_state="session",
                                  help=f"Auto: on when the largest training class has {registry.IMBALANCE_RATIO:g}x "
                                       "the images of the smallest, so the small classes count as much in the loss.")
        from core.train import precision

        names = {"": "server default", "auto": "auto (measured)", **precision.LABELS}
        train_precision = c[2].selectbox(
            "Training precision", ["", *precision.CHOICES], key=k("precision"), persist_state="session",
            format_func=lambda p: names.get(p, p),
            help="What gradient steps compute at. Auto: bf16 where it was measured faster on a CPU with native "
                 "bf16 (the from-scratch CNN), float16 on a GPU, float32 otherwise. The model a run saves is "
                 f"float32 either way. Here: {precision.describe_for_users()}.")
        st.markdown("**Augmentation** (" + ", ".join(s.label.lower() if i else s.label for i, s in enumerate(
            s for s in registry.STRATEGIES.values() if s.augments)) + ")")
        a = d.augment
        c = st.columns([1, 1.6, 1.6, 1, 1, 1, 1])  # the selects wide enough for "auto (measured)"
        aug_on = c[0].checkbox("Enabled", a.enabled, key=k("aug_enabled"), persist_state="session")
        auto = "auto (measured)"
        flip = c[1].selectbox("Flip", FLIPS, index=FLIPS.index(a.flip), key=k("aug_flip"), persist_state="session",
                              format_func=lambda f: auto if f == "auto" else f.replace("_", " ") or "none",
                              help="Auto: each run measures on the data whether a flip keeps the class (a mirrored "
                                   "2 is not a 2) and leaves out any that does not; the run's page shows why.")
        fill = c[2].selectbox("Fill", FILLS, index=FILLS.index(a.fill), key=k("aug_fill"), persist_state="session",
                              format_func=lambda f: auto if f == "auto" else f,
                              help="How rotation, zoom and shift fill the pixels they uncover. Auto: the background "
                                   "colour for images on a plain background, a mirror image (reflect) for photos.")
        rot = float(c[3].number_input("Rotation", 0.0, 0.5, a.rotation, 0.05, key=k("aug_rotation"),
                                      persist_state="session", help="Fraction of a full turn."))
        zoom = float(c[4].number_input("Zoom", 0.0, 0.5, a.zoom, 0.05, key=k("aug_zoom"), persist_state="session"))
        shift = float(c[5].number_input("Shift", 0.0, 0.5, a.translation, 0.05, key=k("aug_translation"),
                                        persist_state="session"))
        contrast = float(c[6].number_input("Contrast", 0.0, 0.9, a.contrast, 0.05, key=k("aug_contrast"),
                                           persist_state="session"))
        name = st.text_input("Run name (optional)", key=k("name"), persist_state="session",
                             placeholder="e.g. first try", max_chars=80)
    out = dict(dataset=ds.root, backbone=backbone if preset == "modern" else d.backbone, weights=weights,
               input_size=size, pooling=pooling, batch_size=batch, optimizer=optimizer, seed=seed,
               val_fraction=val_fraction, limit_per_class=limit, restore_best=restore, class_weights=balanced,
               precision=train_precision,
               augment=dict(enabled=aug_on, flip=flip, fill=fill, rotation=rot, zoom=zoom, translation=shift,
                            contrast=contrast))
    return out, name.strip()


def launch(configs: list[dict], what: str) -> None:
    """Create the runs and queue them; the result shows after the rerun."""
    created = []
    try:
        for cfg in configs:
            created.append(store.create(cfg, name=plans.run_name(cfg)))
        for run in created:
            jobs.submit(run)
    except TransferLabError as err:
        common.say("error", f"Could not start {what}: {err}")
        return
    st.session_state[ACTIVE_IDS] = {r.id for r in store.list(state=compare.ACTIVE)}  # no extra rerun for these
    limit = settings.max_jobs()
    at_a_time = "one run trains at a time" if limit == 1 else f"{limit} runs train at a time"
    common.say("success", f"Queued {what}: {len(created)} run{'s' * (len(created) != 1)}; "
                      f"{at_a_time} on this machine, the others wait in the queue below.")


def _cancel(run_id: str, force: bool = False) -> None:
    try:
        run = store.get(run_id)
        if force:
            jobs.kill(run, reason="stopped by user (forced)")
            common.say("warning", f"Stopped '{run.name}' at once (marked failed).", "queue")
        else:
            state = jobs.cancel(run)
            text = ("cancelled" if state == "cancelled" else
                    "asked to stop: it ends after the current batch and keeps its history")
            common.say("info", f"'{run.name}' {text}.", "queue")
    except TransferLabError as err:
        common.say("error", err, "queue")


# ---------------------------------------------------------------- launch form

untrainable = None  # why the current dataset cannot train, said before any form is offered
if ds is not None:
    try:
        check_trainable(ds)
    except TransferLabError as err:
        untrainable = str(err)
if ds is None:
    st.info("Choose a dataset first: the strategies train on the dataset picked on the Dataset page.",
            icon=":material/photo_library:")
    st.page_link(common.DATASET_PAGE, label="Open the Dataset page", icon=":material/arrow_forward:")
elif untrainable:
    st.header("Train", divider="gray")
    st.error(f"{common.plain(untrainable)} No strategy can train on it: add photos of another class on the Label page, "
             "or pick another dataset.", icon=":material/block:")
    st.page_link(common.LABEL_PAGE, label="Open the Label page", icon=":material/label:")
else:
    st.header("Train", divider="gray")
    counts = ds.counts()
    st.caption(f"Dataset **{common.plain(ds.name)}**: {sum(counts['train'].values()):,} training and "
               f"{sum(counts['validation'].values()):,} validation images, {ds.num_classes} classes. "
               f"Backbone **{get_spec(backbone).display_name}** (sidebar).")
    preset = st.segmented_control(
        "Defaults", list(registry.PRESETS), format_func=registry.PRESETS.get, default="modern",
        key="tl_strat_preset", persist_state="session", required=True,
        help="Classic: the textbook recipe (always VGG16, whatever the sidebar says). "
             "Modern: faster defaults on the sidebar's backbone.")
    preset = preset or "modern"
    if preset == "classic":
        st.caption("The classic recipe trains on VGG16 at 150 px (flattened 4x4x512 features, Dense 256 + "
                   "Dropout 0.5, RMSprop 2e-5, batch 20, 30 epochs); fine-tuning unfreezes VGG16's last block.")
    chosen = st.multiselect("Strategies", list(registry.STRATEGIES), default=["feature_extraction"],
                            format_func=registry.label, key="tl_strat_chosen", persist_state="session",
                            help=" ".join(f"{s.label}: {s.summary}." for s in registry.STRATEGIES.values()))
    # repeated splits: the default follows the dataset (core.train.folds.default_folds); the widget's key names
    # the dataset, so another dataset starts from its own default
    c = st.columns([1, 1.3, 1.5, 2], vertical_alignment="center")
    n_folds = _int(c[0], "Repeat over k splits", folds.default_folds(ds), f"tl_strat_folds_{ds.fingerprint}", 1,
                   folds.MAX_FOLDS, help="Train each strategy once per split of train + validation pooled and report "
                   "the mean ± spread of the folds; 1: the dataset's own split.")
    fold_scheme = c[1].selectbox("Splits", list(folds.SCHEMES), format_func=folds.SCHEMES.get,
                                 key="tl_strat_fold_scheme", persist_state="session", disabled=n_folds < 2)
    keep_models = c[2].checkbox("Keep each fold's model", key="tl_strat_keep_fold_models", persist_state="session",
                                disabled=n_folds < 2, help="Each fold also saves its model and calibration, as a "
                                "single run does. Off: the folds keep their metrics, predictions and curves; train "
                                "once on the whole split for the model to use.")
    c[3].caption(common.plain(folds.default_reason(ds)))
    per_strategy: dict = {}
    errors: list[str] = []
    for strategy in chosen:
        with st.expander(f"{registry.label(strategy)} options", icon=":material/settings:"):
            try:
                per_strategy[strategy] = strategy_options(strategy, preset)
            except TransferLabError as err:
                errors.append(common.plain(err))
                st.error(common.plain(err))
    common_opts, name = common_options(preset, ds)
    spec = get_spec(common_opts["backbone"])
    if common_opts["weights"] == "imagenet" and weights_location(spec) is None:
        st.caption(f":material/cloud_download: {spec.display_name}'s ImageNet weights are not on this machine: "
                   "the first run downloads them (internet needed) or fails saying where to put them.")

    left, right, _ = st.columns([1, 1, 2])
    train = left.button("Train selected", type="primary", icon=":material/play_arrow:", disabled=not chosen,
                        key="tl_strat_train")
    every = list(registry.STRATEGIES.values())
    all_five = right.button(f"Compare all {len(every)}", icon=":material/compare_arrows:", key="tl_strat_all",
                            help="Queue " + ", ".join(s.label.lower() for s in every) + " on the same data, split "
                                 "and seed.")
    if train or all_five:
        fold_problem = folds.dataset_problem(ds, n_folds, fold_scheme)
        if errors or fold_problem:
            st.error("Fix the options above first: " + " ".join([*errors, common.plain(fold_problem)]).strip())
        else:
            with common.friendly_errors():
                if all_five:
                    configs = plans.compare_all_configs(preset=preset, common=common_opts,
                                                          per_strategy=per_strategy)
                else:
                    configs = [c.to_dict() for c in plans.build_configs(
                        chosen, preset=preset, common=common_opts, per_strategy=per_strategy)]
                what = f"all {len(every)} strategies" if all_five else "training"
                if n_folds > 1:
                    what += f" over {n_folds} splits"
                launch(folds.fold_configs(plans.name_runs(configs, name), n_folds, scheme=fold_scheme,
                                          keep_models=keep_models), what)
                st.rerun()


# ---------------------------------------------------------------- queue (live)

def queue_panel() -> None:
    with common.friendly_errors():
        jobs.pump(store)
    active = store.list(state=compare.ACTIVE)
    ids = {r.id for r in active}
    before = st.session_state.get(ACTIVE_IDS)
    st.session_state[ACTIVE_IDS] = ids
    if before is not None and before != ids:
        st.rerun()  # a run finished or appeared: redraw the comparison, adjust the refresh rate
    common.show_messages("queue")
    if not active:
        st.caption("No job queued or running.")
        return
    position = 0
    for run in reversed(active):  # oldest first: the order they run in
        try:
            status = run.effective_status()
        except TransferLabError:
            continue
        state = status["state"]
        position += state == "queued"
        with st.container(border=True):
            top = st.columns([3, 1, 1], vertical_alignment="center")
            strategy = registry.label(run.config.get("strategy", "?"))
            ran_on = cluster.where(status) if status.get("cluster") else ""  # a run on a Ray cluster: its node
            top[0].markdown(f"**{common.plain(run.name)}**" + ("" if strategy in run.name else f" · {strategy}")
                            + f"  \n:gray[`{run.id}`" + (f" · {ran_on}" if ran_on else "") + "]")
            asked = run.cancel_requested()
            others = not access.may_change(run.dir)  # the team sees every run; only its owner (or an admin) stops it
            theirs = "Started by someone else: only they or an admin can stop it." if others else None
            if asked and state == "running":
                top[1].caption("stopping…")
                top[2].button("Force stop", key=f"tl_kill_{run.id}", on_click=_cancel, args=(run.id, True),
                              disabled=others, help=theirs or "Kill the worker now if it does not stop by itself.")
            else:
                top[2].button("Cancel", key=f"tl_cancel_{run.id}", on_click=_cancel, args=(run.id,),
                              icon=":material/stop:", disabled=others, help=theirs)
            fraction, text = progress.progress_summary(run.progress() if state == "running" else {}, state)
            if state == "queued":
                text = f"Waiting in the queue (#{position})"
            if fraction is None:
                st.caption(text)
            else:
                st.progress(fraction, text=text)


st.header("Jobs", divider="gray")
_active_now = bool(store.list(state=compare.ACTIVE))
st.fragment(run_every=REFRESH_S if _active_now else IDLE_REFRESH_S)(queue_panel)()


# ---------------------------------------------------------------- comparison

def fold_panel(summary: pd.DataFrame) -> None:
    """Runs repeated over k splits: per launch and strategy, the accuracy's mean ± spread and every fold's figure."""
    if summary.empty:
        return
    st.subheader("Repeated over k splits")
    shown = summary.assign(
        run=[common.plain(f"{r['Strategy']} · {r['backbone']}") for _, r in summary.iterrows()],
        done=[f"{r['folds_done']}/{r['folds']}" for _, r in summary.iterrows()],
        accuracy=[folds.describe(r) for _, r in summary.iterrows()],
        per_fold_text=[", ".join(f"{v:.1%}" for v in r["per_fold"]) for _, r in summary.iterrows()],
        launch=[common.plain(g) for g in summary[folds.FOLD_GROUP_KEY]])
    st.dataframe(shown, hide_index=True, key="tl_strat_folds_table", placeholder="—",
                 column_order=["run", "done", "accuracy", "per_fold_text", "balanced_accuracy_mean",
                               "train_seconds_mean", "scheme", "fold_seed", "launch"],
                 column_config={
                     "run": st.column_config.TextColumn("strategy", width=220),
                     "done": st.column_config.TextColumn("folds", width=50),
                     "accuracy": st.column_config.TextColumn("val accuracy: mean ± sd (range)", width=330),
                     "per_fold_text": st.column_config.TextColumn("per fold", width=200),
                     "balanced_accuracy_mean": st.column_config.NumberColumn("balanced acc (mean)", format="percent"),
                     "train_seconds_mean": st.column_config.NumberColumn("time per fold (s)", format="%.1f"),
                     "scheme": "splits", "fold_seed": "split seed", "launch": "fold group"})
    ready = summary[summary["folds_done"] > 0]
    if not ready.empty:
        fig = go.Figure()
        labels = [common.plain(f"{r['Strategy']} · {r['backbone']} · {str(r[folds.FOLD_GROUP_KEY])[-4:]}")
                  for _, r in ready.iterrows()]
        fig.add_bar(x=labels, y=ready["val_accuracy_mean"], name="mean",
                    error_y=dict(type="data", array=ready["val_accuracy_std"].fillna(0)),
                    text=[f"{m:.1%}" for m in ready["val_accuracy_mean"]], textposition="outside")
        for label, (_, r) in zip(labels, ready.iterrows()):
            fig.add_scatter(x=[label] * len(r["per_fold"]), y=list(r["per_fold"]), mode="markers", showlegend=False,
                            marker=dict(color="black", size=7), name="folds")
        fig.update_layout(height=320, yaxis_tickformat=".0%", yaxis_range=[0, 1.08], margin=dict(t=20), showlegend=False)
        st.plotly_chart(fig, key="tl_strat_folds_chart")
    st.caption("Each strategy trained once per split of train + validation pooled: the bar is the mean validation "
               "accuracy over the finished folds, the error bar one sample standard deviation, the dots each fold. "
               "The spread says how much the choice of held-out photos moves a single split's figure.")


st.header("Comparison", divider="gray")
everything = compare.comparison_table(store.list())
if ds is not None:
    scope = st.segmented_control("Runs", ["this dataset", "all datasets"], default="this dataset", key=SCOPE,
                                 persist_state="session", required=True)
    table = everything[everything["dataset"] == ds.root] if scope != "all datasets" else everything
else:
    table = everything
if table.empty:
    st.caption("No runs yet. Train a strategy above; finished runs appear here.")
else:
    shown = table.assign(val_accuracy_pct=table["val_accuracy"] * 100,
                         val_ci=[f"{lo:.1%}–{hi:.1%}" if pd.notna(lo) else None
                                 for lo, hi in zip(table["val_ci_low"], table["val_ci_high"])])
    # What matters first, so a 1400 px window shows it: a default name already says strategy and
    # backbone, so those columns only come when some run was named by hand.
    named = any(not (str(r["name"]).startswith(str(r["Strategy"])) and (
        not registry.uses_backbone(r["strategy"]) or str(r["backbone"]) in str(r["name"]))) for _, r in shown.iterrows())
    selection = st.dataframe(
        shown, hide_index=True, key="tl_strat_table", on_select="rerun", selection_mode="multi-row",
        placeholder="—",  # a queued run has no accuracy yet: a dash, not "None"
        column_order=["name", *(["started_by"] if shown["started_by"].notna().any() else []),  # with sign-in
                      *(["Strategy", "backbone"] if named else []), "state", "val_accuracy_pct", "val_ci",
                      "balanced_accuracy", "macro_f1", "worst_class_recall", "train_seconds", "trainable_params", "epochs_run", "images_per_s", "val_loss", "input_size",
                      "weights", *(["ran_on"] if shown["ran_on"].str.startswith("Ray").any() else []),  # on a cluster
                      "run_id"],
        column_config={  # pixel widths: the ~940 px a 1400 px window leaves hold everything up to px
            "name": st.column_config.TextColumn("run", width=240), "started_by": "started by",
            "state": st.column_config.TextColumn("state", width=60),
            "input_size": st.column_config.NumberColumn("px", width=50),
            "val_accuracy_pct": st.column_config.ProgressColumn("val accuracy", format="%.1f%%", min_value=0,
                                                                max_value=100, width=110),
            "val_ci": st.column_config.TextColumn("95% CI", width=95, help="Wilson score interval of the accuracy."),
            "balanced_accuracy": st.column_config.NumberColumn(
                "balanced acc", format="percent", width=85,
                help="Mean recall over classes: what accuracy would be on balanced classes."),
            "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f", width=70),
            "worst_class_recall": st.column_config.NumberColumn("worst recall", format="percent", width=80,
                                                                help="Recall of the class the run does worst on."),
            "val_loss": st.column_config.NumberColumn("val loss", format="%.3g", width=70),
            "train_seconds": st.column_config.NumberColumn("time (s)", format="%.1f", width=70,
                                                           help="Wall time of the fit, data and features included."),
            "trainable_params": st.column_config.NumberColumn("trainable params", format="localized", width=115),
            "epochs_run": st.column_config.NumberColumn("epochs", width=60),
            "images_per_s": st.column_config.NumberColumn("images/s", format="%.1f", width=75),
            "run_id": st.column_config.TextColumn("run id", width="small"),
            "ran_on": st.column_config.TextColumn("ran on", width="medium"),
        },
    )
    picked = [shown.iloc[i]["run_id"] for i in selection.selection.rows] if selection else []
    c = st.columns([1, 1, 2], vertical_alignment="center")
    if c[0].button("Show curves", icon=":material/show_chart:", disabled=not picked, key="tl_strat_open_curves",
                   help="Open the selected runs on the Training curves page."):
        st.session_state[common.CURVES_RUNS] = picked
        st.switch_page(common.CURVES_PAGE)
    c[2].caption("Tick rows in the table to compare their curves or delete them." if not picked else
                 f"{len(picked)} run{'s' * (len(picked) != 1)} selected.")
    if c[1].button("Delete", icon=":material/delete:", disabled=not picked, key="tl_strat_delete",
                   help="Delete the selected runs and their files (running ones must be cancelled first)."):
        with common.friendly_errors():
            for run_id in picked:
                store.delete(run_id)
            st.rerun()
    failed = table[table["state"] == "failed"]
    if len(failed):
        st.warning(f"{len(failed)} run{'s' * (len(failed) != 1)} failed: "
                   + "; ".join(f"**{common.plain(r['name'])}**: {common.plain(str(r['reason'] or 'no reason recorded').rstrip('.'))}"
                               for _, r in failed.head(3).iterrows())
                   + ". Open a run's curves to see the full error.", icon=":material/error:")

    fold_panel(compare.fold_summary(table))

    done = compare.finished(table)
    if done.empty:
        st.caption("Charts appear once a run has finished.")
    else:
        paired = compare.paired_verdicts(done, lambda rid: store.get(rid).predictions()).set_index("run_id")
        best_ids = set(paired.index[paired["best"].astype(bool)])
        labels = done["name"] + " · " + done["run_id"].str[-4:]
        fig = make_subplots(rows=1, cols=4, subplot_titles=("Validation accuracy", "Validation loss",
                                                            "Wall time (s)", "Trainable parameters"))
        colors = {s: px.colors.qualitative.Set2[i] for i, s in enumerate(registry.STRATEGIES)}
        formats = {"val_accuracy": "{:.1%}".format, "val_loss": "{:.3g}".format,
                   "train_seconds": progress.format_seconds, "trainable_params": progress.compact}
        for col, (field, fmt) in enumerate(formats.items(), start=1):
            # accuracy: its 95% interval as error bars, and ★ only on the run the verdicts mark best
            error = dict(type="data", symmetric=False, array=(done["val_ci_high"] - done[field]).clip(lower=0),
                         arrayminus=(done[field] - done["val_ci_low"]).clip(lower=0)) if field == "val_accuracy" else None
            text = [(fmt(v) if pd.notna(v) else "") + (" ★" if field == "val_accuracy" and rid in best_ids else "")
                    for v, rid in zip(done[field], done["run_id"])]
            fig.add_bar(x=labels, y=done[field], marker_color=[colors.get(s, "#888") for s in done["strategy"]],
                        text=text, textposition="outside", error_y=error,
                        showlegend=False, row=1, col=col, hovertext=done["Strategy"])
        params = done["trainable_params"].dropna()
        if len(params) > 1 and params.max() > 20 * max(params.min(), 1):
            fig.update_yaxes(type="log", dtick=1, tickformat="~s", row=1, col=4)
        else:
            fig.update_yaxes(tickformat="~s", row=1, col=4)
        fig.update_yaxes(tickformat=".0%", range=[0, 1.08], row=1, col=1)
        fig.update_yaxes(tickformat=".2~g", row=1, col=2)
        fig.update_xaxes(showticklabels=False)
        fig.update_layout(height=330, margin=dict(t=40, b=10))
        st.plotly_chart(fig, key="tl_strat_bars")
        st.caption("Colours: " + " · ".join(f"<span style='color:{colors[s]}'>■</span> {registry.label(s)}"
                                            for s in registry.STRATEGIES if s in set(done["strategy"]))
                   + ". Hover a bar for its run. Accuracy bars carry their 95% interval (Wilson); ★ marks the "
                   "run the paired verdicts below call best.", unsafe_allow_html=True)
        with st.expander("Which differences the validation images resolve", expanded=True):
            for line in compare.verdict_lines(paired.reset_index()):
                st.markdown("- " + common.plain(line))
        if ds is not None:  # one HTML file to share: built when clicked, with the advice if asked for
            asked = st.session_state.get(ADVICE, {}).get((ds.fingerprint, backbone))
            st.download_button(
                "Download the report (HTML)", icon=":material/download:", key="tl_strat_report",
                data=lambda advice=None if isinstance(asked, str) else asked: report.build_report(
                    ds, store.list(), advice=advice).encode("utf-8"),
                file_name=f"transfer-lab-report-{ds.fingerprint[:8] or 'dataset'}.html", mime="text/html",
                on_click="ignore", help="This dataset's card, every run on it with its 95% intervals and verdicts, "
                "curves, confusion matrices, the advisor's answer when asked below, and a model card for the best "
                "run: one file that opens offline.")

        st.subheader("Accuracy vs time")
        trade = compare.accuracy_vs_time(table)
        scatter = px.scatter(trade, x="train_seconds", y="val_accuracy", color="Strategy",
                             symbol="backbone", hover_name="name", log_x=True,
                             hover_data={"trainable_params": ":,", "run_id": True},
                             labels={"train_seconds": "wall time (s, log scale)", "val_accuracy": "validation accuracy"},
                             color_discrete_map={registry.label(s): c for s, c in colors.items()})
        front = trade[trade["pareto"]]
        scatter.add_trace(go.Scatter(x=front["train_seconds"], y=front["val_accuracy"], mode="lines",
                                     line=dict(dash="dot", color="grey"), name="best trade-offs"))
        scatter.update_traces(marker_size=13, selector=dict(mode="markers"))
        scatter.update_layout(height=380, yaxis_tickformat=".0%", yaxis_range=[0, 1.05], margin=dict(t=30),
                              legend=dict(orientation="h", y=-0.25))  # not under the chart's toolbar
        ticks, tick_text = display.log_ticks(trade["train_seconds"])  # labelled even inside one decade
        scatter.update_xaxes(tickvals=ticks, ticktext=tick_text,  # from the tick at or below the fastest run
                             range=[math.log10(ticks[0]), math.log10(ticks[-1])] if ticks else None)  # to the slowest
        st.plotly_chart(scatter, key="tl_strat_scatter")
        st.caption("Up and to the left is better. The dotted line joins the runs nothing beats on both time and "
                   "accuracy; feature runs after the first reuse cached features, so they look faster.")

# ---------------------------------------------------------------- advisor

if ds is not None and not untrainable:
    st.subheader("The advisor's recommendation")
    adv = advisor_panel(ds, backbone, key="tl_strat_advise")
    if adv is not None:
        unpretrained = [name for name in registry.STRATEGIES if not registry.uses_backbone(name)]
        mine = everything[(everything["dataset"] == ds.root)
                          & ((everything["backbone"] == backbone) | everything["strategy"].isin(unpretrained))]
        verdict = compare.advisor_verdict(mine, adv.strategy, lambda rid: store.get(rid).predictions())
        if verdict["agreed"] is None:
            st.info(verdict["message"], icon=":material/info:")
        elif verdict["agreed"]:
            st.success(verdict["message"], icon=":material/check_circle:")
        else:
            st.warning(verdict["message"], icon=":material/help:")

# ---------------------------------------------------------------- layer-depth sweep

st.header("How deep to fine-tune", divider="gray")
st.write("Fine-tune with more and more of the top layers unfrozen, everything else equal: the chart shows where "
         "unfreezing more stops paying.")
if ds is not None and not untrainable:
    c = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
    depths_text = c[0].text_input("Top layers to unfreeze, one run each", ", ".join(map(str, sweep.DEFAULT_DEPTHS)),
                                  key="tl_sweep_depths", persist_state="session",
                                  help="Counted from the top of the base (BatchNorm stays frozen).")
    head_epochs = _int(c[1], "Head epochs", 3, "tl_sweep_head_epochs", 1, 200)
    ft_epochs = _int(c[2], "Fine-tuning epochs", 3, "tl_sweep_ft_epochs", 1, 200)
    if c[3].button("Launch the sweep", icon=":material/stacked_line_chart:", key="tl_sweep_launch"):
        with common.friendly_errors():
            preset = st.session_state.get("tl_strat_preset") or "modern"
            base = registry.make_config("fine_tune", preset, **{
                **common_opts, **per_strategy.get("fine_tune", {}), "epochs": head_epochs, "fine_tune_epochs": ft_epochs})
            launch(sweep.sweep_configs(base, plans.parse_ints(depths_text, "layer counts")), "the layer sweep")
            st.rerun()
    st.caption("Uses the fine-tuning options and advanced options above (learning rates, augmentation, seed).")

sweeps = sweep.sweep_results(r for r in store.list() if ds is None or r.config.get("dataset") == ds.root)
if sweeps.empty:
    st.caption("No sweep yet.")
else:
    ids = list(dict.fromkeys(sweeps[sweep.SWEEP_KEY][::-1]))
    picked_sweep = st.selectbox("Sweep", ids, key="tl_sweep_pick", persist_state="session",
                                format_func=lambda s: f"{s} ({(sweeps[sweep.SWEEP_KEY] == s).sum()} runs)")
    rows = sweeps[sweeps[sweep.SWEEP_KEY] == picked_sweep]
    pending = rows[rows["state"].isin(compare.ACTIVE)]
    if len(pending):
        st.caption(f"{len(pending)} of {len(rows)} runs still queued or running.")
    done_rows = rows.dropna(subset=["fine_tune_accuracy"])
    if not done_rows.empty:
        fig = go.Figure()
        fig.add_scatter(x=done_rows["fine_tune_layers"], y=done_rows["fine_tune_accuracy"], mode="lines+markers+text",
                        name="best during fine-tuning", text=[f"{v:.1%}" for v in done_rows["fine_tune_accuracy"]],
                        textposition="top center")
        head = done_rows["head_accuracy"].max()
        if pd.notna(head):
            fig.add_hline(y=head, line_dash="dash", line_color="grey",
                          annotation_text=f"head only, base frozen: {head:.1%}", annotation_position="bottom right")
        fig.update_layout(height=340, xaxis_title="top layers unfrozen", yaxis_title="validation accuracy",
                          yaxis_tickformat=".0%", margin=dict(t=10))
        fig.update_xaxes(type="log" if done_rows["fine_tune_layers"].max() > 20 else "linear")
        st.plotly_chart(fig, key="tl_sweep_chart")
        verdict = sweep.sweep_verdict(rows)
        if verdict:
            st.info(verdict, icon=":material/insights:")
    failed = rows[rows["state"] == "failed"]
    if len(failed):
        st.warning(f"{len(failed)} sweep runs failed; see them in the table above.")
