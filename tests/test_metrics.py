"""Evaluation metrics against scikit-learn and against counts done by hand."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn import metrics as skm

from core.metrics import (
    binary_evaluation,
    confusion_matrix,
    evaluation_from_dict,
    evaluation_to_dict,
    multiclass_evaluation,
)

# Ten hand-made answers of an "is it an 8?" model: true digits and P(8).
DIGITS = torch.tensor([8, 8, 8, 3, 1, 8, 0, 8, 2, 5])
P_EIGHT = torch.tensor([0.9, 0.4, 0.7, 0.6, 0.1, 0.8, 0.2, 0.3, 0.05, 0.55])
# Answers at 0.5: [1, 0, 1, 1, 0, 1, 0, 0, 0, 1] -> TP 3 (idx 0, 2, 5), FN 2 (1, 7), FP 2 (3, 9), TN 3.


def test_binary_metrics_match_hand_counts_and_scikit_learn():
    evaluation = binary_evaluation(DIGITS, P_EIGHT, target_digit=8, test_loss=0.5)
    binary = evaluation.binary
    assert binary is not None
    assert (binary.precision, binary.recall, binary.accuracy) == pytest.approx((3 / 5, 3 / 5, 6 / 10))
    assert binary.f1 == pytest.approx(0.6)
    assert binary.baseline_accuracy == pytest.approx(5 / 10)  # half of these digits are 8s
    truth = (DIGITS == 8).int().numpy()
    answers = (P_EIGHT >= 0.5).int().numpy()
    assert binary.precision == pytest.approx(skm.precision_score(truth, answers))
    assert binary.recall == pytest.approx(skm.recall_score(truth, answers))
    assert binary.f1 == pytest.approx(skm.f1_score(truth, answers))
    assert binary.roc_auc == pytest.approx(skm.roc_auc_score(truth, P_EIGHT.double().numpy()))
    assert binary.roc_auc == pytest.approx(21 / 25)  # pairs (8, not 8) ranked right: 21 of 25
    fpr, tpr, _ = skm.roc_curve(truth, P_EIGHT.double().numpy())
    assert binary.roc_fpr == pytest.approx(fpr.tolist()) and binary.roc_tpr == pytest.approx(tpr.tolist())
    assert evaluation.confusion == [[3, 2], [2, 3]]  # rows: not 8, is 8
    assert evaluation.predictions == answers.tolist()
    assert evaluation.confidences[1] == pytest.approx(0.6)  # answered "no" with P(8) = 0.4


def test_binary_metrics_without_positives_do_not_crash():
    binary = binary_evaluation(torch.tensor([1, 2, 3]), torch.tensor([0.1, 0.2, 0.7]), 8, 0.1).binary
    assert binary is not None and math.isnan(binary.roc_auc) and binary.baseline_accuracy == 1.0


def test_multiclass_confusion_and_per_class_accuracy():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predicted = torch.tensor([0, 1, 1, 1, 2, 2])
    probs = torch.nn.functional.one_hot(predicted, 10).float() * 0.9 + 0.01
    evaluation = multiclass_evaluation(labels, probs, test_loss=0.3)
    expected = skm.confusion_matrix(labels.numpy(), predicted.numpy(), labels=list(range(10)))
    assert evaluation.confusion == expected.tolist()
    assert evaluation.per_class_accuracy[:3] == pytest.approx([0.5, 2 / 3, 1.0])
    assert all(math.isnan(x) for x in evaluation.per_class_accuracy[3:])  # classes absent from the test set
    assert evaluation.accuracy == pytest.approx(4 / 6)
    assert confusion_matrix(labels, predicted, 10).sum() == 6


def test_evaluation_round_trips_through_a_dict():
    evaluation = binary_evaluation(DIGITS, P_EIGHT, 8, 0.5)
    assert evaluation_from_dict(evaluation_to_dict(evaluation)) == evaluation


def test_the_first_page_s_modules_leave_scikit_learn_unimported_until_binary_metrics_need_it():
    # scikit-learn and SciPy take 1-2 s to import; the Dataset page on a fresh server reaches this module
    # (pages.common -> core.runs -> core.metrics) but never computes one-vs-rest metrics.
    import subprocess
    import sys

    probe = ("import sys, torch, core.runs, core.inference, core.explore, core.metrics as m; "
             "print('sklearn' in sys.modules, 'scipy' in sys.modules); "
             "b = m.binary_metrics(torch.tensor([1, 0, 1]), torch.tensor([0.9, 0.2, 0.4]), 8); "
             "print('sklearn' in sys.modules, round(b.recall, 3))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.split("\n")[:2] == ["False False", "True 0.5"]


def test_smoothing_is_pandas_ewm_with_bias_correction():
    import pandas as pd

    from core.metrics import CHART_SMOOTHING, smooth

    losses = [2.3, 1.9, 2.4, 1.1, 0.9, 1.6, 0.7, 0.65, 0.8, 0.5] * 3
    for weight in (0.0, 0.5, 0.9, CHART_SMOOTHING):
        reference = pd.Series(losses).ewm(alpha=1 - weight, adjust=True).mean().tolist()
        assert smooth(losses, weight) == pytest.approx(reference, rel=1e-12)
    assert smooth([], 0.9) == [] and smooth([3.0], 0.99) == [3.0]  # the first point is the first value


def test_most_confident_mistakes_are_the_wrong_answers_surest_first():
    import numpy as np

    from core.metrics import most_confident_mistakes

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 10, generator=generator) * 3
    labels = torch.randint(0, 10, (200,), generator=generator)
    evaluation = multiclass_evaluation(labels, logits.softmax(dim=1), test_loss=1.0)
    predictions, confidences = np.array(evaluation.predictions), np.array(evaluation.confidences)
    wrong = np.flatnonzero(predictions != labels.numpy())
    reference = wrong[np.argsort(-confidences[wrong], kind="stable")][:12].tolist()
    assert most_confident_mistakes(evaluation, 12) == reference
    assert len(most_confident_mistakes(evaluation, 10_000)) == len(wrong)
