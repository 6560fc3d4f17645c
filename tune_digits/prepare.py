"""``prepare(cfg)``: scan the corpus, resolve the split and open (or build) the feature cache.

What ``fit`` reads (:class:`Prepared`); a search or a final-eight prepares once in the driver so every
trial finds its features cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tune_digits.config import Config
from tune_digits.corpus import Catalog, Split, make_split, scan, warn_thin_digits
from tune_digits.data import FeatureSet, build_features, corpus_stats
from tune_digits.errors import DataError


@dataclass
class Prepared:
    """A corpus, its split and its cached features: everything ``fit`` reads."""

    catalog: Catalog
    split: Split
    features: FeatureSet
    rows: dict[str, np.ndarray]  # part -> row numbers in features.x
    norm: tuple[float, float] = (0.0, 1.0)  # corpus mean and std (normalize=corpus)


def data_root(cfg: Config) -> Path:
    if cfg.data.root:
        return Path(cfg.data.root).expanduser()
    from tune_digits.demo import demo_root

    return demo_root()


def prepare(cfg: Config, *, progress: bool = False, warn_digits: bool = True) -> Prepared:
    """Scan the corpus, resolve the split and open (or build) the feature cache.

    ``warn_digits``: warn (once per process) when the training split has (almost) no clips of a digit.
    """
    catalog = scan(data_root(cfg))
    d = cfg.data
    split = make_split(catalog, d.split, d.val_fraction, d.test_fraction, d.split_seed, d.val_clips)
    if warn_digits:
        warn_thin_digits(catalog, split)
    fs = build_features(catalog, cfg.audio, cfg.features, cfg.bilateral, strict=cfg.data.strict, progress=progress)
    rows = {part: fs.rows(getattr(split, part)) for part in ("train", "val", "test")}
    for part, found in rows.items():
        if len(found) == 0:
            raise DataError(
                f"split {split.spec!r}: none of the {len(getattr(split, part))} {part} recordings could be read; "
                "fix the recordings or choose another --split"
            )
    norm = corpus_stats(fs.x, rows["train"]) if cfg.features.normalize == "corpus" else (0.0, 1.0)
    return Prepared(catalog, split, fs, rows, norm)
