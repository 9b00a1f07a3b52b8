"""pages/charts.py helpers that need no page: Optuna's figures in the page's words, with room for their labels."""

from __future__ import annotations

import json

import optuna
import pytest

from core.i18n import Translator
from pages.charts import OPTUNA_WORDS, optuna_figure


@pytest.fixture(scope="module")
def study() -> optuna.Study:
    """A real study over a log-scaled, a linear and a categorical setting (the objective is a cheap formula)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: 0.9 + trial.suggest_float("lr", 1e-5, 1e-1, log=True)
                   + trial.suggest_float("dropout", 0.0, 0.5) / 10
                   + 0.001 * trial.suggest_categorical("batch_size", [32, 64, 128]) / 128, n_trials=8)
    return study


def chinese_words() -> dict[str, str]:
    zh = Translator("zh_CN").gettext
    return {"Trial": zh("trial"), "Objective Value": zh("test accuracy"), "Best Value": zh("best so far"),
            "Infeasible Trial": zh("infeasible trial"), "Feasible Trial": zh("trial"),
            "Hyperparameter Importance": zh("importance"), "Hyperparameter": ""}


@pytest.mark.parametrize("plot", ["plot_optimization_history", "plot_parallel_coordinate", "plot_param_importances",
                                  "plot_slice"])
def test_optuna_figures_keep_no_english_word_of_optuna(study, plot: str) -> None:
    from optuna import visualization as vis

    figure = optuna_figure(getattr(vis, plot)(study), "标题", chinese_words())
    shown = json.dumps(figure.to_plotly_json(), ensure_ascii=False)
    left = [word for word in OPTUNA_WORDS if f'"{word}"' in shown or f"{word}:" in shown]
    assert not left, left
    assert figure.layout.title.text == "标题"


def test_a_log_axis_gets_one_tick_per_power_of_ten_and_labels_get_room(study) -> None:
    from optuna import visualization as vis

    figure = optuna_figure(vis.plot_slice(study), "slice", {})
    axes = [figure.layout[name] for name in figure.layout if name.startswith(("xaxis", "yaxis"))]
    log_axes = [axis for axis in axes if axis.type == "log"]
    assert log_axes and all(axis.dtick == 1 and axis.exponentformat == "power" for axis in log_axes)
    assert all(axis.automargin for axis in axes)
    assert [axis.title.text for axis in axes if axis.type == "log"] == ["lr"]  # the setting's own name stays
