"""A trial's settings on their production path: Optuna suggests from the Ray param_space, the trainable decodes.

List values (``model.channels: [[6, 16], [16, 32]]``) travel through Optuna and Ray as JSON strings; the
trial turns them back into lists before it builds its config. ``space.decode`` is not on that path, so this
drives the real one: the shipped search space, Ray's OptunaSearch with its ``start:`` points, and the
trainable's ``trial_config``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tune_digits.config import to_flat
from tune_digits.search import _list_keys
from tune_digits.space import contains, encode, load_space, to_tune
from tune_digits.tuning import TrialContext, trial_config

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
    ctx = TrialContext(to_flat(base), str(tmp_path), group="g", list_keys=_list_keys(space))
    assert ctx.list_keys == ("model.channels",)
    channels = set()
    for params in suggested:
        assert isinstance(params["model.channels"], str)  # what arrives in the trainable: a JSON string
        cfg = trial_config(ctx, params)
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
    ctx = TrialContext({}, str(tmp_path), group="e", bases={"A": a, "B": b})
    cfg = trial_config(ctx, {"arm": "B", "features.variant": "bilateral", "augment.enabled": False, "train.seed": 2})
    assert (cfg.model.name, cfg.model.lifter, cfg.features.variant, cfg.augment.enabled, cfg.train.seed) == (
        "resnet20",
        20,
        "bilateral",
        False,
        2,
    )
    assert trial_config(ctx, {"arm": "A"}).model.name == a["model.name"]
