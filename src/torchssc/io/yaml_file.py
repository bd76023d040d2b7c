"""One YAML file read with errors that name it (dataset specs, the weights registry)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def read_yaml_file(path: str | os.PathLike, what: str) -> Any:
    """``yaml.safe_load`` of the file at ``path`` (``None`` for an empty file).

    Raises:
        FileNotFoundError: ``"<path>: no such <what> file"``.
        ValueError: ``"<path>: not valid YAML (...)"``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
