"""AppTest: the Compare page with zero, one and several runs, a damaged folder, rename and delete by its widgets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import runs

pytest_plugins = ["tests.compare_fixtures"]

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "compare.py")


def open_page(root: Path, monkeypatch, dataset: str | None = None) -> AppTest:
    monkeypatch.setenv(runs.RUNS_ENV, str(root))
    at = AppTest.from_file(PAGE, default_timeout=60)
    if dataset is not None:
        at.session_state["dataset"] = dataset  # the sidebar's choice (pages.common.DATASET_KEY)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Every markdown, caption, info, warning, error and success text on the page, joined."""
    parts = [element.value for kind in ("markdown", "caption", "info", "warning", "error", "success")
             for element in getattr(at, kind)]
    return "\n".join(str(part) for part in parts)


def table(at: AppTest, position: int = 0):
    """The run list (0), or the final numbers of the selected runs (1), as a pandas frame."""
    return at.dataframe[position].value


def test_zero_runs_explains_and_points_to_the_train_page(tmp_path, monkeypatch):
    at = open_page(tmp_path / "no-runs-yet", monkeypatch)
    assert "No training runs yet" in at.info[0].value and "Train" in at.info[0].value
    assert not at.multiselect and not at.dataframe


def test_one_run(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    shutil.rmtree(root / lenet_id)
    at = open_page(root, monkeypatch)
    runs_table = table(at)
    assert runs_table["name"].tolist() == ["tiny fastcnn"]
    assert runs_table["status"].tolist() == ["finished"] and runs_table["architecture"].tolist() == ["fastcnn"]
    assert at.multiselect(key="cmp_selected").value == [fast_id]
    assert "reaches" in texts(at) and "test accuracy at epoch" in texts(at)
    assert "Choose exactly two runs" in texts(at)
    assert at.get("download_button")


def test_several_runs_overlay_and_compare_two(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    at = open_page(root, monkeypatch)
    assert table(at)["name"].tolist() == ["tiny lenet", "tiny fastcnn"]
    assert at.multiselect(key="cmp_selected").value == [lenet_id, fast_id]  # the two newest at first
    final = table(at, 1)
    assert final["run"].tolist() == ["tiny lenet", "tiny fastcnn"] and final["epochs"].tolist() == [1, 2]
    prose = texts(at)
    assert "points above" in prose  # the curves in words, with the gap filled in
    assert "Right for A and wrong for B" in prose and "Each cell of the matrix" in prose
    assert "parameters" in prose
    curves = at.get("plotly_chart")[0].proto.spec  # type: ignore[attr-defined]
    assert "tiny lenet" in curves and "onecycle schedule" in curves  # hover carries the key settings
    captions = [caption for image in at.get("image") for caption in image.captions]  # type: ignore[attr-defined]
    assert captions and all(c.startswith("true ") and " · A: " in c and " · B: " in c for c in captions)
    assert at.subheader[0].value == "A: tiny lenet against B: tiny fastcnn, image by image"


def test_metric_and_axis_pickers(runs_copy, monkeypatch):
    root, _ = runs_copy
    at = open_page(root, monkeypatch)
    at.segmented_control(key="cmp_metric").set_value("test_loss").run()
    assert "gets down to" in texts(at) and "test loss" in texts(at)
    at.segmented_control(key="cmp_metric").set_value("lr").run()
    assert "Learning rate at the end of each epoch" in texts(at)
    at.segmented_control(key="cmp_x").set_value("elapsed_seconds").run()
    at.slider(key="cmp_smooth").set_value(0.5).run()
    assert not at.exception


def test_pair_section_needs_exactly_two_runs(runs_copy, monkeypatch):
    root, (fast_id, _) = runs_copy
    at = open_page(root, monkeypatch)
    at.multiselect(key="cmp_selected").set_value([fast_id]).run()
    assert "Each cell of the matrix" not in texts(at)
    at.multiselect(key="cmp_selected").set_value([]).run()
    assert "Choose one or more runs" in texts(at)


def test_damaged_folder_is_listed_and_the_page_keeps_working(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    (root / fast_id / runs.METRICS_FILE).write_text('{"epoch": 1, "train_lo')
    broken = root / "20990101-000000-broken"
    broken.mkdir()
    (broken / runs.CONFIG_FILE).write_text("{not json")
    at = open_page(root, monkeypatch)
    listed = table(at)
    assert listed["status"].tolist() == ["finished", "damaged", "damaged"]
    assert any("20990101-000000-broken" in w.value and "not valid JSON" in w.value for w in at.warning)
    assert any(fast_id in w.value and "cut short" in w.value for w in at.warning)
    assert at.multiselect(key="cmp_selected").options == ["tiny lenet"]  # damaged runs cannot be chosen
    assert at.multiselect(key="cmp_selected").value == [lenet_id]


def test_rename_through_the_widgets(runs_copy, monkeypatch):
    root, (fast_id, _) = runs_copy
    at = open_page(root, monkeypatch)
    at.selectbox(key="cmp_manage_run").select_index(1).run()  # the older run: tiny fastcnn
    at.text_input(key=f"cmp_name_{fast_id}").input("wide and fast").run()
    at.button(key="cmp_rename").click().run()
    assert not at.exception
    assert runs.read_config(root / fast_id)["name"] == "wide and fast"
    assert "wide and fast" in table(at)["name"].tolist()
    assert any("Renamed" in s.value for s in at.success)


def test_delete_asks_first_and_cancel_keeps_the_run(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    at = open_page(root, monkeypatch)
    at.button(key="cmp_delete").click().run()  # the newest run, tiny lenet, is chosen at first
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="cmp_delete_no").click().run()
    assert (root / lenet_id).is_dir() and not any("cannot be undone" in w.value for w in at.warning)

    at.button(key="cmp_delete").click().run()
    at.button(key="cmp_delete_yes").click().run()
    assert not at.exception
    assert not (root / lenet_id).exists() and (root / fast_id).is_dir()
    assert table(at)["name"].tolist() == ["tiny fastcnn"]
    assert at.multiselect(key="cmp_selected").value == [fast_id]
    assert any("Deleted" in s.value for s in at.success)


def test_a_run_still_training_shows_progress_and_cannot_be_deleted(runs_copy, monkeypatch):
    root, (_, lenet_id) = runs_copy
    runs.write_status(root / lenet_id, "running", message="epoch 1 of 3 done", epoch=1, total_epochs=3)
    at = open_page(root, monkeypatch)
    listed = table(at)
    assert listed["status"].tolist()[0] == "running, epoch 2/3"  # the epoch under way
    assert listed["progress"].tolist()[0] == "33%"
    assert at.button(key="cmp_delete").disabled
    assert at.button(key="cmp_refresh")


def test_damaged_run_can_be_deleted(runs_copy, monkeypatch):
    root, (fast_id, _) = runs_copy
    (root / fast_id / runs.CONFIG_FILE).unlink()
    at = open_page(root, monkeypatch)
    at.selectbox(key="cmp_manage_run").select_index(1).run()
    assert at.button(key="cmp_rename").disabled
    at.button(key="cmp_delete").click().run()
    at.button(key="cmp_delete_yes").click().run()
    assert not (root / fast_id).exists()


def test_default_choice_is_the_newest_finished_runs_and_the_table_names_dataset_and_task(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    runs.write_status(root / lenet_id, "failed", message="RuntimeError: out of memory", epoch=1, total_epochs=1)
    at = open_page(root, monkeypatch)
    listed = table(at)
    assert listed["dataset"].tolist() == ["MNIST", "MNIST"]
    assert listed["task"].tolist() == ["which class (all 10)"] * 2
    assert at.multiselect(key="cmp_selected").value == [fast_id]  # the failed newer run is not chosen for you


def test_a_run_without_test_answers_says_why(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    (root / lenet_id / runs.EVALUATION_FILE).unlink()
    runs.write_status(root / lenet_id, "failed", message="RuntimeError: out of memory.", epoch=1, total_epochs=1)
    at = open_page(root, monkeypatch)
    at.multiselect(key="cmp_selected").set_value([lenet_id, fast_id]).run()
    assert "No test answers for tiny lenet: it ended failed before any were written (RuntimeError: out of " \
           "memory)." in texts(at)


def test_runs_of_different_datasets_are_overlaid_only_with_a_warning(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    record = runs.read_config(root / lenet_id)
    record["config"]["data"]["dataset"] = "fashion-mnist"
    (root / lenet_id / runs.CONFIG_FILE).write_text(json.dumps(record))
    at = open_page(root, monkeypatch)
    assert at.multiselect(key="cmp_selected").value == [fast_id]  # the sidebar's MNIST: no Fashion run beside it
    at.multiselect(key="cmp_selected").set_value([lenet_id, fast_id]).run()
    assert any("Fashion-MNIST (which class (all 10)), MNIST (which class (all 10))" in warning.value
               and "not comparable" in warning.value
               for warning in at.warning)
    prose = texts(at)
    assert "reaches" in prose and "points above" not in prose and "points below" not in prose  # no gaps between them
    assert "fewer parameters" not in prose and "most accurate" not in prose
    assert any("A was tested on Fashion-MNIST and B on MNIST. Choose two runs of one dataset." in warning.value
               for warning in at.warning)
    assert "Each cell of the matrix" not in prose


def test_the_first_choice_follows_the_sidebars_dataset(runs_copy, monkeypatch):
    root, (fast_id, _lenet_id) = runs_copy
    record = runs.read_config(root / fast_id)
    record["config"]["data"]["dataset"] = "fashion-mnist"
    (root / fast_id / runs.CONFIG_FILE).write_text(json.dumps(record))
    at = open_page(root, monkeypatch, dataset="fashion-mnist")
    assert at.multiselect(key="cmp_selected").value == [fast_id]  # the older run, but the one of Fashion-MNIST
    assert not at.warning


def test_a_sweep_trial_shows_its_study_and_state(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    runs.update_record(root / lenet_id, sweep={"study": "lr-search", "trial": 3, "state": "pruned"})
    listed = table(open_page(root, monkeypatch)).set_index("run id")
    assert listed.at[lenet_id, "sweep trial"] == "lr-search #3 (pruned)" and listed.at[fast_id, "sweep trial"] == ""


def test_every_run_is_scored_on_the_hard_set(runs_copy, tiny_runs, monkeypatch, mnist):
    """Two drawings saved with their labels: each run's row counts the answers predict_image gives on them."""
    from core import hardset
    from core.checkpoints import load_checkpoint
    from core.inference import predict_image
    from core.preprocess import render_as_canvas

    root, run_ids = runs_copy
    for run_id in run_ids:  # the copy leaves the weights out; scoring needs them
        shutil.copy(tiny_runs[0] / run_id / runs.BEST_CHECKPOINT, root / run_id / runs.BEST_CHECKPOINT)
    drawings = [(render_as_canvas(mnist.test_images[index]), int(mnist.test_labels[index])) for index in (0, 1)]
    for raw, label in drawings:
        hardset.save_item(raw, "mnist", label, root=root)
    at = open_page(root, monkeypatch)
    assert "Your hard set" in [header.value for header in at.subheader]
    scores = at.table[0].value
    rows = {row.iloc[0]: list(row)[1:] for _, row in scores.iterrows()}
    assert set(rows) == {"Default model (shipped)", *run_ids}
    for run_id in run_ids:
        loaded = load_checkpoint(root / run_id / runs.BEST_CHECKPOINT)
        right = sum(predict_image(loaded.model, loaded.normalization, raw)[1].label == label  # type: ignore[union-attr]
                    for raw, label in drawings)
        assert rows[run_id] == ["MNIST", 2, right, f"{right / 2:.1%}"]


def every_cell(at: AppTest) -> list[str]:
    return [str(value) for frame in (table(at), table(at, 1)) for value in frame.to_numpy().ravel()]


def test_no_table_cell_says_none_a_missing_value_shows_a_dash(runs_copy, monkeypatch):
    root, (fast_id, lenet_id) = runs_copy
    runs.write_status(root / lenet_id, "queued", message="waiting for its worker to start", epoch=0,
                      total_epochs=1)
    (root / lenet_id / runs.METRICS_FILE).unlink()  # no epoch yet: no accuracy, loss, time or speed
    (root / lenet_id / runs.EVALUATION_FILE).unlink()
    broken = root / "20990101-000000-broken"
    broken.mkdir()
    (broken / runs.CONFIG_FILE).write_text("{not json")
    at = open_page(root, monkeypatch)
    at.multiselect(key="cmp_selected").set_value([lenet_id, fast_id]).run()
    cells = every_cell(at)
    assert not [value for value in cells if value in ("None", "nan", "NaN", "<NA>")], cells
    listed = table(at).set_index("run id")
    assert listed.at[lenet_id, "best test acc."] == "—" and listed.at[broken.name, "parameters"] == "—"
    assert listed.at[fast_id, "best test acc."].endswith("%") and "," in listed.at[fast_id, "parameters"]
    final = table(at, 1).set_index("run")
    assert final.at["tiny lenet", "final test loss"] == "—" and final.at["tiny fastcnn", "final test loss"] != "—"


def test_the_analysis_sentences_and_tables_in_chinese(runs_copy, monkeypatch):
    from tests.test_i18n_pages import english_runs

    root, _ = runs_copy
    monkeypatch.setenv(runs.RUNS_ENV, str(root))
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["lang"] = "zh-CN"
    at.run()
    assert not at.exception
    prose = [block.value for block in at.markdown]
    assert any("达到" in text and "测试准确率" in text for text in prose)  # the curves in words
    assert any("多答对" in text or "两者持平" in text for text in prose)  # the two runs in words
    assert any("每个单元格" in text or "矩阵" in text for text in prose)
    names = ("tiny lenet", "tiny fastcnn", "tiny", "lenet", "fastcnn")
    left = [run for text in prose for run in english_runs(text) if not any(name in run for name in names)]
    assert not left, left
    cells = every_cell(at)
    assert not [value for value in cells if value in ("None", "nan")]
    assert "是哪一类（全部 10 类）" in cells and "multiclass" not in cells  # the task as its question, translated
