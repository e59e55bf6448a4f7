"""Where the catalogs the code needs are read from (DESIGN §2: they ship inside the wheel, so that
`pip install egresswatch` works outside a checkout, and the configs directory stays overridable).

In order: the directory named by `EGRESSWATCH_CONFIGS` (a deployment's own catalogs); the checkout's
`configs/` beside the packages (a developer edits those); the copy packaged with the wheel
(`detectors/_configs`, the same files, mapped there by pyproject's package-dir).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["ENV", "configs_dir"]

ENV = "EGRESSWATCH_CONFIGS"
_CHECKOUT = Path(__file__).resolve().parent.parent / "configs"


def configs_dir() -> Path:
    """The directory holding field_types.yaml, important_data.yaml, policy.yaml and the examples."""
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    if (_CHECKOUT / "field_types.yaml").is_file():
        return _CHECKOUT
    return Path(str(resources.files("detectors") / "_configs"))
