"""Shared fixtures: the real-recording folder and an isolated feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: real-recording tests need it")
    return SHARED_DATA


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh feature cache folder, exported as ``TUNE_DIGITS_CACHE``."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TUNE_DIGITS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for the whole session, for tests that only read features (trainings, searches).

    Entries are keyed by their recordings and settings and published whole, so tests can share them; a test
    that damages, counts or looks into cache entries takes ``tmp_cache`` instead.
    """
    return tmp_path_factory.mktemp("features")


@pytest.fixture(autouse=True, scope="session")
def _storage_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The key that signs Ray's pickles in search folders lives in the test's temporary folder, not in ~."""
    import os

    os.environ["TUNE_DIGITS_KEY_FILE"] = str(tmp_path_factory.mktemp("key") / "storage.key")


@pytest.fixture(scope="session")
def contest_runs(tmp_path_factory: pytest.TempPathFactory, feature_cache: Path) -> Path:
    """runs/a (1 epoch) and runs/b (4 epochs) on the demo corpus; b has the higher val F1 (contest tests)."""
    import json

    import torch

    from tune_digits.config import load_config
    from tune_digits.run import train_run

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNE_DIGITS_CACHE", str(feature_cache))
        for name, epochs in (("a", 1), ("b", 4)):
            cfg = load_config(None, [f"train.epochs={epochs}", "train.threads=2", "train.device=cpu"])
            train_run(cfg, root / name, wandb="disabled", progress=False)
    f1 = {n: json.loads((root / n / "metrics.json").read_text())["val_f1"] for n in "ab"}
    assert f1["b"] > f1["a"], f1
    return root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests (real Ray searches, trainings) first, each file's tests kept together: with one test
    process per core (``dev.py test``), the long files start at once instead of ending the run alone."""
    slow_files = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_files)  # stable: order kept within
