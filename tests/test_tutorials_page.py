"""AppTest: the Tutorials page renders each tutorial with core's numbers and the results file's measured figures,
and its buttons launch jobs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import runs, tutorials
from core.training import Finished, preset_config, train
from tests.apptest_helpers import app_test, page_sentences
from tests.test_i18n_pages import english_runs, shown_texts

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "tutorials.py")


@pytest.fixture
def root(runs_env: Path) -> Path:
    """A private runs root for the page (tests/conftest.py stops its runs at the end)."""
    return runs_env


def open_tutorial(key: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.radio(key="tut_pick@en").set_value(key).run()
    assert not at.exception and not at.error
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def text(at: AppTest) -> str:
    return "\n".join(page_sentences(at) + [element.value for element in [*at.subheader, *at.header]])


def latex(at: AppTest) -> str:
    return "\n".join(element.value for element in at.latex)


def test_tutorials_is_in_the_navigation(tmp_path):
    at = app_test(tmp_path).run()
    labels = [link.proto.label for link in at.sidebar.get("page_link")]
    assert labels.index("Tutorials") == labels.index("Architecture") + 1


@pytest.mark.parametrize("key", list(tutorials.TUTORIALS))
def test_each_tutorial_shows_its_steps_with_cores_numbers(key, root, mnist):
    at = open_tutorial(key)
    tut, summary = tutorials.tutorial(key), tutorials.network_summary(key)
    assert f"Tutorial {tut.number}: {tut.title}" in text(at)
    assert [block.value for block in at.subheader][:6] == list(tutorials.STEP_TITLES.values())
    assert [block.value for block in at.code][:6] == [excerpt.code for excerpt in tut.excerpts]
    assert metrics(at)["Trainable parameters"] == f"{summary.total_params:,}"
    table = at.dataframe[0].value
    assert list(table["layer"]) == [row.name for row in summary.layers]
    assert list(table["output"]) == ["×".join(map(str, row.output_shape)) for row in summary.layers]
    assert list(table["params"]) == [row.params for row in summary.layers]
    for row in summary.layers:
        if row.type == "Linear":
            assert f"{row.input_shape[0]}\\cdot{row.output_shape[0]} + {row.output_shape[0]}" in latex(at)
    n = tutorials.loader_numbers(key, mnist)
    assert f"make **{n.train_batches:,} batches per epoch**" in text(at)
    assert at.button(key=f"tut_run_{key}")


def test_000_shows_896_beside_the_true_320():
    at = open_tutorial("seed000")
    found = metrics(at)
    assert found["The tutorial's count"] == "896"
    assert found["Its formula worked out"] == found["conv1 in the built network"] == "320"
    assert r"(3 \times 3 \times 3) \times 32 + 32 = 896" in latex(at)
    assert "conv1 has 320 parameters, not 896" in text(at)


def test_001_shows_the_measured_figures():
    results = tutorials.read_results()
    assert results is not None
    at = open_tutorial("seed001")
    found, measured = metrics(at), results.train_set_as_test_set
    assert found["Reported with train=True"] == f"{measured['reported_accuracy']:.2%}"
    assert found["Real test set (train=False)"] == f"{measured['true_test_accuracy']:.2%}"
    for training in results.trainings.values():
        assert found[training.title] == f"{training.final_test_accuracy:.2%}"
    page = text(at)
    assert "Softmax before CrossEntropyLoss" in page and "train=True" in page
    assert "stays 0.01 for all 50 epochs" in page
    assert f"the first {results.budget.train_images:,} training images" in page  # the budget is said
    assert results.measured_at in page


def test_002_compares_cross_entropy_and_nll_loss_live_and_measured():
    results = tutorials.read_results()
    assert results is not None
    at = open_tutorial("seed002")
    page = text(at)
    assert "F.cross_entropy on the output of log_softmax" in page
    assert f"never differ by more than {results.cross_entropy_vs_nll['max_loss_difference']:.1e}" in page
    found = metrics(at)
    assert found["F.cross_entropy (as written)"] == found["F.nll_loss (what was meant)"]


def test_003_shows_the_grid_both_ways_and_next():
    at = open_tutorial("seed003")
    page = text(at)
    assert "a black pixel becomes 0.288 (grey)" in page
    assert "dataiter.next() raises AttributeError" in page and "next(dataiter)" in page


def wait_for_run(root: Path, count: int) -> list[runs.RunRecord]:
    deadline = time.monotonic() + 30
    while len(records := runs.list_runs(root)) < count:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return records


@pytest.mark.slow
def test_run_this_recipe_launches_the_preset_as_a_job(root):
    at = open_tutorial("seed003")
    assert any(info.value == "No runs of this recipe yet." for info in at.info)
    at.button(key="tut_run_seed003").click().run()
    assert not at.exception
    [record] = wait_for_run(root, 1)
    assert record.preset == "seed003" and record.name == "tutorial 003 recipe"
    at.run()
    assert any("Every run of this recipe" in block.value for block in at.markdown)
    assert at.dataframe[-1].value["run"].tolist() == ["tutorial 003 recipe"]


@pytest.mark.slow
def test_a_measured_training_reruns_as_a_job(root):
    at = open_tutorial("seed001")
    at.button(key="tut_rerun_seed001-no-softmax").click().run()
    assert not at.exception
    [record] = wait_for_run(root, 1)
    config = runs.read_config(record.run_dir)["config"]
    assert record.preset == "seed001" and config["model"]["options"] == {"softmax": False}
    results = tutorials.read_results()
    assert results is not None and config["data"]["train_subset"] == results.budget.train_images


def test_with_fashion_mnist_chosen_the_page_says_it_shows_mnist(root):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["dataset"] = "fashion-mnist"
    at.run()
    assert any("train on MNIST, so this page shows MNIST's numbers" in info.value for info in at.info)
    plain = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not any("train on MNIST" in info.value for info in plain.info)


def open_in_chinese(key: str, dataset: str = "mnist") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["lang"] = "zh-CN"
    at.session_state["dataset"] = dataset
    at.session_state["tut_pick"] = key
    at.run()
    assert not at.exception and not at.error
    assert at.radio(key="tut_pick@zh_CN").value == key
    return at


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("key", list(tutorials.TUTORIALS))
def test_in_chinese_no_english_fragment_or_raw_key_is_left(root, key, dataset):
    page = "\n".join(shown_texts(open_in_chinese(key, dataset).main))
    for fragment in ("on the Softmax output", "on logits", "log_softmax output", "CPU cores", "threads",
                     "none 学习率", "学习率调度 none", "none schedule", "no schedule"):
        assert fragment not in page, fragment
    assert not english_runs(page), english_runs(page)
    assert "· 无学习率调度 ·" in page
    if key in ("seed001", "seed002"):  # where the measured figures' section is
        assert "个 CPU 核心" in page and "个线程" in page
    if key == "seed001":
        assert "按教程原样写的损失（作用于 Softmax 输出的 `nn.CrossEntropyLoss()`）为" in page
        assert "（去掉 Softmax 层、直接作用于 logits 的 `nn.CrossEntropyLoss()`）" in page
    if key == "seed002":
        assert "（作用于 log_softmax 输出的 `F.cross_entropy(output, target)`）" in page


def test_in_chinese_a_recipes_runs_show_no_raw_scheduler_key(root, mnist):
    config = preset_config("seed003", train_subset=256, test_subset=128, threads=1)
    [*_, finished] = train(config, run_name="教程 003 配置", runs_root=root, dataset=mnist)
    assert isinstance(finished, Finished)
    at = open_in_chinese("seed003")
    table = at.dataframe[-1].value
    assert table["设置"].tolist() == ["seed003 · sgd 学习率 0.01 · 无学习率调度 · 批大小 64 · 1 轮 · 256 张训练图像"]


def test_in_english_the_loss_machine_and_schedule_read_as_sentences(mnist):
    results = tutorials.read_results()
    assert results is not None
    at = open_tutorial("seed001")
    page, view = text(at), tutorials.loss_view("seed001", mnist)
    assert (f"the loss as written, `nn.CrossEntropyLoss()` on the Softmax output, is **{view.loss_as_written:.4f}**"
            in page)
    assert (f"The loss that matches this output, `nn.CrossEntropyLoss()` on logits (no Softmax layer), is "
            f"**{view.loss_meant:.4f}**" in page)
    machine = results.machine
    plural = {1: ""}
    assert (f"on {machine.system}, {machine.cores} CPU core{plural.get(machine.cores, 's')}, Python {machine.python}, "
            f"torch {machine.torch}, {machine.threads} thread{plural.get(machine.threads, 's')}." in page)
    assert "Preset seed001: seed001 · adam lr 0.01 · no schedule · batch 32 · 50 epochs." in page
    assert "the preset keeps that, with no learning-rate schedule" in page
    plain = tutorials.loss_view("seed003", mnist).loss_as_written
    assert f"the loss as written, `nn.CrossEntropyLoss()`, is **{plain:.4f}**" in text(open_tutorial("seed003"))


def test_the_measured_figures_section_only_where_a_tutorial_uses_them(root):
    at = open_tutorial("seed001")
    assert "How the measured figures were made" in [header.value for header in at.header]
    assert at.button(key="tut_rerun_seed001-no-softmax")
    for key in ("seed000", "seed003"):
        at.radio(key="tut_pick@en").set_value(key).run()
        assert "How the measured figures were made" not in [header.value for header in at.header]
        assert not [button for button in at.button if button.key.startswith("tut_rerun_")]
    at.radio(key="tut_pick@en").set_value("seed002").run()
    assert "How the measured figures were made" in [header.value for header in at.header]
    assert not [button for button in at.button if button.key.startswith("tut_rerun_")]
    assert any("cross_entropy and nll_loss comparison above trains" in caption.value for caption in at.caption)
