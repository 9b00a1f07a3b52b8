"""Evaluation metrics of a trained network on a test set: plain data objects, JSON-ready.

Binary (one-vs-rest) metrics come from scikit-learn, the trusted reference; the rest is counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

# Smoothing of the per-batch loss chart: the share of the past kept at each batch, so the line follows about
# the last 1 / (1 - 0.95) = 20 batches and shows the trend through the noise of single batches. The
# divergence check (core.training.engine.LOSS_SMOOTHING) deliberately keeps less of the past (0.8, about
# the last 5 batches): it has to react within a few batches, not draw a calm line.
CHART_SMOOTHING = 0.95


def smooth(values: Sequence[float], weight: float = CHART_SMOOTHING) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing); `weight` is the past's share.

    Equal to pandas' `Series.ewm(alpha=1 - weight, adjust=True).mean()`; the first point is the first value.
    """
    smoothed, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**count))
    return smoothed


def most_confident_mistakes(evaluation: Evaluation, count: int) -> list[int]:
    """Test-set positions of up to `count` wrong answers, the surest first (ties keep test order); multiclass only."""
    if evaluation.binary is not None:
        raise ValueError("most_confident_mistakes compares classes; a one-vs-rest evaluation answers yes or no")
    wrong = [i for i, (label, prediction) in enumerate(zip(evaluation.labels, evaluation.predictions, strict=True))
             if label != prediction]
    return sorted(wrong, key=lambda i: -evaluation.confidences[i])[:count]


@dataclass(frozen=True)
class BinaryMetrics:
    """One-vs-rest quality; `baseline_accuracy` is that of always answering "not the target"."""

    target_digit: int
    accuracy: float  # fraction of test images answered right
    baseline_accuracy: float  # fraction right by always answering "no" (about 0.9 for one digit of ten)
    precision: float  # of the images called the target, the fraction that are
    recall: float  # of the target images, the fraction found
    f1: float  # harmonic mean of precision and recall
    roc_auc: float  # area under the ROC curve of the target probability (nan if one class only)
    roc_fpr: list[float]  # ROC curve: false-positive rates, increasing
    roc_tpr: list[float]  # ROC curve: true-positive rates at the same thresholds


@dataclass(frozen=True)
class Evaluation:
    """A model's answers on the test set, in dataset order, and what they add up to."""

    task: str  # "multiclass" or "binary"
    test_loss: float  # mean loss per test image
    accuracy: float  # fraction right
    labels: list[int]  # true class 0-9 of each test image
    predictions: list[int]  # predicted class 0-9; binary: 1 = "is the target", 0 = "is not"
    confidences: list[float]  # probability the model gives its own prediction, 0.5-1 for binary
    per_class_accuracy: list[float]  # for each true class 0-9, the fraction answered right
    confusion: list[list[int]]  # counts [true][predicted]; binary: 2x2 over (not target, target)
    binary: BinaryMetrics | None = None  # binary task only


def evaluation_to_dict(evaluation: Evaluation) -> dict[str, Any]:
    """JSON-safe dict (NaN ROC-AUC stays a float; json writes it as NaN)."""
    return asdict(evaluation)


def evaluation_from_dict(data: dict[str, Any]) -> Evaluation:
    """Inverse of `evaluation_to_dict`."""
    binary = data.get("binary")
    return Evaluation(**{**data, "binary": BinaryMetrics(**binary) if binary else None})


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, classes) int64 counts, rows = true class, columns = predicted class."""
    return torch.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(labels: torch.Tensor, correct: torch.Tensor, classes: int = 10) -> list[float]:
    """For each true class, the fraction of its images answered right (nan for an absent class)."""
    totals = torch.bincount(labels, minlength=classes).double()
    rights = torch.bincount(labels, weights=correct.double(), minlength=classes)
    return (rights / totals).tolist()


def binary_metrics(is_target: torch.Tensor, target_probability: torch.Tensor, target_digit: int) -> BinaryMetrics:
    """Metrics of the answers `probability >= 0.5` against the truth `is_target` (both (N,))."""
    # Imported here: scikit-learn (with SciPy) takes 1-2 s to import, and every page imports this module
    # through core.runs, the Dataset page on a fresh server included, which never needs it.
    from sklearn import metrics as skm

    truth = is_target.to(torch.int64).numpy()
    scores = target_probability.double().numpy()
    answers = (scores >= 0.5).astype("int64")
    both_classes = 0 < truth.sum() < len(truth)
    fpr, tpr, _ = skm.roc_curve(truth, scores) if both_classes else ([], [], None)
    return BinaryMetrics(
        target_digit=target_digit,
        accuracy=float(skm.accuracy_score(truth, answers)),
        baseline_accuracy=float(1.0 - truth.mean()),
        precision=float(skm.precision_score(truth, answers, zero_division=0)),
        recall=float(skm.recall_score(truth, answers, zero_division=0)),
        f1=float(skm.f1_score(truth, answers, zero_division=0)),
        roc_auc=float(skm.roc_auc_score(truth, scores)) if both_classes else float("nan"),
        roc_fpr=[float(x) for x in fpr],
        roc_tpr=[float(x) for x in tpr],
    )


def multiclass_evaluation(labels: torch.Tensor, probabilities: torch.Tensor, test_loss: float) -> Evaluation:
    """Evaluation from class probabilities (N, 10) and true labels (N,)."""
    confidences, predictions = probabilities.max(dim=1)
    correct = predictions == labels
    return Evaluation(
        task="multiclass",
        test_loss=test_loss,
        accuracy=float(correct.double().mean()),
        labels=labels.tolist(),
        predictions=predictions.tolist(),
        confidences=confidences.tolist(),
        per_class_accuracy=per_class_accuracy(labels, correct),
        confusion=confusion_matrix(labels, predictions, 10).tolist(),
    )


def binary_evaluation(
    labels: torch.Tensor, target_probability: torch.Tensor, target_digit: int, test_loss: float
) -> Evaluation:
    """Evaluation of a one-vs-rest model from P(target) (N,) and the true digits (N,)."""
    is_target = labels == target_digit
    predictions = (target_probability >= 0.5).to(torch.int64)
    confidences = torch.where(predictions == 1, target_probability, 1 - target_probability)
    correct = predictions == is_target.to(torch.int64)
    return Evaluation(
        task="binary",
        test_loss=test_loss,
        accuracy=float(correct.double().mean()),
        labels=labels.tolist(),
        predictions=predictions.tolist(),
        confidences=confidences.tolist(),
        per_class_accuracy=per_class_accuracy(labels, correct),
        confusion=confusion_matrix(is_target.to(torch.int64), predictions, 2).tolist(),
        binary=binary_metrics(is_target, target_probability, target_digit),
    )
