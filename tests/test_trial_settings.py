"""The production decoding of a trial's params: the one path from Ray's values to a config."""

from __future__ import annotations

import pytest

from tune_digits.config import from_flat, to_flat
from tune_digits.errors import ConfigError
from tune_digits.space import encode, list_keys, parse_space
from tune_digits.tuning import ARM, TrialContext, trial_settings

BASE = to_flat(from_flat({"model.name": "lenet5"}))


def test_a_search_trial_decodes_its_list_values_through_the_space() -> None:
    channels = {"type": "choice", "values": [[6, 16], [16, 32]]}
    space = parse_space({"fixed": {"model.name": "lenet5"}, "space": {"model.channels": channels}})
    ctx = TrialContext("out", "s", {"": BASE}, list_keys=list_keys(space))
    cfg, labels = trial_settings(ctx, {"model.channels": encode([16, 32]), "train.lr": 0.002})
    assert list(cfg.model.channels) == [16, 32] and cfg.train.lr == 0.002
    assert labels == {}  # a search trial writes no labels


def test_the_arm_picks_the_base_and_is_a_label_not_a_config_key() -> None:
    bases = {"A": {**BASE, "train.lr": 0.01}, "B": {**BASE, "train.lr": 0.03}}
    ctx = TrialContext("out", "e", bases)
    cfg, labels = trial_settings(ctx, {ARM: "B", "features.variant": "bilateral", "train.seed": 2})
    assert cfg.train.lr == 0.03 and cfg.features.variant == "bilateral" and cfg.train.seed == 2
    assert labels == {ARM: "B", "features.variant": "bilateral", "train.seed": 2}
    assert ARM not in to_flat(cfg)


def test_an_unknown_trial_key_is_still_a_config_error() -> None:
    with pytest.raises(ConfigError):
        trial_settings(TrialContext("out", "s", {"": BASE}), {"train.lrr": 0.1})
