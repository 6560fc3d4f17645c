"""Search-space files for the Ray tests: tiny LeNet-5 settings on the bundled demo corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY = {"model.name": "lenet5", "data.split": "speakers", "model.channels": [4, 8], "model.fc": [32, 16]}


def write_space(
    path: Path, space: dict[str, Any], fixed: dict[str, Any], start: list[dict[str, Any]] | None = None, **search: Any
) -> Path:
    data = {"fixed": {**TINY, **fixed}, "space": space, "search": search} | ({"start": start} if start else {})
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
