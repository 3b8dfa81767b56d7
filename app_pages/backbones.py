"""Backbones: the pretrained networks side by side (size, ImageNet accuracy, speed
measured on this machine), and inside one: its layers and what a layer "sees"."""

import plotly.graph_objects as go
import streamlit as st

from core.nets import engine, explain, get_spec, list_backbones, loaded_backbone, weights_location
from core.analysis import speed
from core.data import UPLOAD_TYPES, UPLOAD_TYPES_TEXT, load_rgb, uploads
from core.errors import WeightsUnavailable
from app_pages import common

RANDOM = "tl_random_weights"  # backbones the user chose to explore with random weights
MAX_MAPS = 32
PRECISIONS = {"f32": "32-bit floats", "bf16": "bf16, 16-bit floats this CPU computes natively"}
COLOURS = {"tensorflow f32": "#f28e2b", "openvino bf16": "#1f4e9c", "openvino f32": "#7ba7e0"}


def engine_header(column: str) -> dict:
    """A short header (the full labels need more than a 1400 px window) and its help."""
    name, precision = column.removeprefix("img/s ").split(" ", 1)
    b = engine.BACKENDS.get(name)  # the engine table's short and full names
    short, full = (b.short, b.title) if b else (name, name)
    header = f"img/s {short}" if b is not None and b.reference else f"img/s {short} {precision}"
    return dict(label=header, help=f"Images/s on {full} in {PRECISIONS.get(precision, precision)}, at the input "
                                   "size, the engines taking turns batch by batch; measure below. It depends on what "
                                   "else the machine is doing.")


st.title("Backbones")
st.write(
    "Each backbone is a network trained on ImageNet whose features a new classifier reuses. "
    "Bigger is usually more accurate and slower: the table and chart show by how much, "
    "with speed measured here rather than quoted."
)

specs = {s.name: s for s in list_backbones()}  # the registry, once: every lookup below is a dict's
names = list(specs)
display = {n: s.display_name for n, s in specs.items()}
table_slot, chart_slot = st.container(), st.container()

left, right = st.columns([2, 1], vertical_alignment="bottom")
to_measure = left.selectbox("Measure the speed of", names, index=names.index(common.current_backbone()),
                            format_func=display.get, key="tl_measure_name")
if right.button("Measure images/s on this machine", icon=":material/speed:",
                help="TensorFlow and each OpenVINO precision this CPU has, batch by batch in turn, "
                     "with random weights: speed does not depend on them."):
    bar = st.progress(0.0, text="Building the network…")
    with common.friendly_errors():
        result = speed.measure(
            to_measure, progress=lambda done, total, what: bar.progress(done / total, text=what[:1].upper() + what[1:]))
        rates = ", ".join(f"{label} {rate:,.1f}" for label, rate in result.rates.items())
        st.success(f"{display[to_measure]} at {result.size} px, images/s: {rates} "
                   f"(batches of {result.batch_size}, {result.device}).")
        if result.note:
            st.info(result.note, icon=":material/info:")
    bar.empty()

table = speed.backbone_table()
engines = [c for c in table.columns if c.startswith(speed.rate_column(""))]
with table_slot:
    st.dataframe(
        table.drop(columns=["name", "measured on"]),
        hide_index=True,
        placeholder="–",
        height=36 * (len(table) + 1) + 4,
        # the measured speeds beside size and accuracy, then the weights, so a 1400 px window shows them
        column_order=["backbone", "params (M)", "top-1 %", *engines, "speed-up", "weights", "input px", "top-5 %",
                      "depth", "family"],
        column_config={
            "backbone": st.column_config.TextColumn("backbone", width="medium"),
            "family": st.column_config.TextColumn("family", width="small"),
            "depth": st.column_config.NumberColumn("depth", width="small"),
            "input px": st.column_config.NumberColumn("input px", width="small"),
            "params (M)": st.column_config.NumberColumn(
                "params (M, with top)", format="%.1f",
                help="The whole ImageNet classifier, its 1,000-class top included, as published tables count it. "
                     "The base a new classifier reuses has fewer: see 'Inside' below."),
            "top-1 %": st.column_config.NumberColumn("top-1 %", format="%.1f", help="ImageNet top-1 accuracy"),
            "top-5 %": st.column_config.NumberColumn("top-5 %", format="%.1f", help="ImageNet top-5 accuracy"),
            **{c: st.column_config.NumberColumn(**engine_header(c), format="%.1f") for c in engines},
            "speed-up": st.column_config.NumberColumn(
                "speed-up", format="%.1f×", help="The fastest OpenVINO precision's images/s over TensorFlow's."),
            "weights": st.column_config.TextColumn("ImageNet weights", help="local: on this machine, works offline"),
        },
    )
    st.caption("img/s: images per second through the network, measured here. TF: TensorFlow, OV: OpenVINO; "
               "bf16: 16-bit floats, f32: 32-bit. speed-up: the fastest OV over TF.  \n"
               f"The app computes features with {engine.describe_for_users()}.")
with chart_slot:
    devices = sorted(set(table["measured on"]) - {""})
    if devices:
        st.caption(f"Speed measured on {', '.join(devices)}.")
    short = table["backbone"].str.replace(r" \(.*\)$", "", regex=True)  # "EfficientNet-Lite0 (ImageNet-1k)"
    timed = table[table[speed.rate_column(speed.TENSORFLOW)].notna()]
    if not timed.empty:
        bars = go.Figure([go.Bar(x=short[timed.index], y=timed[c], name=c.removeprefix("img/s "),
                                 marker_color=COLOURS.get(c.removeprefix("img/s ")), texttemplate="%{y:,.0f}",
                                 textposition="outside",
                                 hovertemplate="%{x}<br>%{y:,.1f} images/s<extra>%{fullData.name}</extra>")
                          for c in engines])
        bars.update_layout(title="Images/s per engine, measured here (higher is faster)", barmode="group",
                           height=320, yaxis={"title": "images/s"}, margin={"t": 70, "b": 40},
                           legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"})
        st.plotly_chart(bars, key="chart_engines")
    rate = speed.chart_column(table)
    measured = table[table[rate].notna() & table["top-1 %"].notna()]
    unmeasured = table[table[rate].isna() & table["top-1 %"].notna()]
    plotted = table[table["top-1 %"].notna()]
    ips = plotted[rate]
    diameter = (ips / (2.0 * ips.max() / 30**2)).pow(0.5).clip(lower=8).fillna(9) if ips.notna().any() else \
        ips.fillna(9)  # as plotly draws them: area-sized markers of the measured, 9 px rings of the others
    place = dict(zip(plotted.index, speed.label_positions(plotted["params (M)"], plotted["top-1 %"],
                                                          list(short[plotted.index]), sizes=list(diameter))))
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=unmeasured["params (M)"], y=unmeasured["top-1 %"], mode="markers+text", name="speed not measured",
        text=short[unmeasured.index], textposition=[place[i] for i in unmeasured.index], textfont={"color": "#888"},
        marker={"size": 9, "color": "rgba(0,0,0,0)", "line": {"color": "#999", "width": 1.5}},
        hovertemplate="%{text}<br>%{x:.1f} M params<br>top-1 %{y:.1f}%<extra>not measured</extra>",
    ))
    if not measured.empty:
        fig.add_trace(go.Scatter(
            x=measured["params (M)"], y=measured["top-1 %"], mode="markers+text", name="measured here",
            text=short[measured.index], textposition=[place[i] for i in measured.index],
            customdata=measured[rate],
            # the colour scale starts at 0, and is drawn once two backbones are measured: one point
            # would stretch it over a meaningless 76-76.8
            marker={"size": measured[rate], "sizemode": "area", "sizemin": 8,
                    "sizeref": 2.0 * measured[rate].max() / 30**2, "color": measured[rate],
                    "colorscale": "Viridis", "cmin": 0, "cmax": float(measured[rate].max()),
                    "showscale": len(measured) > 1, "colorbar": {"title": "images/s"}},
            hovertemplate="%{text}<br>%{x:.1f} M params<br>top-1 %{y:.1f}%<br>%{customdata:.1f} images/s"
                          "<extra></extra>",
        ))
    fig.update_layout(title=f"Size vs ImageNet accuracy (marker size and colour: images/s on "
                            f"{rate.removeprefix('img/s ')}, measured here)",
                      xaxis={"title": "parameters (millions, log scale)", "type": "log"},
                      yaxis={"title": "ImageNet top-1 accuracy (%)"},
                      legend={"orientation": "h", "y": -0.2}, height=480)
    st.plotly_chart(fig, key="chart_params_top1")

# ---------------------------------------------------------------- inside one backbone
st.divider()
name = common.current_backbone()
spec = specs.get(name) or get_spec(name)
st.header(f"Inside {spec.display_name}")
st.caption("The backbone chosen in the sidebar; change it there.")

use_random = name in st.session_state.get(RANDOM, set())
if not use_random and weights_location(spec) is None:
    st.caption("Its ImageNet weights are not on this machine: loading tries to download them.")
with common.friendly_errors(stop=True):  # weights missing: offered random ones; other errors end the page
    try:
        with st.spinner(f"Loading {spec.display_name}…"):
            bb = loaded_backbone(spec, None if use_random else "imagenet")
    except WeightsUnavailable as exc:
        st.error(common.plain(exc), icon=":material/cloud_off:")
        st.button("Explore it with random weights instead",
                  on_click=lambda: st.session_state.setdefault(RANDOM, set()).add(name))
        st.stop()

if use_random:
    st.info("Random weights: the layers are exact, but the feature maps show untrained filters.",
            icon=":material/casino:")
    st.button("Use ImageNet weights again", on_click=lambda: st.session_state[RANDOM].discard(name))

layers = explain.layer_table(bb.base)
cols = st.columns(4)
cols[0].metric("Layers", len(layers))
cols[1].metric("Parameters (no top)", f"{layers['params'].sum() / 1e6:.1f} M",
               help="The convolutional base features come from, without the 1,000-class ImageNet top that the "
                    "table above counts.")
cols[2].metric("Input", f"{bb.input_size} × {bb.input_size} px")
cols[3].metric("Feature map out", " × ".join(str(d) for d in bb.feature_shape))
with st.expander(f"All {len(layers)} layers", expanded=False):
    st.dataframe(layers, hide_index=True, height=320)

st.subheader("Feature maps")
ds = common.current_dataset()
choice = st.segmented_control("Image", ["From the dataset", "Upload"], required=True,
                              default="From the dataset" if ds is not None else "Upload", key="tl_fm_source")
image, image_caption = None, ""
if choice == "Upload":
    photo_mb = uploads.photo_limit_mb(st.get_option("server.maxUploadSize"))
    upload = st.file_uploader(f"An image ({UPLOAD_TYPES_TEXT})", type=UPLOAD_TYPES, key="tl_fm_upload",
                              max_upload_size=photo_mb)
    if upload is not None:
        with common.friendly_errors():
            uploads.check_size(upload.name, upload.size, photo_mb)
            image, image_caption = load_rgb(upload.getvalue()), upload.name
elif ds is None:
    st.info("No dataset loaded yet: upload an image, or choose a dataset on the Dataset page.")
else:
    left, right = st.columns(2)
    label = left.selectbox("Class", ds.classes, key="tl_fm_class", persist_state="session")
    files = [r.path for r in ds.records if r.label == label]
    number = right.number_input(f"Image number (1 to {len(files)})", 1, len(files), key=f"tl_fm_index_{label}")
    with common.friendly_errors():
        image, image_caption = load_rgb(files[number - 1]), files[number - 1].rsplit("/", 1)[-1]

spatial = layers[layers["spatial"]]
if image is not None and not spatial.empty:
    options = list(spatial["name"])
    layer = st.selectbox("Layer", options, index=len(options) // 4, key=f"tl_fm_layer_{name}",
                         help="Early layers respond to edges and colours, deep ones to parts of objects.")
    shape = spatial.set_index("name").loc[layer, "output shape"]
    with common.friendly_errors(), st.spinner("Computing feature maps…"):
        maps = explain.feature_maps(bb.base, layer, image, bb.preprocess, max_maps=MAX_MAPS)
        left, right = st.columns([1, 3])
        left.image(image, caption=f"Input: {image_caption} (resized to {bb.input_size} px for the network)")
        right.image(explain.tile_maps(maps, columns=8, cell=96),
                    caption=f"Layer {layer}, output {shape}: its {len(maps)} most active channels, "
                            "each scaled to its own range (yellow = strongest).")
