"""tune_digits.bootstrap on synthetic, seeded predictions: coverage, pairing and the unit resampled."""

from __future__ import annotations

import numpy as np
import pytest

from tune_digits import bootstrap as bs
from tune_digits.metrics import confusion_matrix, macro_f1


def _speakers(rng: np.random.Generator, n_speakers: int, clips: int, skill: float = 0.8, spread: float = 0.15):
    """Labels, predictions and speaker names: each speaker's clips are right with that speaker's own chance."""
    y, pred, groups = [], [], []
    for s in range(n_speakers):
        p = float(np.clip(rng.normal(skill, spread), 0.05, 0.99))
        labels = rng.integers(0, 10, clips)
        right = rng.random(clips) < p
        wrong = (labels + rng.integers(1, 10, clips)) % 10
        y += labels.tolist()
        pred += np.where(right, labels, wrong).tolist()
        groups += [f"s{s}"] * clips
    return y, pred, groups


def test_the_95_interval_covers_the_population_macro_f1() -> None:
    rng = np.random.default_rng(1)
    y, pred, _ = _speakers(rng, 4000, 20)
    truth = macro_f1(confusion_matrix(np.array(y), np.array(pred)))
    covered = []
    for rep in range(60):
        est = bs.interval(*_speakers(rng, 12, 30), n_boot=300, seed=rep)
        assert est.unit == "speakers" and est.units == 12
        covered.append(est.low <= truth <= est.high)
    assert 0.85 <= np.mean(covered) <= 1.0, np.mean(covered)


def test_point_is_the_macro_f1_inside_the_interval_and_seeded() -> None:
    y, pred, groups = _speakers(np.random.default_rng(2), 8, 25)
    est = bs.interval(y, pred, groups, n_boot=400)
    assert est.point == pytest.approx(macro_f1(confusion_matrix(np.array(y), np.array(pred))))
    assert est.low <= est.point <= est.high and est.high - est.low > 0.01
    assert bs.interval(y, pred, groups, n_boot=400) == est
    assert bs.interval(y, pred, groups, n_boot=400, seed=9) != est


def test_speakers_give_a_wider_interval_than_clips_when_speakers_differ() -> None:
    y, pred, groups = _speakers(np.random.default_rng(3), 10, 40, spread=0.3)
    by_speaker = bs.interval(y, pred, groups, n_boot=500)
    by_clip = bs.interval(y, pred, [str(i) for i in range(len(y))], n_boot=500)
    assert by_clip.unit == "speakers" and by_clip.units == len(y)  # one clip per "speaker"
    assert by_speaker.high - by_speaker.low > 1.3 * (by_clip.high - by_clip.low)


def test_fewer_than_five_speakers_resample_clips() -> None:
    y, pred, groups = _speakers(np.random.default_rng(4), 3, 50)
    est = bs.interval(y, pred, groups, n_boot=200)
    assert est.unit == "clips" and est.units == 150


def test_paired_probability() -> None:
    rng = np.random.default_rng(5)
    y, weak, groups = _speakers(rng, 10, 30, skill=0.6)
    y_arr = np.array(y)
    strong = np.where(rng.random(len(y)) < 0.9, y_arr, np.array(weak)).tolist()
    assert bs.prob_better(y, weak, weak, groups, n_boot=200) == 0.5
    p = bs.prob_better(y, strong, weak, groups, n_boot=300)
    assert p > 0.99
    assert bs.prob_better(y, weak, strong, groups, n_boot=300) == pytest.approx(1 - p)
    slightly = list(weak)
    flips = [i for i in range(len(y)) if weak[i] != y[i]][:3]
    for i in flips:
        slightly[i] = y[i]
    assert 0.5 < bs.prob_better(y, slightly, weak, groups, n_boot=300) <= 1.0


def test_bad_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="no clips"):
        bs.interval([], [], [])
    with pytest.raises(ValueError, match="one entry per clip"):
        bs.prob_better([1, 2], [1, 2], [1], ["a", "b"])
