"""Search-space parsing: strict validation and the mapping to Ray Tune and Optuna."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tune_digits.errors import ConfigError, UserError
from tune_digits.space import decode, encode, list_keys, load_space, parse_space, to_optuna, to_tune

GOOD = {
    "fixed": {"model.name": "lenet5", "train": {"patience": 3}},
    "space": {
        "train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
        "model.channels": {"type": "choice", "values": [[6, 16], [16, 32]]},
        "augment.freq_masks": {"type": "int", "low": 0, "high": 3},
        "model.dropout": {"type": "quantized", "low": 0.0, "high": 0.5, "q": 0.1},
    },
    "search": {"num_samples": 3, "max_epochs": 2},
}


def _with(section: str, key: str, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    data[section][key] = value
    return data


def test_good_space_parses_with_fixed_and_settings() -> None:
    space = parse_space(GOOD)
    assert [d.key for d in space.dims] == ["train.lr", "model.channels", "augment.freq_masks", "model.dropout"]
    assert space.fixed == {"model.name": "lenet5", "train.patience": 3}
    assert space.search.num_samples == 3 and space.search.max_epochs == 2
    assert space.base_config().train.patience == 3


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("space", "train.lrr", {"type": "uniform", "low": 0.1, "high": 0.2}, "train.lr"),
        ("space", "train.lr", {"type": "gaussian", "low": 0.1, "high": 0.2}, "unknown distribution"),
        ("space", "train.lr", {"type": "uniform", "low": 0.3, "high": 0.2}, "above high"),
        ("space", "train.lr", {"type": "uniform", "low": "a", "high": 0.2}, "expected a number"),
        ("space", "train.batch_size", {"type": "choice", "values": []}, "non-empty list"),
        ("space", "train.lr", {"type": "loguniform", "low": 0.0, "high": 0.2}, "log scale"),
        ("space", "train.lr", {"type": "uniform", "low": 0.1, "high": 0.2, "step": 1}, "unknown field"),
        ("space", "model.dropout", {"type": "uniform", "low": 0.0, "high": 1.5}, "not allowed"),
        ("space", "augment.freq_masks", {"type": "int", "low": 0.5, "high": 3}, "expected an int"),
        ("search", "num_sample", 3, "unknown setting"),
        ("search", "num_samples", "many", "expected int"),
        ("search", "mode", "sideways", "search.mode"),
        ("fixed", "train.lr", -1, "train.lr"),
        ("fixed", "train.nope", 1, "unknown config key"),
    ],
)
def test_invalid_spaces_are_one_line_errors_naming_the_key(section: str, key: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space(_with(section, key, value))
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_section_and_empty_space_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown section"):
        parse_space({**GOOD, "tune": {}})
    with pytest.raises(ConfigError, match="space section is empty"):
        parse_space({**GOOD, "space": {}})


def test_yaml_syntax_error_reports_the_line(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("space:\n  train.lr: {type: uniform, low: 1\n  model.dropout: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+"):
        load_space(path)


def test_missing_space_file_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_space(tmp_path / "nope.yaml")


def test_tune_and_optuna_spaces_cover_every_dimension() -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    space = parse_space(GOOD)
    tune_space = to_tune(space)
    assert isinstance(tune_space["train.lr"], Float)
    assert isinstance(tune_space["augment.freq_masks"], Integer)
    assert isinstance(tune_space["model.channels"], Categorical)
    assert tune_space["model.channels"].categories == ["[6, 16]", "[16, 32]"]  # Optuna needs scalars
    dists = to_optuna(space)
    assert set(dists) == set(tune_space)
    assert dists["train.lr"].log is True and dists["augment.freq_masks"].high == 3


@given(st.lists(st.integers(min_value=1, max_value=512), min_size=1, max_size=4))
def test_list_choices_round_trip_through_encoding(values: list[int]) -> None:
    space = parse_space(_with("space", "model.fc", {"type": "choice", "values": [values, [7]]}))
    assert decode({"model.fc": encode(values)}, list_keys(space)) == {"model.fc": values}


def test_shipped_spaces_are_valid() -> None:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "search_spaces"
    names = sorted(p.name for p in folder.glob("*.yaml"))
    assert {"lenet.yaml", "timm.yaml", "demo.yaml"} <= set(names)
    for path in folder.glob("*.yaml"):
        space = load_space(path)
        assert space.dims, path
    timm_names = next(d for d in load_space(folder / "timm.yaml").dims if d.key == "model.name").values
    families = ("efficientnet", "mobilenet", "resnet", "densenet", "inception")
    assert all(any(str(n).startswith(f) for n in timm_names) for f in families)


def test_start_points_are_completed_from_fixed_and_defaults() -> None:
    data = {**GOOD, "start": [{}, {"train.lr": 0.005, "model.channels": [16, 32]}, None]}
    data["fixed"] = {**GOOD["fixed"], "model.dropout": 0.2}
    space = parse_space(data)
    assert space.start[0] == {
        "train.lr": 0.002,
        "model.channels": [6, 16],
        "augment.freq_masks": 2,
        "model.dropout": 0.2,
    }
    assert space.start[1]["train.lr"] == 0.005 and space.start[1]["model.channels"] == [16, 32]
    assert space.start[2] == space.start[0]
    assert parse_space(GOOD).start == ()
    # every point is a legal Optuna/Ray value of its dimension once encoded
    tune = to_tune(space)
    for point in space.start:
        assert set(point) == set(tune)
        assert encode(point["model.channels"]) in tune["model.channels"].categories


@pytest.mark.parametrize(
    ("start", "needle"),
    [
        ([{"train.epochs": 3}], "start[1].train.epochs: not a searched key"),
        ([{}, {"train.lr": 0.5}], "start[2].train.lr: 0.5 is outside"),
        ([{"model.channels": [8, 8]}], "start[1].model.channels: [8, 8] is outside"),
        ([{"model.dropout": 0.25}], "start[1].model.dropout: 0.25 is outside"),  # off the q=0.1 grid
        ([{"augment.freq_masks": 1.5}], "is outside"),
        ({"train.lr": 0.001}, "expected a list of mappings"),
    ],
)
def test_bad_start_points_are_one_line_errors(start: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space({**GOOD, "start": start})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_start_needs_a_value_when_the_default_is_outside_the_space() -> None:
    data = _with("space", "train.lr", {"type": "loguniform", "low": 1e-2, "high": 1e-1})  # default 0.002 is below
    with pytest.raises(ConfigError, match=r"start\[1\]\.train\.lr: its fixed or default value 0.002"):
        parse_space({**data, "start": [{}]})
    assert parse_space({**data, "start": [{"train.lr": 0.02}]}).start[0]["train.lr"] == 0.02


def test_set_search_settings_like_any_other_section() -> None:
    from tune_digits.config import load_config, parse_overrides

    space, base = parse_space(GOOD).with_overrides(parse_overrides(["search.num_samples=4", "train.lr=0.01"]))
    assert space.search.num_samples == 4 and base.search.num_samples == 4
    assert space.search.max_epochs == 2  # the space's own search section stays under the override
    assert base.train.lr == 0.01 and base.train.patience == 3
    assert load_config(overrides=["search.max_epochs=7"]).search.max_epochs == 7
    with pytest.raises(ConfigError, match=r"^unknown config key 'search\.num_sample'; did you mean search\.num_s"):
        parse_space(GOOD).with_overrides(parse_overrides(["search.num_sample=4"]))
    with pytest.raises(ConfigError, match=r"^search\.num_samples: must be >= 1, got 0$"):
        parse_space(GOOD).with_overrides({"search.num_samples": 0})


def test_search_settings_are_not_fixed_or_searched() -> None:
    with pytest.raises(ConfigError, match="search settings go in the search section"):
        parse_space(_with("fixed", "search.num_samples", 4))
    with pytest.raises(ConfigError, match="space.search.seed: unknown config key"):
        parse_space(_with("space", "search.seed", {"type": "choice", "values": [0, 1]}))


def test_cli_search_with_an_unknown_search_setting_is_one_line(tmp_path, tmp_cache) -> None:
    from typer.testing import CliRunner

    from tune_digits.cli import app

    demo = Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml"
    args = ["search", "--space", str(demo), "--storage", str(tmp_path / "runs"), "--wandb", "disabled"]
    result = CliRunner().invoke(app, [*args, "--set", "search.num_sampels=4"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    needle = "error: unknown config key 'search.num_sampels'; did you mean search.num_samples"
    assert len(lines) == 1 and lines[0].startswith(needle), result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


SNAPSHOTS = Path(__file__).resolve().parent / "data" / "space_snapshots.json"


@pytest.mark.parametrize("name", ["lenet.yaml", "timm.yaml"])
def test_spaces_that_extend_a_preset_resolve_as_their_old_copies_did(name: str) -> None:
    """The snapshot is what these files resolved to when they copied their preset's settings into fixed."""
    import json
    from dataclasses import asdict

    from tune_digits.config import to_flat

    old = json.loads(SNAPSHOTS.read_text(encoding="utf-8"))[name]
    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / name)
    assert "extends" in (Path(__file__).resolve().parents[1] / "search_spaces" / name).read_text(encoding="utf-8")
    resolved = to_flat(space.base_config())
    for key, value in old["config"].items():
        assert resolved[key] == value, key
    assert json.loads(json.dumps([asdict(d) for d in space.dims])) == old["dims"]
    assert [dict(p) for p in space.start] == old["start"] and asdict(space.search) == old["search"]


def test_extends_takes_the_preset_but_not_its_data_settings() -> None:
    from tune_digits.config import preset_values

    data = {"extends": "lenet5", "fixed": {"train.epochs": 9}, "space": GOOD["space"]}
    space = parse_space(data)
    preset = preset_values("lenet5")
    assert preset["data.val_clips"] > 0 and "data.val_clips" not in space.fixed
    assert space.base_config().data.val_clips == 0.0 and space.base_config().train.epochs == 9  # fixed wins
    assert space.fixed["augment.freq_warp"] == preset["augment.freq_warp"]
    with pytest.raises(ConfigError, match=r"^space: extends: unknown preset 'lenet6'; presets: .*lenet5"):
        parse_space({**data, "extends": "lenet6"})
    with pytest.raises(ConfigError, match="extends must name a preset"):
        parse_space({**data, "extends": ["lenet5"]})
