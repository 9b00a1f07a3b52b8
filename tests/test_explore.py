"""Dataset-page numbers: samples, class means, the normalization table, the augmentation preview."""

from __future__ import annotations

import pytest
import torch

from core.explore import augmentation_preview, class_balance, class_mean_images, normalization_table, sample_indices


def test_sample_indices_respect_classes_count_and_seed(mnist):
    picked = sample_indices(mnist.train_labels, [3, 7], 50, seed=1)
    assert len(picked) == 50 and set(mnist.train_labels[picked].tolist()) <= {3, 7}
    assert torch.equal(picked, sample_indices(mnist.train_labels, [3, 7], 50, seed=1))
    assert not torch.equal(picked, sample_indices(mnist.train_labels, [3, 7], 50, seed=2))
    assert len(sample_indices(mnist.train_labels, [], 10, seed=0)) == 0


def test_class_means_match_a_direct_average(mnist):
    means = class_mean_images(mnist.test_images, mnist.test_labels, 10)
    direct = mnist.test_images[mnist.test_labels == 4].double().mean(0)
    assert means.shape == (10, 28, 28)
    assert torch.allclose(means[4].double(), direct, atol=1e-4)


def test_class_means_of_the_whole_training_set_equal_float64_averages(mnist):
    direct = torch.stack([mnist.train_images[mnist.train_labels == c].double().mean(0) for c in range(10)]).float()
    assert torch.equal(class_mean_images(mnist.train_images, mnist.train_labels, 10), direct)  # exact, not close


def test_class_means_past_float32_s_exact_range_are_still_exact():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (70_000, 1, 2), dtype=torch.uint8, generator=generator)  # 70,000 * 255 > 2**24
    labels = torch.randint(0, 3, (70_000,), generator=generator)
    direct = torch.stack([images[labels == c].double().mean(0) for c in range(3)]).float()
    assert torch.equal(class_mean_images(images, labels, 3), direct)


def test_normalization_table_numbers(mnist):
    rows = {row.preset: row for row in normalization_table(mnist)}
    assert rows["none"].examples[255] == pytest.approx(1.0)
    assert rows["half"].examples[0] == pytest.approx(-1.0)
    assert rows["dataset"].mean == pytest.approx(0.1307, abs=5e-5)
    assert rows["dataset"].examples[255] == pytest.approx((1 - 0.13066) / 0.30811, abs=1e-3)
    assert rows["dataset"].low == pytest.approx(-0.4241, abs=1e-3)


def test_augmentation_preview_is_uint8_and_seeded(mnist):
    digit = mnist.test_images[0]
    draws = augmentation_preview(digit, 8, seed=5)
    assert draws.shape == (8, 28, 28) and draws.dtype == torch.uint8
    assert torch.equal(draws, augmentation_preview(digit, 8, seed=5))
    assert int(draws.sum()) > 0.7 * int(digit.sum()) * 8  # the ink stays (mostly) in frame


def test_class_balance_names_smallest_and_largest(mnist):
    balance = class_balance(mnist.class_counts(True), mnist.classes)
    assert (balance.smallest, balance.smallest_count) == ("5", 5421)
    assert (balance.largest, balance.largest_count) == ("1", 6742) and not balance.equal
    even = class_balance([6000, 6000, 6000], ["T-shirt/top", "Trouser", "Pullover"])
    assert even.equal and even.smallest_count == even.largest_count == 6000
    with pytest.raises(ValueError):
        class_balance([1, 2], ["a"])
