"""A trial's settings on their production path: Optuna suggests from the Ray param_space, the trainable decodes.

List values (``model.channels: [[6, 16], [16, 32]]``) travel through Optuna and Ray as JSON strings; the
trial turns them back into lists before it builds its config. This drives the real path:
the shipped search space, Ray's OptunaSearch with its ``start:`` points, and the trainable's
``trial_settings`` (which decodes through ``space.decode``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tune_digits.config import from_flat, to_flat
from tune_digits.errors import ConfigError
from tune_digits.space import contains, encode, list_keys, load_space, parse_space, to_tune
from tune_digits.tuning import ARM, TrialContext, trial_settings

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def _suggestions(space_file: Path, n: int) -> tuple[object, list[dict]]:
    from ray.tune.search.optuna import OptunaSearch

    space = load_space(space_file)
    s = space.search
    points = [{k: encode(v) for k, v in point.items()} for point in space.start] or None
    searcher = OptunaSearch(metric=s.metric, mode=s.mode, seed=s.seed, points_to_evaluate=points)
    assert searcher.set_search_properties(s.metric, s.mode, to_tune(space))
    return space, [searcher.suggest(f"t{i}") for i in range(n)]


def test_sampled_list_settings_reach_the_trial_config_as_lists(tmp_path: Path) -> None:
    space, suggested = _suggestions(SPACES / "lenet.yaml", 8)
    base = space.base_config()
    ctx = TrialContext(str(tmp_path), "g", {"": to_flat(base)}, list_keys=list_keys(space))
    assert ctx.list_keys == ("model.channels",)
    channels = set()
    for params in suggested:
        assert isinstance(params["model.channels"], str)  # what arrives in the trainable: a JSON string
        cfg = trial_settings(ctx, params)[0]
        flat = to_flat(cfg)
        for dim in space.dims:  # every searched key is in the config, inside its distribution
            assert contains(dim, flat[dim.key]), (dim.key, flat[dim.key])
        assert list(cfg.model.channels) in ([6, 16], [16, 32])
        assert all(isinstance(c, int) for c in cfg.model.channels)
        assert cfg.train.lr == pytest.approx(params["train.lr"])
        assert cfg.model.name == base.model.name and cfg.augment.enabled == base.augment.enabled  # fixed: the base
        channels.add(tuple(cfg.model.channels))
    assert channels == {(6, 16), (16, 32)}  # both list values were drawn and decoded


def test_a_final_eight_arm_picks_its_own_base(tmp_path: Path) -> None:
    """final-eight's grid sends ``arm``: the trial's config starts from that arm's base, not a config key."""
    space, _ = _suggestions(SPACES / "lenet.yaml", 0)
    a = to_flat(space.base_config())
    b = {**a, "model.name": "resnet20", "model.lifter": 20}
    ctx = TrialContext(str(tmp_path), "e", {"A": a, "B": b})
    cfg, _ = trial_settings(
        ctx, {"arm": "B", "features.variant": "bilateral", "augment.enabled": False, "train.seed": 2}
    )
    assert (cfg.model.name, cfg.model.lifter, cfg.features.variant, cfg.augment.enabled, cfg.train.seed) == (
        "resnet20",
        20,
        "bilateral",
        False,
        2,
    )
    assert trial_settings(ctx, {"arm": "A"})[0].model.name == a["model.name"]


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
