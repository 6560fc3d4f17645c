"""The run folder has one owner (``tune_digits.run_folder``); the package has no import cycle and no module
imports one of a higher layer in docs/architecture.md."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from tune_digits.config import load_config
from tune_digits.corpus import Split
from tune_digits.run_folder import NotARun, Predictions, read_run, split_digest, write_run

PACKAGE = Path(__file__).resolve().parents[1] / "tune_digits"
SPLIT = Split("speakers", ("a/1_a_0.wav",), ("b/2_b_0.wav",), ("c/3_c_0.wav",))


def _write(folder: Path, **kw: object) -> None:
    cfg = load_config(None, ["model.channels=[4,8]"])
    metrics = {"val_f1": 0.5, "val_loss": 1.0, "num_parameters": 3}
    preds = Predictions(["=3_c_0.wav"], [3], [4], [0.25])
    weights = {"w": torch.ones(2)}
    write_run(folder, cfg, metrics, kind="train", split=SPLIT, model=weights, data_root="/d", predictions=preds, **kw)
    if kw.get("own_split", True):
        write_run(folder / "again", cfg, metrics, kind="train", split=SPLIT, model=folder / "model.pt", data_root="/d")


def test_written_run_reads_back_with_its_split_and_meta(tmp_path: Path) -> None:
    _write(tmp_path / "r", trial_id="t1")
    run = read_run(tmp_path / "r")
    assert run.metrics["val_f1"] == 0.5 and run.split_digest == split_digest(SPLIT)
    assert run.split_file == tmp_path / "r" / "split.json" and run.model_path.is_file()
    assert run.meta["kind"] == "train" and run.meta["trial_id"] == "t1" and run.meta["data_root"] == "/d"
    assert run.config["model"]["channels"] == [4, 8] and run.load_config().model.channels == (4, 8)
    assert run.predictions_path is not None
    assert run.predictions_path.read_text().splitlines() == [
        "file,label,predicted,probability",
        "'=3_c_0.wav,3,4,0.250000",
    ]
    assert torch.load(run.model_path, weights_only=True)["state_dict"]["w"].tolist() == [1.0, 1.0]
    copy = read_run(tmp_path / "r" / "again")
    assert copy.model_path.read_bytes() == run.model_path.read_bytes()  # a model.pt copied as it is


def test_a_trial_finds_the_split_above_it_only_up_to_the_root(tmp_path: Path) -> None:
    search = tmp_path / "search"
    _write(search / "trials" / "t1", own_split=False)
    (search / "split.json").write_text(json.dumps(SPLIT.to_json()))
    assert read_run(search / "trials" / "t1", root=tmp_path).split_file == search / "split.json"
    assert read_run(search / "trials" / "t1").split_file is None  # default root: the folder itself


def test_an_old_folder_with_unknown_config_keys_still_reads(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"x")
    (folder / "config.yaml").write_text("train:\n  retired_setting: 1\ndata:\n  split: split.json\n")
    (folder / "split.json").write_text("{}")
    (folder / "metrics.json").write_text('{"val_f1": 0.7}')
    (folder / "run.json").write_text('{"split_digest": "abc", "created": "2020-01-01T00:00:00Z"}')
    run = read_run(folder)
    assert (run.split_digest, run.created, run.metrics["val_f1"]) == ("abc", "2020-01-01T00:00:00Z", 0.7)
    (folder / "run.json").unlink()
    with pytest.raises(NotARun, match="no run.json"):
        read_run(folder)


def _imports(path: Path, modules: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tune_digits"):
            named = {f"{node.module}.{a.name}" for a in node.names}
            found |= ({node.module} | named) & modules
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & modules
    return found


def test_no_module_imports_another_in_a_cycle() -> None:
    """Imports inside functions count: a cycle is a cycle however late it closes."""
    files = {".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in PACKAGE.rglob("*.py")}  # fmt: skip
    graph = {m: {t for t in _imports(f, set(files)) if t != m and not t.startswith(m + ".")} for m, f in files.items()}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


def _layers() -> dict[str, int]:
    """Module -> layer, read from the layer table of docs/architecture.md (a package row covers its modules)."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    layers = {}
    for number, cell in re.findall(r"^\| (\d) \| (.+?) \|", text, re.MULTILINE):
        for name in re.findall(r"`([\w/]+\.py|[\w]+/)`", cell):
            layers["tune_digits." + name.removesuffix(".py").removesuffix("/")] = int(number)
    return layers


def test_every_module_is_in_the_layer_table_and_imports_no_higher_layer() -> None:
    """docs/architecture.md's table is the layering: a module missing from it, or one that imports a module of
    a higher layer (inside functions too), fails here."""
    layers = _layers()
    files = {".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in PACKAGE.rglob("*.py") if f.parent != PACKAGE or f.stem != "__init__"}  # fmt: skip

    def layer(module: str) -> int | None:
        parts = module.split(".")
        found = [layers[".".join(parts[:n])] for n in range(len(parts), 1, -1) if ".".join(parts[:n]) in layers]
        return found[0] if found else None

    assert [m for m in files if layer(m) is None] == []
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, f in files.items()
        for t in _imports(f, set(files))
        if (layer(t) or 0) > (layer(m) or 0)
    ]
    assert upward == []


def test_a_training_counts_as_finished_only_once_its_run_json_is_written(tmp_path: Path) -> None:
    """What a final-eight trial restarted after a kill checks before training again (tuning.trainable)."""
    from tune_digits.run_folder import finished_epoch

    records = [{"epoch": 1, "val_f1": 0.5}, {"epoch": 2, "val_f1": 0.75}]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert finished_epoch(tmp_path) is None  # killed while writing its folder: train again
    (tmp_path / "run.json").write_text("{}", encoding="utf-8")
    assert finished_epoch(tmp_path) == records[-1]
