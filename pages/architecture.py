"""Architecture page: pick or build a network and see every layer's output size, parameters and cost."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.i18n import N_
from core.models import (
    ArchitectureError,
    arch_config,
    describe_architecture,
    list_architectures,
)
from core.summary import ModelSummary, summarize_architecture
from pages import arch_charts as charts
from pages.lang import _, choice, num, say
from pages.layer_builder import edit_custom_stack, save_form

REGISTRY = [name for name in list_architectures() if name != "custom"]
OUTPUTS = {10: N_("10 classes (one logit per class)"), 1: N_("1 logit (one class against the rest)")}  # count -> label
MODES = {"registry": N_("From the registry"), "custom": N_("Build your own")}
COMPARE_DEFAULT = ["seed000", "seed002", "seed003", "mlp", "fastcnn", "bestcnn"]

LOSS_NOTES = {
    "logits": N_("The network ends with a Linear layer, so it outputs raw scores (**logits**). Training uses "
              "CrossEntropyLoss for 10 classes, or BCEWithLogitsLoss for one logit; both apply the "
              "softmax (or sigmoid) themselves."),
    "log_softmax": N_("The network ends with LogSoftmax, so it outputs **log-probabilities**; the matching loss "
                   "is the negative log-likelihood (NLLLoss)."),
    "softmax": N_("The network ends with Softmax, so it outputs **probabilities**, as the tutorial wrote it. "
               "But it is trained with CrossEntropyLoss, which applies its own softmax again: the loss sees "
               "softmax(softmax(x)), the differences between classes are squashed and learning is slower. "
               "Training keeps this faithfully; untick *softmax* in the settings above "
               "(or remove the Softmax layer) to output logits."),
}
CONV1_SLIP = N_("The seed 000 tutorial prints this layer's count as (3×3×1)×32+32 = **896**. The formula is "
              "right but the arithmetic slipped: 3·3·1·32 + 32 = 288 + 32 = **320**. 896 is what a "
              "3-channel RGB input would give: 3·3·3·32 + 32 = 896.")


@st.cache_data(show_spinner=False, max_entries=256)
def cached_summary(arch: str, num_outputs: int, options: dict[str, Any] | None) -> ModelSummary:
    """Build and summarize once per configuration (a dummy forward pass)."""
    return summarize_architecture(arch, num_outputs, options)


def registry_options(arch: str) -> dict[str, Any]:
    """A widget per option of the architecture, starting at its defaults."""
    options: dict[str, Any] = {}
    with st.expander(_("Settings of this architecture")):
        for name, default in arch_config(arch)["options"].items():
            key = f"opt_{arch}_{name}"
            if isinstance(default, bool):
                options[name] = st.checkbox(name, value=default, key=key)
            elif isinstance(default, int):
                options[name] = st.number_input(name, 1, 4096, value=default, step=1, key=key)
            else:
                options[name] = st.number_input(name, 0.0, 0.95, value=default, step=0.05, key=key)
    return options


def show_layer_formulas(summary: ModelSummary, arch: str) -> None:
    """The tutorials' formulas for one chosen Conv, Pool or Linear layer, numbers filled in."""
    rows = {r.index: r for r in summary.layers if r.type in (*charts.WINDOW_TYPES, "Linear")}
    # Options are indexes, looked up in this run's summary, so a kept choice never shows another network's row.
    choice = st.selectbox(_("Layer"), list(rows), format_func=lambda i: f"{i}. {rows[i].name} ({rows[i].type})",
                          key=f"formula_layer_{arch}")
    row = rows.get(choice, next(iter(rows.values())))
    st.markdown(_("Input {input} → output {output}.").format(input=charts.shape_text(row.input_shape),
                                                              output=charts.shape_text(row.output_shape)))
    if row.type in charts.WINDOW_TYPES:
        st.markdown(_("**Output size** (k: window side, s: stride, p: padding added on each side):"))
        for line in charts.size_formulas(row):
            st.latex(line)
        if arch == "seed001" and row.type == "Conv2d":
            st.caption(_("The tutorial writes padding='same': PyTorch then pads p = (k − 1) / 2 = 1 on each side."))
    if formula := charts.param_formula(row):
        st.markdown(_("**Parameters**: one weight per input value the window sees, per output, plus one bias "
                      "per output:"))
        st.latex(formula)
    elif row.type in charts.POOL_TYPES:
        st.markdown(_("**Parameters**: none; pooling only takes the max or the average of each window."))
    if formula := charts.macs_formula(row):
        st.markdown(_("**Multiply-accumulates** per image: one per weight, for every output position:"))
        st.latex(formula)
    if arch.startswith("seed000") and row.name == "conv1":
        st.info(_(CONV1_SLIP))


def show_summary(summary: ModelSummary, arch: str) -> None:
    """Totals, layer table, shape picture and worked formulas of one network."""
    cols = st.columns(4)
    cols[0].metric(_("Parameters"), num(summary.total_params), help=_("Trainable weights and biases."))
    cols[1].metric(_("MACs per image"), f"{num(summary.total_macs / 1e6, 2)} M",
                   help=_("Multiply-accumulates of the Conv and Linear layers for one 28×28 image."))
    cols[2].metric(_("Weights"), f"{num(summary.weights_mb, 3)} MB", help=_("Size of the saved tensors (float32)."))
    cols[3].metric(_("Depth"), summary.depth, help=_("Conv and Linear layers the image passes through."))
    if summary.output_kind == "softmax":
        st.warning(_(LOSS_NOTES["softmax"]))
    else:
        st.caption(_(LOSS_NOTES[summary.output_kind]))

    st.subheader(_("Layer by layer"))
    st.markdown(_("Shapes are per image (channels×height×width, or a vector length after Flatten). **MACs** "
                  "counts multiply-accumulates, the work of Conv and Linear layers. The **receptive field** is "
                  "how much of the 28×28 input one output value can see; **activations** is how many values the "
                  "layer outputs."))
    st.dataframe(charts.layer_frame(summary), hide_index=True, width="stretch", column_config=charts.count_columns())
    st.plotly_chart(charts.shape_flow_figure(summary), width="stretch")
    st.caption(_("Convolutions with padding keep the size, pooling halves it, channels grow; Flatten turns the "
                 "last feature map into one long vector for the Linear layers."))

    st.subheader(_("Work it out by hand"))
    show_layer_formulas(summary, arch)


def show_comparison(current: tuple[str, ModelSummary] | None, num_outputs: int) -> None:
    """Totals of several architectures side by side."""
    st.markdown(_("How big and how costly are the networks? Parameters decide the file size and how much can "
                  "be learned; MACs decide the speed. Note how the fully connected layers hold most parameters, "
                  "while the convolutions at full resolution do most of the work."))
    chosen = st.multiselect(_("Architectures"), REGISTRY, default=COMPARE_DEFAULT, key="compare_archs")
    summaries = {name: cached_summary(name, num_outputs, None) for name in chosen}
    differs = current is not None and current[1] not in summaries.values()  # not just a listed default
    if current is not None and differs and st.checkbox(_("Include the network configured above"), value=True,
                                                       key="compare_mine"):
        summaries = {_("yours ({arch})").format(arch=current[0]): current[1], **summaries}
    if len(summaries) < 2:
        st.info(_("Pick at least two architectures to compare."))
        return
    frame = charts.comparison_frame(summaries)
    st.dataframe(frame, hide_index=True, width="stretch", column_config=charts.count_columns())
    st.plotly_chart(charts.comparison_figure(frame), width="stretch")


st.title(_("Architecture"))
st.markdown(_("Pick one of the tutorials' networks (or one of ours), or stack your own layers, and see what "
              "each layer does to the image's shape, how many parameters it learns and how much it computes. "
              "Every number is measured on a real forward pass and checked against the formula the tutorials "
              "teach."))

mode = choice(st.radio, _("Network"), list(MODES), format_func=lambda key: _(MODES[key]), horizontal=True,
              key="arch_mode")
num_outputs = int(choice(st.radio, _("Output"), list(OUTPUTS), format_func=lambda count: _(OUTPUTS[count]),
                         horizontal=True, key="arch_outputs"))
if mode == "registry":
    arch = st.selectbox(_("Architecture"), REGISTRY, key="arch_name")
    st.markdown(_(describe_architecture(arch)))
    options = registry_options(arch)
else:
    arch = "custom"
    st.markdown(_(describe_architecture(arch)))
    options = {"layers": edit_custom_stack(num_outputs, REGISTRY)}

try:
    summary: ModelSummary | None = cached_summary(arch, num_outputs, options)
except ArchitectureError as error:
    st.error(say(error.message))
    summary = None

if arch == "custom":
    save_form(options["layers"])
if summary is not None:
    show_summary(summary, arch)

st.header(_("Compare architectures"))
show_comparison((arch, summary) if summary is not None else None, num_outputs)
