"""The advisor panel the Dataset and Strategies pages share: one button, one answer per
(dataset, backbone) kept for the session, the measured 2x2 table and its reasons."""

import math

import plotly.graph_objects as go
import streamlit as st

from app_pages import common
from core.analysis import advisor
from core.errors import TransferLabError
from core.nets import get_spec
from core.train import registry

USED = "tl_advice_used"  # set by "Use this advice": the panel then opens the Strategies page
ADVICE = "tl_advice"  # {(fingerprint, backbone): core.analysis.advisor.Advice, or the error text}


def advisor_panel(ds, backbone: str, key: str):
    """Draw the panel; returns the advice once measured, else None."""
    cache = st.session_state.setdefault(ADVICE, {})
    cell = (ds.fingerprint, backbone)
    if cell not in cache:
        st.caption("The advisor measures your data on a sample: linear probes on the features of "
                   f"{get_spec(backbone).display_name} (the top and an earlier block) and of every other backbone "
                   "with weights on this machine, a pixel baseline, and a short from-scratch trial where the "
                   "features leave room. It picks from those figures and marks the cell of the classic 2x2 table.")
        stopped = f"{key}_stopped"
        if st.session_state.pop(stopped, False):
            st.info("The advisor was stopped; nothing it measured was kept. Ask again when you are ready.",
                    icon=":material/cancel:")
        if not st.button("Ask the advisor", key=key, icon=":material/psychology:"):
            return None
        bar = st.progress(0.0, text="Starting…")
        # A click reruns the page, which stops the measurement at its next progress update.
        st.button("Stop the advisor", key=f"{key}_stop", icon=":material/stop:",
                  on_click=lambda: st.session_state.update({stopped: True}))
        try:
            cache[cell] = advisor.advise(ds, backbone=backbone, progress=lambda text, done: bar.progress(done, text=text))
        except TransferLabError as err:
            cache[cell] = str(err)
        st.rerun()  # redraw without the button and the caption: the answer replaces them
    advice = cache[cell]
    if isinstance(advice, str):
        st.error(f"The advisor could not measure this dataset: {common.plain(advice)}", icon=":material/error:")
        if st.button("Try again", key=f"{key}_again"):
            del cache[cell]
            st.rerun()
        return None
    moved = advice.backbone and advice.backbone != backbone
    st.success(f"Recommended: **{registry.label(advice.strategy)}**"
               + (f" with **{get_spec(advice.backbone).display_name}**" if moved else "")
               + f" (dataset {advice.size}, {advice.similarity} to ImageNet)"
               + (f", unfreezing about the top {advice.unfreeze_layers} layers" if advice.unfreeze_layers else "")
               + (f". The textbook table below marks {registry.label(advice.textbook)} for this cell; the "
                  "measurement overrides it (see the reasons)." if advice.textbook and advice.textbook != advice.strategy
                  else ""), icon=":material/lightbulb:")
    st.button("Use this advice", key=f"{key}_use", icon=":material/arrow_forward:", on_click=use_advice,
              args=(advice, ds.fingerprint), help="Sets the sidebar's backbone and the Strategies form to the "
                                                  "recommendation, and opens the Strategies page to launch it.")
    if st.session_state.pop(USED, False):
        st.switch_page(common.STRATEGIES_PAGE)
    if advice.candidates:
        st.plotly_chart(candidates_figure(advice.candidates), key=f"{key}_candidates")
        verdicts = [c["verdict"] for c in advice.candidates if c.get("verdict")]
        if verdicts:
            with st.expander("Which differences the sample resolves"):
                st.markdown("\n".join(f"- {common.plain(v)}" for v in verdicts))
    st.table(advice.table())
    st.markdown("\n".join(f"- {common.plain(reason)}" for reason in advice.reasons))
    if getattr(advice, "label_budget", None) and advice.label_budget.get("points"):
        st.plotly_chart(budget_figure(advice.label_budget, "on the advisor's sample, cross-fitted"),
                        key=f"{key}_budget")
    return advice


def budget_figure(budget: dict, where: str = "") -> go.Figure:
    """A learning curve (``core.analysis.label_budget.summary``): the measured probe accuracy at each size
    with its 95% interval, the fitted law extended past today's size with its 95% bootstrap band, and
    today's photos a class marked; photos on a log axis, where a power law is nearly straight."""
    pts, chart = budget["points"], budget["chart"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=chart["per_class"] + chart["per_class"][::-1],
                             y=chart["band_high"] + chart["band_low"][::-1], fill="toself", mode="lines",
                             line=dict(width=0), fillcolor="rgba(245,133,24,0.18)", hoverinfo="skip",
                             name="fitted curve, 95% band"))
    fig.add_trace(go.Scatter(x=chart["per_class"], y=chart["accuracy"], mode="lines", line=dict(color="#f58518"),
                             name=f"fitted ({budget['law']} law)",
                             hovertemplate="%{x:,.0f} photos a class: %{y:.1%}<extra>fitted</extra>"))
    fig.add_trace(go.Scatter(
        x=pts["per_class"], y=pts["accuracy"], mode="markers", marker=dict(color="#4c78a8", size=8),
        error_y=dict(type="data", symmetric=False, array=[h - a for h, a in zip(pts["ci_high"], pts["accuracy"])],
                     arrayminus=[a - lo for a, lo in zip(pts["accuracy"], pts["ci_low"])], color="#4c78a8"),
        name="measured (mean of seeds, 95% CI)",
        hovertemplate="%{x:,.0f} photos a class: %{y:.1%}<extra>measured</extra>"))
    fig.add_vline(x=budget["now_per_class"], line=dict(color="#9aa5b1", dash="dot"))
    # an annotation on a log axis takes log10 coordinates (add_vline's own label would land at 10^x)
    fig.add_annotation(x=math.log10(budget["now_per_class"]), y=1, yref="paper", text="today", showarrow=False,
                       xanchor="right", yanchor="bottom", font=dict(color="#52606d"))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=40),
                      title="Probe accuracy by photos a class" + (f" ({where})" if where else ""),
                      xaxis=dict(type="log", title="photos a class (log scale)"),
                      yaxis=dict(title="validation accuracy", tickformat=".0%"),
                      legend=dict(orientation="h", yanchor="top", y=-0.2))
    return fig


def use_advice(advice, fingerprint: str) -> None:
    """Button callback (it runs before the page redraws, so it may set widget state): the
    sidebar's backbone, the strategy selected, its feature layer or layers to unfreeze. The
    advice stays shown under the backbone it moves to."""
    if registry.uses_backbone(advice.strategy) and advice.backbone:
        st.session_state[common.BACKBONE] = advice.backbone
        st.session_state.setdefault(ADVICE, {})[(fingerprint, advice.backbone)] = advice
    st.session_state["tl_strat_chosen"] = [advice.strategy]
    st.session_state["tl_strat_preset"] = "modern"
    if advice.feature_layer:
        st.session_state[common.option_key("modern", advice.strategy, "feature_layer")] = advice.feature_layer
    if advice.unfreeze_layers:
        st.session_state[common.option_key("modern", advice.strategy, "fine_tune_layers")] = advice.unfreeze_layers
    st.session_state[USED] = True


def candidates_figure(candidates: list[dict]) -> go.Figure:
    """What the advisor measured, best at the top, with each figure's 95% interval (whiskers at the bar's
    end), ★ on the candidate the paired verdicts mark best, "within noise" on those the sample cannot tell
    from the leader (figures on a light label at the axis's start, readable on any bar)."""
    rows = candidates[::-1]
    lows = [c.get("ci_low", c["accuracy"] - c["noise"]) for c in rows]
    highs = [c.get("ci_high", c["accuracy"] + c["noise"]) for c in rows]
    fig = go.Figure(go.Bar(
        x=[c["accuracy"] for c in rows], y=[c["candidate"] for c in rows], orientation="h",
        error_x=dict(type="data", symmetric=False, array=[max(h - c["accuracy"], 0) for h, c in zip(highs, rows)],
                     arrayminus=[max(c["accuracy"] - lo, 0) for lo, c in zip(lows, rows)], color="#9aa5b1",
                     thickness=1.5),
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        marker_color=["#4c78a8" if c.get("resolved") is not False else "#9ecae9" for c in rows]))
    low = max(0.0, min(lows) - 0.05)
    for c in rows:
        mark = " ★" if c.get("best") else " · within noise of the best" if c.get("resolved") is False else ""
        fig.add_annotation(x=low, y=c["candidate"], xanchor="left", showarrow=False, bgcolor="rgba(255,255,255,0.85)",
                           borderpad=2, font=dict(color="#1f2933"),  # readable on the bar and past its end
                           text=f"{c['accuracy']:.1%}{mark} · about {_duration(c['predicted_seconds'])} on all images")
    fig.update_layout(height=90 + 45 * len(rows), margin=dict(l=10, r=10, t=30, b=30),
                      title="Measured on a sample (accuracy, 95% interval; ★ best by the paired verdicts)",
                      xaxis=dict(range=[low, 1.04], tickvals=[t / 10 for t in range(11) if t / 10 >= low],
                                 tickformat=".0%"), yaxis=dict(automargin=True))
    return fig


def _duration(seconds: float) -> str:
    """``under 1 s``, ``25 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 1:
        return "under 1 s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"
