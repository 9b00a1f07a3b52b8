"""core.tutorials: the live numbers against hand-worked values and torch, and the results file read back."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from core import models, runs, tutorials
from core.summary import summarize_architecture
from core.training import PRESET_DESCRIPTIONS, config_to_dict


def test_every_tutorial_quotes_each_step_once_in_order():
    for tut in tutorials.TUTORIALS.values():
        assert [excerpt.step for excerpt in tut.excerpts] == list(tutorials.STEP_TITLES)
        assert tut.key in models.list_architectures()


def test_conv1_count_worked_three_ways():
    count = tutorials.conv1_count()
    conv1 = models.build_model("seed000", 1)[0]  # the first layer of the registry's seed000
    assert (count.printed, count.formula, count.rgb) == (896, 320, 896)
    assert count.model == conv1.weight.numel() + conv1.bias.numel() == 320


@pytest.mark.parametrize("key", list(tutorials.TUTORIALS))
def test_network_summary_is_the_presets_network(key):
    config = tutorials.recipe(key)
    expected = summarize_architecture(config.model.arch, tutorials.num_outputs(config), config.model.options)
    assert tutorials.network_summary(key) == expected


def test_hand_worked_shapes_and_counts():
    rows = {row.name: row for row in tutorials.network_summary("seed000").layers}
    assert (rows["conv2"].params, rows["fc1"].params, rows["fc1"].input_shape) == (18496, 401536, (3136,))
    rows = {row.name: row for row in tutorials.network_summary("seed003").layers}
    assert rows["fc1"].input_shape == (256,)  # 16 * 4 * 4, the tutorial's num_flat_features


def test_loader_numbers(mnist):
    n = tutorials.loader_numbers("seed000", mnist)
    assert (n.train_batches, n.last_train_batch, n.test_batches, n.last_test_batch) == (938, 32, 157, 16)
    n = tutorials.loader_numbers("seed001", mnist)
    assert (n.train_batches, n.test_batches, n.train_as_test_batches, n.total_steps) == (1875, 313, 1875, 93750)


def test_normalization_values(mnist):
    assert tutorials.data_normalization("seed000", mnist).value_range() == (-1.0, 1.0)
    assert tutorials.data_normalization("seed001", mnist).value_range() == (0.0, 1.0)
    norm = tutorials.data_normalization("seed002", mnist)
    assert norm.mean == pytest.approx(tutorials.TYPED_MEAN, abs=5e-5)
    assert norm.std == pytest.approx(tutorials.TYPED_STD, abs=5e-5)


def test_what_the_loss_sees(mnist):
    softmax = tutorials.loss_view("seed001", mnist)
    assert softmax.head == "softmax" and softmax.output_sum == pytest.approx(1.0, abs=1e-5)
    assert softmax.extra["smallest_possible_loss"] == pytest.approx(math.log(1 + 9 / math.e), abs=1e-6)
    log_probs = tutorials.loss_view("seed002", mnist)
    assert log_probs.head == "log_softmax" and log_probs.exp_sum == pytest.approx(1.0, abs=1e-5)
    assert log_probs.loss_as_written == pytest.approx(log_probs.loss_meant, abs=1e-6)
    assert log_probs.extra["largest_change"] < 1e-5
    assert tutorials.loss_view("seed000", mnist).head == "logits"


def test_log_softmax_is_unchanged_by_a_second_log_softmax():
    z = F.log_softmax(torch.randn(8, 10), dim=1)
    target = torch.arange(8)
    assert torch.allclose(F.log_softmax(z, dim=1), z, atol=1e-6)
    assert F.cross_entropy(z, target).item() == pytest.approx(F.nll_loss(z, target).item(), abs=1e-6)


def test_learning_rates_of_the_unstepped_scheduler():
    rates = tutorials.tutorial_learning_rates()
    assert set(rates.actual) == {0.01} and len(rates.actual) == 50
    assert rates.scheduled[0] == 0.01
    epoch, lowest = rates.lowest
    assert epoch == 33 and lowest == pytest.approx(0.0, abs=1e-12)  # after T_max = 32 steps
    assert rates.scheduled[40] > rates.scheduled[33]  # and back up again


def test_imshow_grids(mnist):
    grids = tutorials.imshow_grids(mnist)
    assert grids.as_written.shape == grids.corrected.shape == (242, 242)  # 8 x (28 + 2) + 2
    assert grids.background_as_written == pytest.approx((-0.1307 / 0.3081) / 2 + 0.5)
    assert grids.first_clipped_pixel == 112
    ink = mnist.train_images[:64] > 0
    assert 0 < grids.clipped_share < 1 and ink.any()
    assert int(grids.corrected[2:30, 2:30].max()) == int(mnist.train_images[0].max())  # un-normalized exactly


def test_dataloader_iterators_lost_next():
    assert tutorials.dataloader_iterator_has_next_method() is False


def test_the_committed_results_file_reads_back():
    results = tutorials.read_results()
    assert results is not None
    assert set(results.trainings) == set(tutorials.MEASURED_TRAININGS)
    for training in results.trainings.values():
        assert len(training.epochs) == results.budget.epochs
        assert training.config().data.train_subset == results.budget.train_images
    assert results.trainings["seed001-no-softmax"].config().model.options == {"softmax": False}
    assert 0 < results.train_set_as_test_set["true_test_accuracy"] <= 1


def test_read_results_of_a_missing_or_foreign_file(tmp_path):
    assert tutorials.read_results(tmp_path / "none.json") is None
    (tmp_path / "other.json").write_text('{"something": 1}')
    assert tutorials.read_results(tmp_path / "other.json") is None


def test_measure_on_a_tiny_budget(mnist, tmp_path):
    budget = tutorials.Budget(train_images=256, test_images=300, epochs=1, seed=0)
    results = tutorials.measure(mnist, tmp_path / "runs", budget, loss_steps=3)
    path = tutorials.write_results(results, tmp_path / "results.json")
    read = tutorials.read_results(path)
    assert read is not None and read.budget == budget
    assert read.train_set_as_test_set["images"] == 256
    assert read.cross_entropy_vs_nll["max_loss_difference"] < 1e-4
    assert all(len(training.epochs) == 1 for training in read.trainings.values())
    assert read.machine == tutorials.this_machine()


def test_the_machine_is_data_and_older_files_read_back():
    machine = tutorials.this_machine()
    assert machine.cores >= 1 and machine.threads == torch.get_num_threads() and machine.torch == torch.__version__
    assert tutorials.machine_from(asdict(machine)) == machine
    older = "Linux x86_64, 2 CPU cores, Python 3.11.7, torch 2.14.1+cu130, threads 2"  # as files before Machine say it
    assert tutorials.machine_from(older) == tutorials.Machine("Linux x86_64", 2, "3.11.7", "2.14.1+cu130", 2)
    with pytest.raises(ValueError):
        tutorials.machine_from("a fast computer")


@pytest.mark.parametrize("key", list(tutorials.TUTORIALS))
def test_settings_say_no_schedule_in_words(key):
    line = " · ".join(part.english() for part in runs.settings_messages(config_to_dict(tutorials.recipe(key))))
    assert "no schedule" in line and "none" not in line
    cosine = runs.settings_messages(config_to_dict(tutorials.recipe(key, scheduler="cosine")))
    assert "cosine schedule" in " · ".join(part.english() for part in cosine)  # the Train page's name, kept


def test_preset_descriptions_name_no_raw_scheduler_key():
    assert all("scheduler none" not in text for text in PRESET_DESCRIPTIONS.values())
    assert "no learning-rate schedule" in PRESET_DESCRIPTIONS["seed001"]


def test_loss_calls_are_code_and_their_words_are_outside_it():
    for tut in tutorials.TUTORIALS.values():
        for loss in (tut.loss_as_written, tut.loss_meant):
            assert loss.startswith("`") and loss.count("`") == 2  # one code span, the words after it
    assert tutorials.tutorial("seed001").loss_as_written == "`nn.CrossEntropyLoss()` on the Softmax output"
