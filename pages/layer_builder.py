"""Widgets of the custom layer-stack builder; the stack itself lives in st.session_state."""

from __future__ import annotations

import zlib
from typing import Any

import streamlit as st

from core.i18n import N_
from core.layers import (
    LAYER_TYPES,
    ArchitectureError,
    LayerSpec,
    insert_position,
    layer_defaults,
    normalize_layer,
    output_layer_index,
)
from core.models import arch_config, architecture_layers
from core.saved_archs import NAME_MAX, save_architecture
from pages.lang import _, ngettext, say

STACK_KEY = "custom_stack"  # list of {"id": int, "spec": LayerSpec}; ids keep widget keys stable on reorder
NEXT_ID_KEY = "custom_next_id"

# Settings that get a number box: label, min, max, step. Whole numbers have no maximum here: a value too big
# (a window larger than its input, a width past core's limit) is core's to reject, with a message naming the
# layer and the numbers, never a box that quietly refuses it.
SETTING_INPUTS: dict[str, tuple[str, Any, Any, Any]] = {
    "out_channels": (N_("channels"), 1, None, 1),
    "kernel_size": (N_("kernel"), 1, None, 1),
    "stride": (N_("stride"), 1, None, 1),
    "padding": (N_("padding"), 0, None, 1),
    "output_size": (N_("output size"), 1, None, 1),
    "out_features": (N_("features"), 1, None, 1),
    "p": (N_("drop prob."), 0.0, 0.95, 0.05),
    "negative_slope": (N_("slope"), 0.0, 1.0, 0.01),
}


def set_stack(layers: list[LayerSpec]) -> None:
    """Replace the custom stack; 'same' padding becomes its number so every setting is a plain number box."""
    state = st.session_state
    first = state.get(NEXT_ID_KEY, 0)
    items = []
    for offset, spec in enumerate(layers):
        spec = dict(spec)
        if spec.get("padding") == "same":
            spec["padding"] = (spec["kernel_size"] - 1) // 2
        items.append({"id": first + offset, "spec": spec})
    state[STACK_KEY], state[NEXT_ID_KEY] = items, first + len(items)


def _move(index: int, step: int) -> None:
    stack = st.session_state[STACK_KEY]
    stack[index], stack[index + step] = stack[index + step], stack[index]


def _remove(index: int) -> None:
    del st.session_state[STACK_KEY][index]


def _add(position_key: str) -> None:
    """Insert the chosen layer type at the chosen position (an index: 0 is the top)."""
    state = st.session_state
    stack = state[STACK_KEY]
    position = min(int(state[position_key]), len(stack))
    spec = normalize_layer(layer_defaults(state["custom_add_type"]), position + 1)
    stack.insert(position, {"id": state[NEXT_ID_KEY], "spec": spec})
    state[NEXT_ID_KEY] += 1


def _copy_from_registry() -> None:
    set_stack(architecture_layers(st.session_state["custom_copy_from"]))


def _layer_row(index: int, item: dict[str, Any], count: int, is_head: bool, num_outputs: int) -> None:
    """One layer: its name, a number box per setting, and move/remove buttons."""
    spec, uid = item["spec"], item["id"]
    cols = st.columns([2.2, 1, 1, 1, 1, 0.45, 0.45, 0.45], vertical_alignment="bottom")
    cols[0].markdown(f"**{index + 1}. {spec['type']}**")
    editable = [name for name in spec if name in SETTING_INPUTS and not (is_head and name == "out_features")]
    for col, name in zip(cols[1:5], editable, strict=False):
        key = f"custom_{uid}_{name}"
        if key not in st.session_state:  # the spec is the source of truth when the box is (re)created
            st.session_state[key] = spec[name]
        label, low, high, step = SETTING_INPUTS[name]
        spec[name] = col.number_input(_(label), low, high, step=step, key=key)
    if is_head:
        cols[1].caption(ngettext("output layer: {count} value", "output layer: {count} values", num_outputs).format(
            count=num_outputs))
    cols[5].button("", icon=":material/arrow_upward:", key=f"custom_{uid}_up", on_click=_move, args=(index, -1),
                   disabled=index == 0, help=_("move up"))
    cols[6].button("", icon=":material/arrow_downward:", key=f"custom_{uid}_down", on_click=_move,
                   args=(index, 1), disabled=index == count - 1, help=_("move down"))
    cols[7].button("", icon=":material/delete:", key=f"custom_{uid}_remove", on_click=_remove, args=(index,),
                   help=_("remove"))


def _position_box(stack: list[dict[str, Any]], kind: str) -> str:
    """A choice of where the next layer goes, starting where that type fits; returns its widget key."""
    labels = [_("at the top")] + [_("after {index}. {layer}").format(index=index, layer=item["spec"]["type"])
                                  for index, item in enumerate(stack, start=1)]
    # The key follows the labels and the type: a keyed selectbox never redraws its labels, and a new type
    # (or a changed stack) starts from where that type fits.
    key = f"custom_add_at_{kind}_{zlib.crc32(repr(labels).encode())}"
    st.selectbox(_("Insert"), range(len(labels)), index=insert_position([item["spec"] for item in stack], kind),
                 format_func=labels.__getitem__, key=key)
    return key


def edit_custom_stack(num_outputs: int, registry: list[str]) -> list[LayerSpec]:
    """Render the builder and return the current specs (validated later by core)."""
    if STACK_KEY not in st.session_state:
        set_stack(arch_config("custom")["options"]["layers"])
    stack = st.session_state[STACK_KEY]
    head = output_layer_index([item["spec"] for item in stack])
    for index, item in enumerate(stack):
        _layer_row(index, item, len(stack), index == head, num_outputs)
    add, copy = st.columns(2, vertical_alignment="bottom")
    with add:
        kind = st.selectbox(_("Layer type"), LAYER_TYPES, key="custom_add_type")
        position_key = _position_box(stack, kind)
        st.button(_("Add layer"), on_click=_add, args=(position_key,), key="custom_add",
                  help=_("The new layer goes where you chose; move it with the arrows."))
    with copy:
        st.selectbox(_("Start from a registry network"), registry, key="custom_copy_from")
        st.button(_("Copy its layers"), on_click=_copy_from_registry, key="custom_copy",
                  help=_("Replaces your stack with that network's layers, ready to edit."))
    return [item["spec"] for item in stack]


def save_form(layers: list[LayerSpec]) -> None:
    """Name the stack and save it, so the Train page lists it among the architectures."""
    name_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    name = name_col.text_input(_("Save this network as"), max_chars=NAME_MAX, key="custom_save_name",
                               placeholder="my-cnn",
                               help=_("Letters, digits, '_', '.' or '-'. A network saved under the same name is "
                                      "replaced. The Train page lists it under Architecture."))
    saved = button_col.button(_("Save"), icon=":material/save:", key="custom_save")
    if not saved:
        return
    try:
        path = save_architecture(name, layers)
    except ArchitectureError as error:
        st.error(say(error.message))
        return
    st.success(_("Saved as **{name}** in `{path}`: choose it under Architecture on the Train page.").format(
        name=path.stem, path=path))
