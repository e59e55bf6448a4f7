"""The capped YAML loader moved to detectors/safeyaml.py, beside the one input loader (detectors/inputs.py)
that the agent, the collector and the detectors share; these names stay importable from here."""

from __future__ import annotations

from detectors.safeyaml import FILE_CAPS, HARD_MAX_DEPTH, Caps, SafeYamlError, load

__all__ = ["FILE_CAPS", "HARD_MAX_DEPTH", "Caps", "SafeYamlError", "load"]
