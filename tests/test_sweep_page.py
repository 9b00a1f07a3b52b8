"""AppTest: the Sweep page creates a tiny sweep, follows it to its end, shows Optuna's figures, trains the best
configuration as a run, and stops a sweep it started; on a finished study with a diverged trial, its summary,
trials table and figures read right in English and Chinese.

Every wait reruns the page (as its refresh does) until a state shows, never a fixed sleep.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from core import runs, sweep
from core.i18n import Translator
from pages.charts import history_figure, parallel_figure, slice_figure
from tests.test_sweep import MIXED_TRIALS, mixed_study, raw_keys, stop_everything

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "sweep.py")


@pytest.fixture
def root(tmp_path, monkeypatch) -> Iterator[Path]:
    monkeypatch.setenv("DIGITS_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv(sweep.STORAGE_ENV, raising=False)
    yield tmp_path
    stop_everything(tmp_path)


def run_until(at: AppTest, check: Callable[[AppTest], bool], what: str, timeout: float = 240.0) -> AppTest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check(at):
            return at
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
    raise AssertionError(f"the page never showed {what}")


def texts(at: AppTest) -> str:
    return " ".join(element.value for element in [*at.markdown, *at.caption, *at.info, *at.error, *at.success])


def plotly_count(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


@pytest.mark.slow
def test_a_tiny_sweep_from_the_page(root):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and "No studies yet" in texts(at)
    at.selectbox(key="sw_preset").set_value("seed003")
    at.text_input(key="sw_study").input("page")
    at.number_input(key="sw_trials").set_value(2)
    at.number_input(key="sw_train_subset").set_value(256)
    at.number_input(key="sw_test_subset").set_value(200)
    at.multiselect(key="sw_optimizer").set_value(["adam"])
    at.multiselect(key="sw_batch_size").set_value([64])
    at.multiselect(key="sw_augment").set_value([False])
    at.select_slider(key="sw_lr").set_value((0.001, 0.002))
    at.button(key="sw_start").click().run()
    assert not at.exception and not at.error, [error.value for error in at.error]
    assert at.query_params["study"] in ("page", ["page"])

    at = run_until(at, lambda at: "finished: ran all 2 trials" in texts(at), "the finished sweep")
    assert plotly_count(at) == 4  # history, parallel coordinate, importances, slice
    table = at.dataframe[0].value
    assert list(table["state"]) == ["complete", "complete"]
    assert list(table["optimizer"]) == ["adam", "adam"] and list(table["batch_size"]) == [64, 64]
    for run_link in table["run"]:
        record = runs.find_run(run_link.removeprefix("train?run="))
        assert record.study == "page" and record.trial_state == "complete" and record.status == "finished"
    assert "The best trial so far is trial" in texts(at)

    at.checkbox(key="sw_best_full").uncheck()
    at.button(key="sw_train_best").click().run()
    best = [record for record in runs.list_runs() if record.name == "page best"]
    assert len(best) == 1 and best[0].study == "" and "trains trial" in at.success[0].value

    at.number_input(key="sw_more").set_value(3)
    at.button(key="sw_resume").click().run()
    assert not at.exception and sweep.read_sweep("page").live
    at = run_until(at, lambda at: bool(at.button(key="sw_stop")), "the Stop button")
    at.button(key="sw_stop").click().run()
    at = run_until(at, lambda at: "was stopped" in texts(at), "the stopped sweep")
    assert sweep.read_sweep("page").state == "stopped"


def test_an_empty_choice_is_refused_before_anything_starts(root):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.multiselect(key="sw_optimizer").set_value([]).run()
    assert "Choose at least one value for optimizer." in [error.value for error in at.error]
    assert not [button for button in at.button if button.key == "sw_start"]


# ---------------------------------------------------------------------------------------------
# A finished study: trial 0 diverged, trials 1 and 2 complete (tests.test_sweep.MIXED_TRIALS)


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mixed")
    mixed_study(root)
    yield root
    stop_everything(root)


@pytest.fixture
def mixed(mixed_root, monkeypatch) -> optuna.Study:
    """The finished study, in the runs root the page reads."""
    monkeypatch.setenv("DIGITS_RUNS_DIR", str(mixed_root))
    monkeypatch.delenv(sweep.STORAGE_ENV, raising=False)
    return sweep.load_study("mixed")


def open_page(lang: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    if lang:
        at.query_params["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


def summary_of(at: AppTest) -> str:
    (summary,) = [caption.value for caption in at.caption if "mixed" in caption.value]
    return summary


def test_the_summary_names_the_settings_by_their_labels(mixed):
    summary = summary_of(open_page())
    assert summary.startswith("Study mixed starts every trial from preset fast. Fixed: ")
    assert "Training images 256 · Test images 200" in summary and "Label smoothing 0 to 0.2" in summary
    assert "Learning rate 0.001 to 50 (log scale)" in summary and "Augmentation off or on" in summary
    assert not raw_keys(summary), summary

    zh = Translator("zh_CN")
    chinese = summary_of(open_page("zh-CN"))
    assert not raw_keys(chinese), chinese
    for name in ("epochs", "lr", "batch_size", "label_smoothing", "augment", "optimizer"):
        assert zh.gettext(sweep.SETTING_LABELS[name]) in chinese and sweep.SETTING_LABELS[name] not in chinese


@pytest.mark.parametrize(("lang", "why"), [(None, "diverged: the training loss stayed at"), ("zh-CN", "发散：")])
def test_a_failed_trial_shows_a_dash_not_none_and_says_why(mixed, lang, why):
    table = open_page(lang).dataframe[0]
    assert table.proto.placeholder == "—"  # what a missing value shows, instead of Streamlit's "None"
    frame = table.value
    failed, *complete = frame.to_dict("records")
    assert failed["test accuracy"] is None or math.isnan(failed["test accuracy"])
    assert "None" not in [str(value) for value in failed.values()]
    assert failed["reason"].startswith(why), failed["reason"]
    assert [row["reason"] for row in complete] == ["", ""]  # nothing to explain (and not the catalog's header)
    assert list(frame.columns[:3]) == ["trial", "state", "reason"]  # the reason stands beside the state


def figures_of(study: optuna.Study) -> dict[str, object]:
    space = sweep.searched_space(study)
    return {"history": history_figure(study, {}), "parallel": parallel_figure(study, space, {}),
            "slice": slice_figure(study, space, {})}


def one_complete(study: optuna.Study) -> optuna.Study:
    """The study as it stood with one complete trial (and the diverged one): a lone accuracy."""
    copy = optuna.create_study(direction="maximize")
    copy.add_trials(study.trials[:2])
    return copy


@pytest.mark.parametrize("complete", [1, 2])
def test_accuracy_axes_stay_within_0_and_100_percent_and_trials_are_whole(mixed, complete):
    study = mixed if complete == 2 else one_complete(mixed)
    values = [trial.value for trial in study.trials if trial.value is not None]
    assert len(values) == complete
    figures = figures_of(study)
    for name in ("history", "slice"):
        low, high = figures[name].layout.yaxis.range
        assert 0 <= low <= min(values) <= max(values) <= high <= 1, (name, low, high)
        assert figures[name].layout.yaxis.tickformat.endswith("%")
    history = figures["history"].layout.xaxis
    assert (history.tick0, history.dtick, history.tickformat) == (0, 1, "d")  # no trial 0.2

    (scale,) = [trace.marker for trace in figures["parallel"].data if trace.marker.showscale]
    assert scale.cmin <= min(values) <= max(values) <= scale.cmax <= 1
    assert scale.cmax - scale.cmin <= max(max(values) - min(values), 0.01) + 1e-9  # not Optuna's value ± 0.5
    for trace in figures["slice"].data:
        assert trace.marker.colorbar.tickformat == "d"  # the colour bar counts trials


def test_the_slice_plot_spans_the_searched_ranges_and_writes_choices_plainly(mixed):
    figure = figures_of(mixed)["slice"]
    axes = {figure.layout[name].title.text: figure.layout[name] for name in figure.layout if name.startswith("xaxis")}
    assert set(axes) == {"lr", "weight_decay", "label_smoothing", "augment", "optimizer"}  # batch size is fixed
    assert tuple(axes["label_smoothing"].range) == (0.0, 0.2)
    assert tuple(axes["lr"].range) == pytest.approx((math.log10(0.001), math.log10(50)))
    assert tuple(axes["weight_decay"].range) == pytest.approx((-6, -5))
    assert tuple(axes["optimizer"].categoryarray) == ("sgd", "adam")
    assert tuple(axes["augment"].categoryarray) == ("off", "on")
    shown = {value for trace in figure.data for value in trace.x if isinstance(value, str)}
    assert shown == {"adam", "off", "on"} and not any("'" in value for value in shown)
    assert [params["optimizer"] for params in MIXED_TRIALS[1:]] == ["adam", "adam"]


def test_the_page_draws_the_fitted_figures_in_chinese(mixed):
    at = open_page("zh-CN")
    assert len(at.get("plotly_chart")) == 4  # history, importances, parallel coordinates, slice
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    shown = json.dumps(specs, ensure_ascii=False)
    assert "学习率" in shown and "批大小" not in shown  # settings by their labels; batch size is not varied
    assert "'adam'" not in shown and "'sgd'" not in shown and '"lr"' not in shown
    history = specs[0]["layout"]
    assert 0 <= history["yaxis"]["range"][0] < history["yaxis"]["range"][1] <= 1 and history["xaxis"]["dtick"] == 1
