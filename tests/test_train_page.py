"""AppTest: the Train page's form, validation, and a tiny real run from Start to its final charts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core import export, jobs, runs
from core.i18n import Message
from core.training import config_to_dict, preset_config

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")


@pytest.fixture
def root(runs_env: Path) -> Path:
    """A private runs root for the page (tests/conftest.py stops its runs at the end)."""
    return runs_env


@pytest.fixture
def page(root) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    return at


def title_of(chart) -> str:
    """A Plotly chart's title as the page shows it."""
    title = json.loads(chart.proto.spec)["layout"].get("title", {})
    return str(title.get("text", "")) if isinstance(title, dict) else str(title)


def run_until(at: AppTest, check, timeout: float = 180.0) -> AppTest:
    """Rerun the page (as its one-second refresh does) until `check(at)` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check(at):
            return at
        time.sleep(0.2)
        at.run()
        assert not at.exception
    raise AssertionError("the page never showed it")


def test_preset_fills_the_form(page):
    assert page.selectbox(key="tr_preset_choice").value == "fast"
    page.selectbox(key="tr_preset_choice").set_value("seed002").run()
    assert page.selectbox(key="tr_arch@en").value == "seed002"
    assert page.number_input(key="tr_epochs").value == 20
    assert page.number_input(key="tr_batch_size").value == 64
    assert page.selectbox(key="tr_normalization@en").value == "dataset"
    page.selectbox(key="tr_preset_choice").set_value("seed000").run()
    assert page.radio(key="tr_task@en").value == "binary" and page.selectbox(key="tr_target_digit@en").value == 8
    assert "is it an 8" in page.info[0].value


def test_optimizer_specific_fields(page):
    page.selectbox(key="tr_optimizer").set_value("sgd").run()
    assert page.number_input(key="tr_momentum").value == pytest.approx(0.9)
    assert page.checkbox(key="tr_nesterov").value  # fast uses Nesterov momentum
    page.selectbox(key="tr_optimizer").set_value("adam").run()
    assert (page.number_input(key="tr_beta1").value, page.number_input(key="tr_beta2").value) == (0.9, 0.999)
    page.selectbox(key="tr_scheduler").set_value("step").run()
    assert page.number_input(key="tr_gamma").value == pytest.approx(0.1)


def test_invalid_setting_shows_the_message_and_disables_start(page):
    page.selectbox(key="tr_optimizer").set_value("sgd").run()
    page.number_input(key="tr_momentum").set_value(0.0)
    page.checkbox(key="tr_nesterov").check().run()
    assert any("cannot train" in error.value for error in page.error)
    assert page.button(key="tr_start").disabled


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU the test asks for")
def test_a_device_this_machine_lacks_is_refused_before_start(page, root):
    page.selectbox(key="tr_device").set_value("cuda").run()
    assert any("torch sees no CUDA GPU here" in error.value for error in page.error)
    assert page.button(key="tr_start").disabled and not runs.list_runs(root)  # no failed run left behind


@pytest.mark.slow
def test_tiny_run_from_start_to_final_charts(page, root):
    assert any(block.value.startswith("Trains on **MNIST** (10 classes)") for block in page.markdown)
    page.number_input(key="tr_train_subset").set_value(2000)
    page.number_input(key="tr_test_subset").set_value(1000)
    page.number_input(key="tr_epochs").set_value(1)
    page.text_input(key="tr_run_name").set_value("apptest run").run()
    page.button(key="tr_start").click().run()
    assert not page.exception
    [record] = runs.list_runs(root)
    assert page.query_params["run"] == record.run_id  # the URL names the run: a reload follows it again
    run_until(page, lambda at: bool(at.success))
    assert page.success[0].value.startswith("Finished 1 epoch in ")
    # Every chart plots the run folder's own numbers: the epoch curves, the per-batch series, the evaluation.
    charts = {title_of(chart): json.loads(chart.proto.spec)["data"] for chart in page.get("plotly_chart")}
    rows, series = runs.read_metrics(record.run_dir).rows, runs.read_batches(record.run_dir)
    evaluation = runs.read_evaluation(record.run_dir)
    assert evaluation is not None and len(evaluation.labels) == 1000
    train_loss, test_loss = [row.train_loss for row in rows], [row.test_loss for row in rows]
    assert [trace["y"] for trace in charts["Loss per epoch"]] == [train_loss, test_loss]
    assert charts["Training loss per batch"][0]["y"] == pytest.approx(list(series.losses))
    assert charts["Learning rate"][0]["y"] == pytest.approx(list(series.lrs))
    assert charts["Confusion matrix"][0]["z"] == evaluation.confusion
    assert charts["Accuracy per class"][0]["y"] == pytest.approx([100 * a for a in evaluation.per_class_accuracy])
    assert any("misclassified" in block.value for block in page.markdown)
    assert any("apptest run" in block.value and "fastcnn" in block.value for block in page.markdown)  # its config
    done = runs.find_run(record.run_id, root)
    assert isinstance(done.pid, int) and done.pid != os.getpid()  # trained in its own process, which wrote its log
    assert "finished" in (record.run_dir / runs.LOG_FILE).read_text()
    labels = {button.proto.label for button in page.get("download_button")}
    assert set(export.FORMAT_TITLES.values()) <= labels  # ONNX, TorchScript and train.py of its best epoch


@pytest.mark.slow
def test_a_run_started_elsewhere_shows_with_a_working_stop(page, root):
    run_id = jobs.launch(preset_config("fast", epochs=200, train_subset=640, test_subset=300, scheduler="none"),
                         name="from the cli", root=root)
    fresh = AppTest.from_file(PAGE, default_timeout=120).run()  # another tab, reload or browser
    run_until(fresh, lambda at: any(block.value == "Training now" for block in at.subheader)
              and runs.find_run(run_id, root).status == "running")
    fresh.run()
    assert any("from the cli" in (bar.proto.text or "") for bar in fresh.get("progress"))
    fresh.button(key=f"tr_stop_{run_id}").click().run()
    deadline = time.monotonic() + 120
    while runs.find_run(run_id, root).live and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runs.read_status(runs.run_dir(run_id, root))["status"] == "stopped"
    run_until(fresh, lambda at: any("Stopped" in warning.value for warning in at.warning))
    assert fresh.selectbox(key="tr_resume_run").value.run_id == run_id  # and it can be resumed here


def test_a_diverged_run_is_red_with_the_reason_and_a_learning_rate_to_try(root):
    run_id, folder = runs.new_run(config_to_dict(preset_config("fast", lr=10.0)), name="too hot", root=root)
    runs.write_status(folder, "diverged", message="the training loss exploded to 789 at epoch 1, step 15",
                      suggested_lr=1.0, total_epochs=1)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    [error] = at.error
    assert "**Diverged** — the training loss exploded to 789" in error.value and "learning rate **1**" in error.value


def test_a_crashed_run_says_so_and_can_be_resumed(root):
    run_id, folder = runs.new_run(config_to_dict(preset_config("fast", epochs=3)), name="killed", root=root)
    runs.write_status(folder, "running", epoch=0, total_epochs=3, pid=2**22 + 4321)  # no such process
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert any("**Crashed** — running when its worker (pid 4198625) is gone" in error.value for error in at.error)
    assert at.selectbox(key="tr_resume_run").value.run_id == run_id
    assert not at.subheader or all(block.value != "Training now" for block in at.subheader)


def test_queue_setting_changes_how_many_runs_train_at_once(page, root):
    page.number_input(key="tr_max_parallel").set_value(2).run()
    page.button(key="tr_apply_queue").click().run()
    assert jobs.max_parallel(root) == 2


def test_options_of_one_architecture_do_not_stick_to_the_next(page):
    page.selectbox(key="tr_arch@en").set_value("seed001").run()
    page.checkbox(key="tr_softmax").uncheck().run()
    assert page.session_state["tr_options"] == {"softmax": False}
    page.selectbox(key="tr_arch@en").set_value("fastcnn").run()
    assert not page.error and not page.button(key="tr_start").disabled
    assert page.session_state["tr_options"] == {}


def test_every_preset_setting_has_a_widget(page):
    page.selectbox(key="tr_scheduler").set_value("cosine").run()
    assert page.number_input(key="tr_min_lr").value == 0.0
    assert page.number_input(key="tr_label_smoothing").value == 0.0


def test_the_form_says_which_dataset_and_question_it_trains_on(root):
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["dataset"] = "fashion-mnist"
    at.run()
    assert any(block.value.startswith("Trains on **Fashion-MNIST** (10 classes)") for block in at.markdown)
    assert at.checkbox(key="tr_distort").label == "Distort strongly"  # no writers among clothes
    at.selectbox(key="tr_preset_choice").set_value("seed000").run()  # "is it an 8?"
    assert any(block.value.startswith("Trains on **Fashion-MNIST** (one-vs-rest: is it Bag?)")
               for block in at.markdown)
    assert at.selectbox(key="tr_target_digit@en").format_func(8) == "8: Bag"


def test_processes_that_cannot_split_the_batch_are_refused_with_the_reason(page, root):
    page.number_input(key="tr_processes").set_value(3).run()
    page.button(key="tr_start").click().run()
    assert any("3 processes must split the batch of 64 evenly" in error.value for error in page.error)
    assert runs.list_runs(root) == []


def test_a_diverged_run_in_chinese_shows_the_reason_in_chinese(root):
    run_id, folder = runs.new_run(config_to_dict(preset_config("fast", lr=10.0)), name="too hot", root=root)
    reason = Message(
        "the training loss exploded to %(loss).3g (it started near %(start).3g) at epoch %(epoch)d, step %(step)d "
        "(learning rate %(lr)g): the learning rate is probably too high for %(optimizer)s on %(arch)s. "
        "Try %(suggestion)g or lower.",
        {"loss": 789.0, "start": 2.3, "epoch": 1, "step": 15, "lr": 10.0, "optimizer": "adam", "arch": "fastcnn",
         "suggestion": 1.0})
    runs.write_status(folder, "diverged", message=reason, suggested_lr=1.0, total_epochs=1)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = run_id
    at.query_params["lang"] = "zh-CN"
    at.run()
    [error] = at.error
    assert "训练损失在第 1 轮第 15 步暴涨到 789" in error.value and "试试 1 或更低的学习率" in error.value
    assert "exploded" not in error.value


def test_a_run_stopped_before_its_first_epoch_says_resuming_starts_it_over(root):
    run_id, folder = runs.new_run(config_to_dict(preset_config("fast")), name="stopped early", root=root)
    runs.write_status(folder, "stopped", message="stopped during epoch 1, before any epoch was saved", total_epochs=1)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    [stopped] = [w.value for w in at.warning if "Stopped" in w.value]
    assert "starts it from the beginning" in stopped and "last saved epoch" not in stopped


def test_a_saved_network_is_listed_and_trains_as_an_ordinary_run(root):
    from core.checkpoints import load_checkpoint
    from core.saved_archs import save_architecture

    layers = [{"type": "Conv2d", "out_channels": 4, "kernel_size": 5}, {"type": "ReLU"},
              {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"}, {"type": "Linear", "out_features": 10}]
    save_architecture("tiny-net", layers)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert "tiny-net (yours)" in at.selectbox(key="tr_arch@en").options  # listed with the registry's networks
    at.selectbox(key="tr_arch@en").set_value("saved:tiny-net").run()
    assert any("Conv2d(4, k=5, s=1, p=0) → ReLU" in caption.value for caption in at.caption)
    at.number_input(key="tr_train_subset").set_value(1000)
    at.number_input(key="tr_test_subset").set_value(500)
    at.number_input(key="tr_epochs").set_value(1).run()
    assert not at.error
    at.button(key="tr_start").click().run()
    [record] = runs.list_runs(root)
    run_until(at, lambda page: bool(page.success))
    model = runs.read_config(record.run_dir)["config"]["model"]
    assert model["arch"] == "custom" and model["options"]["name"] == "tiny-net"
    assert model["options"]["layers"][0]["kernel_size"] == 5
    assert any("custom network tiny-net" in block.value for block in at.markdown)
    smoothing = next(c.value for c in at.caption if c.value.startswith("The smoothed line keeps"))
    assert "keeps 95% of its past" in smoothing and "about the last 20 batches" in smoothing  # 1 / (1 - 0.95)
    assert "it keeps 80%, about the last 5 batches" in smoothing  # the divergence check's 0.2 for the newest
    loaded = load_checkpoint(record.run_dir / runs.BEST_CHECKPOINT)  # rebuilt from the recorded stack
    assert sum(p.numel() for p in loaded.model.parameters()) == 104 + 5770
