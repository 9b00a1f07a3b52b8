"""The Architecture page, run on its own with Streamlit's AppTest."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models import list_architectures
from core.summary import summarize_architecture

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "architecture.py")
REGISTRY = [name for name in list_architectures() if name != "custom"]


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    return at


def layer_table(at: AppTest):
    return at.dataframe[0].value


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def latex(at: AppTest) -> str:
    return "\n".join(element.value for element in at.latex)


@pytest.mark.parametrize("arch", REGISTRY)
def test_each_registry_architecture_renders(arch: str) -> None:
    at = open_page()
    at.selectbox(key="arch_name").set_value(arch).run()
    expected = summarize_architecture(arch)
    assert not at.exception and not at.error
    assert metric(at, "Parameters") == f"{expected.total_params:,}"
    table = layer_table(at)
    assert list(table["layer"]) == [row.name for row in expected.layers]
    assert table["output"].iloc[-1] == "10"
    assert len(at.get("plotly_chart")) == 2  # shape flow and comparison


def test_worked_formulas_for_seed000() -> None:
    at = open_page()
    assert r"3\cdot3\cdot1\cdot32 + 32 = 320" in latex(at)  # conv1 is selected first
    assert r"\frac{28 + 2\cdot1 - 3}{1}" in latex(at)
    assert any("896" in info.value for info in at.info)  # the tutorial's slip is explained
    at.selectbox(key="formula_layer_seed000").set_value(6).run()  # pool2
    assert r"\frac{14 + 2\cdot0 - 2}{2} \right\rfloor + 1 = 7" in latex(at)
    at.selectbox(key="formula_layer_seed000").set_value(8).run()  # fc1
    assert r"3136\cdot128 + 128 = 401{,}536" in latex(at)


def test_seed001_softmax_is_explained_and_can_be_switched_off() -> None:
    at = open_page()
    at.selectbox(key="arch_name").set_value("seed001").run()
    assert "Softmax" in list(layer_table(at)["type"])
    assert any("applies its own softmax again" in w.value for w in at.warning)
    at.checkbox(key="opt_seed001_softmax").uncheck().run()
    assert "Softmax" not in list(layer_table(at)["type"]) and not at.warning


def test_one_logit_head() -> None:
    at = open_page()
    at.radio(key="arch_outputs@en").set_value(1).run()
    assert layer_table(at)["output"].iloc[-1] == "1"
    assert metric(at, "Parameters") == "420,481"


def open_custom() -> AppTest:
    at = open_page()
    at.radio(key="arch_mode@en").set_value("custom").run()
    assert not at.exception and not at.error
    return at


def test_custom_stack_edited_through_widgets_updates_the_table() -> None:
    at = open_custom()
    assert list(layer_table(at)["output"])[:2] == ["8×28×28", "8×28×28"]
    at.number_input(key="custom_0_out_channels").set_value(12).run()  # layer ids 0..7 are the default stack
    table = layer_table(at)
    assert table["output"].iloc[0] == "12×28×28" and table["params"].iloc[0] == 3 * 3 * 1 * 12 + 12
    at.button(key="custom_1_remove").click().run()  # drop the first ReLU
    assert list(layer_table(at)["type"])[:2] == ["Conv2d", "MaxPool2d"]
    at.selectbox(key="custom_add_type").set_value("Dropout").run()
    at.button(key="custom_add").click().run()  # goes just before the output Linear
    assert list(layer_table(at)["type"])[-2:] == ["Dropout", "Linear"]
    at.button(key="custom_2_down").click().run()  # pool1 below conv2
    assert list(layer_table(at)["type"])[:4] == ["Conv2d", "Conv2d", "MaxPool2d", "ReLU"]
    assert layer_table(at)["output"].iloc[1] == "16×28×28"
    at.button(key="custom_2_up").click().run()  # and back
    assert list(layer_table(at)["type"])[:4] == ["Conv2d", "MaxPool2d", "Conv2d", "ReLU"]
    assert not at.exception and not at.error


def test_invalid_custom_stack_shows_the_message_and_the_page_keeps_working() -> None:
    at = open_custom()
    at.number_input(key="custom_2_kernel_size").set_value(16).run()
    at.number_input(key="custom_2_stride").set_value(16).run()  # 28 -> 1, so pool2 has nothing left
    assert not at.exception
    assert [e.value for e in at.error] == [
        "layer 6 MaxPool2d(k=2): input 1×1, kernel 2, padding 0, stride 2: the output would be 0×0, so the kernel "
        "must be at most 1 (the padded input's side)"]
    assert not at.metric  # no stale numbers from the last valid stack
    assert len(at.dataframe) == 1  # the comparison still renders
    at.number_input(key="custom_2_stride").set_value(2).run()  # repair it
    assert not at.error and layer_table(at)["output"].iloc[2] == "8×7×7"


def test_copy_a_registry_network_into_the_builder() -> None:
    at = open_custom()
    at.selectbox(key="custom_copy_from").set_value("seed003").run()
    at.button(key="custom_copy").click().run()
    assert metric(at, "Parameters") == "44,426"
    assert layer_table(at)["output"].iloc[6] == "256"  # LeNet's flatten size


def test_a_kernel_too_big_for_its_input_names_the_layer_and_every_size() -> None:
    at = open_custom()
    at.selectbox(key="custom_add_type").set_value("Conv2d").run()
    at.button(key="custom_add").click().run()  # a Conv2d goes before the Flatten by default: on the 8×7×7 map
    assert list(layer_table(at)["type"])[6:8] == ["Conv2d", "Flatten"]
    at.number_input(key="custom_8_kernel_size").set_value(40).run()  # ids 0..7 are the default stack
    assert [e.value for e in at.error] == [
        "layer 7 Conv2d(8, k=40, s=1, p=0): input 7×7, kernel 40, padding 0, stride 1: the output would be 0×0, "
        "so the kernel must be at most 7 (the padded input's side)"]
    assert at.number_input(key="custom_8_kernel_size").value == 40  # kept as typed, not clamped or ignored


def test_add_layer_inserts_at_the_chosen_position() -> None:
    at = open_custom()
    at.selectbox(key="custom_add_type").set_value("BatchNorm").run()
    [position] = [box for box in at.selectbox if box.key.startswith("custom_add_at_BatchNorm")]
    assert position.value == 7  # by default just before the output Linear
    position.set_value(1).run()  # after 1. Conv2d
    at.button(key="custom_add").click().run()
    assert list(layer_table(at)["type"])[:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert not at.exception and not at.error


def test_a_built_network_is_saved_by_name(runs_env) -> None:
    from core.saved_archs import list_saved_architectures, load_architecture

    at = open_custom()
    at.number_input(key="custom_0_out_channels").set_value(6).run()
    at.text_input(key="custom_save_name").set_value("bad name").run()
    at.button(key="custom_save").click().run()
    assert "cannot name an architecture" in at.error[0].value and not list_saved_architectures()
    at.text_input(key="custom_save_name").set_value("six-channels").run()
    at.button(key="custom_save").click().run()
    assert not at.error and "six-channels" in at.success[0].value
    assert list_saved_architectures() == ["six-channels"]
    assert load_architecture("six-channels")[0]["out_channels"] == 6
