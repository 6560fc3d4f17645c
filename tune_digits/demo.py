"""The bundled demo corpus: 320 synthetic spoken digits shipped inside the package.

The recordings live in ``tune_digits/demo_data/recordings`` and are named like the
Free Spoken Digit Dataset (``{digit}_{speaker}_{index}.wav``), so they load with the
same code as FSDD. ``scripts/make_demo_corpus.py`` regenerates them; see
``tune_digits/demo_data/README.md``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tune_digits.errors import DataError

_DEMO_PARTS = ("demo_data", "recordings")


def demo_root() -> Path:
    """Return the real filesystem folder holding the bundled demo recordings.

    Raises :class:`DataError` when the folder is missing (an install without package
    data) or not on a filesystem (a zipped install), since the loaders need real paths.
    """
    path = Path(str(resources.files("tune_digits").joinpath(*_DEMO_PARTS)))
    if not path.is_dir():  # a zipped install has no real path: try next to this module
        path = Path(__file__).resolve().parent.joinpath(*_DEMO_PARTS)
    if not path.is_dir() or not any(path.glob("*.wav")):
        raise DataError(
            f"the bundled demo recordings are missing from {path}: reinstall tune-digits from a wheel or a "
            "source checkout, or pass --data DIR with your own recordings"
        )
    return path
