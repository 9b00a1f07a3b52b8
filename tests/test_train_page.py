"""AppTest: the Train page's form, validation, and a tiny real run from Start to its final charts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")


@pytest.fixture
def page(tmp_path, monkeypatch) -> Iterator[AppTest]:
    monkeypatch.setenv("DIGITS_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    yield at
    job = at.session_state["train_job"] if "train_job" in at.session_state else None  # noqa: SIM401 (no .get)
    if job is not None:  # never leave a training thread running into the next test
        job.stop()
        job.join(60)


def test_preset_fills_the_form(page):
    assert page.selectbox(key="tr_preset_choice").value == "fast"
    page.selectbox(key="tr_preset_choice").set_value("seed002").run()
    assert page.selectbox(key="tr_arch").value == "seed002"
    assert page.number_input(key="tr_epochs").value == 20
    assert page.number_input(key="tr_batch_size").value == 64
    assert page.selectbox(key="tr_normalization").value == "dataset"
    page.selectbox(key="tr_preset_choice").set_value("seed000").run()
    assert page.radio(key="tr_task").value == "binary" and page.number_input(key="tr_target_digit").value == 8
    assert "is it an 8" in page.info[0].value


def test_optimizer_specific_fields(page):
    page.selectbox(key="tr_optimizer").set_value("sgd").run()
    assert page.number_input(key="tr_momentum") is not None
    page.selectbox(key="tr_scheduler").set_value("step").run()
    assert page.number_input(key="tr_gamma").value == pytest.approx(0.1)


def test_invalid_setting_shows_the_message_and_disables_start(page):
    page.selectbox(key="tr_optimizer").set_value("sgd").run()
    page.number_input(key="tr_momentum").set_value(0.0)
    page.checkbox(key="tr_nesterov").check().run()
    assert any("cannot train" in error.value for error in page.error)
    assert page.button(key="tr_start").disabled


def test_tiny_run_from_start_to_final_charts(page):
    page.number_input(key="tr_train_subset").set_value(2000)
    page.number_input(key="tr_test_subset").set_value(1000)
    page.number_input(key="tr_epochs").set_value(1)
    page.text_input(key="tr_run_name").set_value("apptest run").run()
    page.button(key="tr_start").click().run()
    assert not page.exception
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not page.success:
        time.sleep(0.5)
        page.run()
    assert page.success, "the run did not finish"
    assert "Finished 1 epochs" in page.success[0].value
    charts = page.get("plotly_chart")
    assert len(charts) >= 6  # loss, accuracy, batch loss, lr, confusion matrix, per-class accuracy
    assert any("misclassified" in block.value for block in page.markdown)
    assert not page.button(key="tr_start").disabled and page.button(key="tr_stop").disabled


def test_options_of_one_architecture_do_not_stick_to_the_next(page):
    page.selectbox(key="tr_arch").set_value("seed001").run()
    page.checkbox(key="tr_softmax").uncheck().run()
    assert page.session_state["tr_options"] == {"softmax": False}
    page.selectbox(key="tr_arch").set_value("fastcnn").run()
    assert not page.error and not page.button(key="tr_start").disabled
    assert page.session_state["tr_options"] == {}


def test_every_preset_setting_has_a_widget(page):
    page.selectbox(key="tr_scheduler").set_value("cosine").run()
    assert page.number_input(key="tr_min_lr").value == 0.0
    assert page.number_input(key="tr_label_smoothing") is not None
