"""Metrics: confusion matrix, per-class and macro F1, accuracy against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tune_digits.metrics import accuracy, confusion_matrix, macro_f1, per_class_f1, summarize


def test_hand_computed_example() -> None:
    # three classes; true 0 0 0 1 1 2, predicted 0 0 1 1 2 2
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, num_classes=3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # class 0: P 2/2, R 2/3 -> F1 0.8; class 1: P 1/2, R 1/2 -> 0.5; class 2: P 1/2, R 1 -> 2/3
    np.testing.assert_allclose(per_class_f1(cm), [0.8, 0.5, 2 / 3])
    assert macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert accuracy(cm) == pytest.approx(4 / 6)


def test_summarize_ten_classes() -> None:
    y_true = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9])
    y_pred = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 9, 9, 8])
    out = summarize(y_true, y_pred)
    assert np.array(out["confusion_matrix"]).shape == (10, 10) and np.array(out["confusion_matrix"]).sum() == 12
    assert out["accuracy"] == pytest.approx(10 / 12)
    # class 8: tp 0 -> 0; class 9: tp 2, fp 1, fn 1 -> 2/3; eight classes perfect
    assert out["per_class_f1"][8] == 0.0 and out["per_class_f1"][9] == pytest.approx(2 / 3, abs=1e-6)
    assert out["f1"] == pytest.approx((8 + 2 / 3) / 10)


@given(st.lists(st.integers(0, 9), min_size=1, max_size=200))
def test_perfect_predictions(labels: list[int]) -> None:
    y = np.array(labels)
    out = summarize(y, y)
    assert out["f1"] == 1.0 and out["accuracy"] == 1.0
    assert np.array(out["confusion_matrix"]).sum() == len(labels)


def test_all_wrong() -> None:
    y_true = np.array([0, 1, 2, 3])
    assert macro_f1(confusion_matrix(y_true, (y_true + 1) % 4, 4)) == 0.0


def test_classes_absent_from_the_true_labels_are_left_out() -> None:
    # only class 0 is true; half the items are wrongly called 1: class 0 has P 1, R 1/2 -> F1 2/3
    cm = confusion_matrix(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1]), 3)
    assert macro_f1(cm) == pytest.approx(2 / 3)
    assert per_class_f1(cm).tolist()[1:] == [0.0, 0.0]


def test_empty() -> None:
    cm = confusion_matrix(np.array([], dtype=int), np.array([], dtype=int))
    assert cm.sum() == 0 and macro_f1(cm) == 0.0 and accuracy(cm) == 0.0
