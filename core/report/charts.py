"""The report's charts as Plotly figures. Every label that comes from disk is escaped
before Plotly sees it: Plotly draws ``<a href>``, ``<b>``... inside labels and hover text."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.report.page import esc, number

BLUE, LIGHT, ORANGE = "#4c78a8", "#9ecae9", "#f58518"
SHORT = 16  # characters of a class name on an axis; the hover and the tables say it whole


def short(name) -> str:
    """A long class name cut for an axis tick (escaped by the caller, after the cut)."""
    text = str(name)
    return text if len(text) <= SHORT else text[:SHORT - 1] + "…"


def counts_figure(counts: dict[str, dict[str, int]], classes: list[str]) -> go.Figure:
    """Images per class, train beside validation."""
    fig = go.Figure()
    for split, colour in (("train", BLUE), ("validation", ORANGE)):
        values = [counts.get(split, {}).get(c, 0) for c in classes]
        fig.add_bar(name=split, x=[esc(c) for c in classes], y=values, text=values, textposition="outside",
                    marker_color=colour)
    fig.update_layout(barmode="group", height=340, margin=dict(t=70, b=40, l=50, r=10),
                      title="Images per class and split", yaxis_title="images",
                      xaxis=dict(tickvals=[esc(c) for c in classes], ticktext=[esc(short(c)) for c in classes]),
                      legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"))
    return fig


def accuracy_figure(rows: list[dict]) -> go.Figure:
    """Accuracy and balanced accuracy of each finished run with their 95% intervals, best at the
    top; ★ on the run the paired verdicts mark best. ``rows``: label, accuracy, ci, balanced, balanced_ci, best."""
    rows = rows[::-1]  # horizontal bars draw bottom-up
    labels = [esc(r["label"]) + (" ★" if r["best"] else "") for r in rows]
    fig = go.Figure()
    # in a group of horizontal bars the first trace is drawn lowest: balanced first puts accuracy on top
    for key, name, colour in (("balanced", "balanced accuracy", LIGHT), ("accuracy", "accuracy", BLUE)):
        values = [number(r[key]) for r in rows]
        lows = [number((r[f"{key}_ci"] or (None, None))[0]) for r in rows]
        highs = [number((r[f"{key}_ci"] or (None, None))[1]) for r in rows]
        fig.add_bar(name=name + " (95% CI)", y=labels, x=values, orientation="h", marker_color=colour,
                    text=[f"{v:.1%}" if v is not None else "" for v in values], textposition="inside",
                    insidetextanchor="start",
                    error_x=dict(type="data", symmetric=False, color="#52606d", thickness=1.5,
                                 array=[max(h - v, 0) if None not in (h, v) else 0 for h, v in zip(highs, values)],
                                 arrayminus=[max(v - lo, 0) if None not in (lo, v) else 0 for lo, v in zip(lows, values)]),
                    hovertemplate="%{y}: %{x:.1%}<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", height=120 + 60 * len(rows), margin=dict(t=50, b=40, l=10, r=20),
                      title="Validation accuracy with 95% intervals (★ best by the paired verdicts)",
                      xaxis=dict(range=[0, 1.02], tickformat=".0%"), yaxis=dict(automargin=True),
                      legend=dict(orientation="h", y=-0.12 if len(rows) > 2 else -0.3, traceorder="reversed"))
    return fig


def curves_figure(curves: list[tuple[str, object, float | None]]) -> go.Figure:
    """Accuracy and loss per epoch of every run: validation solid, training dotted, one colour a
    run. ``curves``: (label, ``core.runs.curves.curves_frame`` of its history, fine-tuning start)."""
    palette = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy", "Loss"))
    for i, (label, frame, _) in enumerate(curves):
        colour = palette[i % len(palette)]
        for col, quantity in ((1, "accuracy"), (2, "loss")):
            for split, dash in (("validation", "solid"), ("train", "dot")):
                part = frame[(frame["quantity"] == quantity) & (frame["split"] == split)]
                if part.empty:
                    continue
                fig.add_scatter(x=part["epoch"], y=part["value"], mode="lines+markers", marker_size=4,
                                line=dict(color=colour, dash=dash), name=f"{esc(label)} · {split}",
                                legendgroup=str(i), showlegend=col == 1, row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    fig.update_layout(height=440, margin=dict(t=60, b=40, l=50, r=10),
                      legend=dict(orientation="h", y=-0.2, font=dict(size=11)))
    return fig


def confusion_figure(frame, title: str) -> go.Figure:
    """One run's confusion matrix: rows the true class, columns the predicted one, counts in the cells."""
    labels = [esc(c) for c in frame.columns]
    ticks = dict(tickvals=labels, ticktext=[esc(short(c)) for c in frame.columns], automargin=True)
    fig = go.Figure(go.Heatmap(z=frame.to_numpy(), x=labels, y=labels, colorscale="Blues", showscale=False,
                               texttemplate="%{z}", hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=dict(text=esc(title), font=dict(size=13)), height=340, width=360,
                      margin=dict(t=50, b=50, l=60, r=10), xaxis_title="predicted", yaxis_title="true",
                      yaxis=dict(autorange="reversed", **ticks), xaxis=dict(tickangle=0, **ticks))
    return fig
