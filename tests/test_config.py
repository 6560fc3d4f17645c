"""Config: defaults, YAML (nested and dotted), --set parsing, types, ranges and the round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune_digits.config import (
    Config,
    all_keys,
    flatten,
    from_flat,
    load_config,
    parse_overrides,
    save_config,
    to_dict,
    to_flat,
    with_values,
)
from tune_digits.errors import ConfigError, UserError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_valid_and_documented_values() -> None:
    cfg = load_config()
    assert cfg == Config()
    assert cfg.train.lr == 2e-3 and cfg.features.n_mels == 40 and cfg.model.channels == (6, 16)
    assert cfg.features.f_max <= cfg.audio.sample_rate / 2
    assert len(all_keys()) == len(to_flat(cfg)) and set(all_keys()) == set(to_flat(cfg))


def test_a_bad_setting_is_a_one_line_user_error_with_exit_code_2(tmp_path: Path) -> None:
    """ConfigError travels the CLI's user-error path: one line naming the key, exit 2, nothing written."""
    from typer.testing import CliRunner

    from tune_digits.cli import app

    with pytest.raises(UserError, match=r"^train\.lr: ") as info:
        load_config(None, ["train.lr=-1"])
    assert type(info.value) is ConfigError
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--set", "train.lr=-1", "--out", str(out), "--wandb", "disabled"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train.lr: "), result.output
    assert "Traceback" not in result.output and not out.exists()


def test_yaml_nested_and_dotted_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "train:\n  lr: 0.01\n  epochs: 3\nmodel.channels: [8, 16]\n"
        "features:\n  variant: bilateral\naugment.enabled: true\n",
    )
    cfg = load_config(path)
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3
    assert cfg.model.channels == (8, 16)
    assert cfg.features.variant == "bilateral" and cfg.augment.enabled is True
    assert cfg.train.batch_size == Config().train.batch_size  # untouched keys keep their default


def test_overrides_win_over_the_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "train:\n  lr: 0.01\n")
    assert load_config(path, ["train.lr=0.5"]).train.lr == 0.5


def test_empty_yaml_and_empty_section_give_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "empty.yaml", "")) == Config()
    assert load_config(write(tmp_path / "section.yaml", "train:\n  # lr: 1\n")) == Config()


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="train: expected a mapping"):
        load_config(write(tmp_path / "scalar.yaml", "train: 3\n"))


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("train.lrr", "train.lr"), ("model.chanels", "model.channels"), ("trian.epochs", "train.epochs")],
)
def test_unknown_key_is_named_with_a_suggestion(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_flat({key: 1})
    assert repr(key) in str(info.value) and suggestion in str(info.value)


def test_misspelt_section_in_yaml_gets_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'trian\.lr'.*did you mean train\.lr"):
        load_config(write(tmp_path / "c.yaml", "trian:\n  lr: 0.1\n"))


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    with pytest.raises(ConfigError, match="known keys: data.root"):
        from_flat({"zzzzzz": 1})


@pytest.mark.parametrize("item", ["train.ema=0.999", "augment.mixup=0.3", "augment.gain_db=6", "train.ema=true"])
def test_a_removed_experiment_is_a_one_line_error(item: str) -> None:
    key = item.split("=")[0]
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[item])
    text = str(info.value)
    assert f"unknown config key {key!r}" in text and "removed" in text and "docs/accuracy.md" in text
    assert "\n" not in text and key not in all_keys()


def test_a_saved_run_with_the_removed_experiments_off_still_loads(tmp_path: Path) -> None:
    old = write(tmp_path / "config.yaml", "train:\n  ema: 0.0\n  lr: 0.01\naugment:\n  mixup: 0.0\n  gain_db: 0\n")
    cfg = load_config(old)
    assert cfg == with_values(Config(), {"train.lr": 0.01})
    assert "train.ema" not in to_flat(cfg)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.epochs=2.5", "train.epochs: expected an int"),
        ("train.epochs=true", "train.epochs: expected an int"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("train.lr=.nan", "train.lr: expected a finite number"),
        ("augment.enabled=3", "augment.enabled: expected true or false"),
        ("model.channels=8", "model.channels: expected a list of ints"),
        ("model.channels=[8, 1.5]", "model.channels: expected a list of ints"),
        ("model.channels=[true, 16]", "model.channels: expected a list of ints"),
    ],
)
def test_wrong_types(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[item])


@pytest.mark.parametrize(
    ("item", "key"),
    [
        ("train.lr=0", "train.lr"),
        ("train.lr=-1e-3", "train.lr"),
        ("train.epochs=0", "train.epochs"),
        ("data.val_fraction=1.0", "data.val_fraction"),
        ("model.dropout=1", "model.dropout"),
        ("model.channels=[8, 0]", "model.channels"),
        ("model.kernel_size=4", "model.kernel_size"),
        ("features.variant=sharp", "features.variant"),
        ("features.hop_length=1000", "features.hop_length"),
        ("train.schedule=step", "train.schedule"),
        ("augment.time_shift=0.9", "augment.time_shift"),
        ("audio.sample_rate=100", "audio.sample_rate"),
    ],
)
def test_out_of_range_values_name_the_key(item: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[item])
    assert str(info.value).startswith(f"{key}:")


def test_val_plus_test_fraction_below_one() -> None:
    with pytest.raises(ConfigError, match="val \\+ test must be < 1"):
        load_config(overrides=["data.val_fraction=0.5", "data.test_fraction=0.5"])


def test_f_max_above_nyquist() -> None:
    with pytest.raises(ConfigError, match=r"features\.f_max: must be <= sample_rate / 2 = 4000"):
        load_config(overrides=["features.f_max=6000"])
    with pytest.raises(ConfigError, match="= 2000"):
        load_config(overrides=["audio.sample_rate=4000"])  # the default f_max 4000 is above 2 kHz
    cfg = load_config(overrides=["audio.sample_rate=16000", "features.f_max=8000"])
    assert cfg.features.f_max == 8000.0


def test_set_parsing() -> None:
    values = parse_overrides(["train.lr=3e-4", "model.channels=[8,16]", "augment.enabled=true", "train.epochs=7"])
    assert values == {"train.lr": "3e-4", "model.channels": [8, 16], "augment.enabled": True, "train.epochs": 7}
    cfg = load_config(overrides=["train.lr=3e-4", "model.channels=[8,16]", "train.weight_decay=1e-2"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.model.channels == (8, 16) and cfg.train.weight_decay == pytest.approx(1e-2)


def test_set_scientific_int() -> None:
    assert load_config(overrides=["train.batch_size=1e2"]).train.batch_size == 100


@pytest.mark.parametrize("item", ["foo", "=3", ""])
def test_set_without_key_value(item: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides([item])


def test_set_bad_yaml_value() -> None:
    with pytest.raises(ConfigError, match=r"--set model\.channels line 1"):
        parse_overrides(["model.channels=[8, 16"])


def test_set_text_values_are_literal() -> None:
    cfg = load_config(overrides=["data.root=/data/take: 2 #3", "data.split=becker:1", "model.name='lenet5'"])
    assert cfg.data.root == "/data/take: 2 #3"
    assert cfg.data.split == "becker:1"
    assert cfg.model.name == "lenet5"  # quotes are YAML's


def test_set_empty_value_for_text() -> None:
    assert load_config(overrides=["data.root="]).data.root == ""


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "train:\n  lr: 0.1\n  epochs: [3\nmodel:\n  name: lenet5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "line " in message
    line = int(message.split("line ")[1].split(":")[0])
    assert 3 <= line <= 5  # the unclosed bracket opens on line 3; the parser notices by line 4 or 5
    assert "\n" not in message


def test_round_trip_to_dict_flatten_from_flat() -> None:
    cfg = load_config(
        overrides=[
            "train.lr=0.01",
            "model.channels=[4, 8]",
            "model.fc=[32]",
            "features.variant=bilateral",
            "data.root=/x",
            "augment.enabled=true",
        ]
    )
    assert from_flat(flatten(to_dict(cfg))) == cfg
    assert from_flat(to_flat(cfg)) == cfg


def test_round_trip_through_yaml_file(tmp_path: Path) -> None:
    cfg = load_config(overrides=["train.epochs=3", "model.fc=[64, 32, 16]", "bilateral.sigma_color=4.5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_with_values_keeps_the_base() -> None:
    base = load_config(overrides=["train.epochs=3"])
    cfg = with_values(base, {"train.lr": 0.1})
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.1
    assert base.train.lr == Config().train.lr  # frozen: the base is not changed
    with pytest.raises(ConfigError, match="unknown config key"):
        with_values(base, {"train.nope": 1})


def test_a_model_trained_with_a_removed_experiment_still_loads(tmp_path: Path) -> None:
    from tune_digits.checkpoint import save_checkpoint
    from tune_digits.features import spectrogram_shape
    from tune_digits.inference import build_model, load_model

    cfg = load_config(overrides=["model.channels=[4,8]", "model.fc=[16]"])
    shape = spectrogram_shape(cfg.audio, cfg.features)
    saved = {**to_flat(cfg), "train.ema": 0.998, "augment.mixup": 0.3}  # what such a run's model.pt holds
    save_checkpoint(tmp_path / "model.pt", build_model(cfg, shape).state_dict(), saved, {"input_shape": list(shape)})
    assert load_model(tmp_path).cfg == cfg  # predict and submit can still use it
    with pytest.raises(ConfigError, match="removed"):
        from_flat(saved)  # but training with it again says what happened
