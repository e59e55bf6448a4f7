"""Input files, read and validated one way: the YAML loader, the strict model base, the location formatter
and the root of every "bad input" error, shared by the agent, the collector and the detectors.

    InputError                     bad input: a file, a field, an option; `str()` is one line
     ├── agent.config.ConfigError, agent.capture.CaptureFormatError
     ├── collector.config.CollectorConfigError, collector.models.FilingError
     ├── collector.negative_lists.NegativeListError, detectors.catalog.CatalogError
     └── (the command lines' own usage errors)

A command line catches `InputError` (one line, exit 2) and nothing wider: any other exception is a bug and
is reported as one. Messages read `FILE: field.path[0].key: what is wrong`; the whole document is
`(top level)`; a list item with an `id` is named by it too (`field_types[3] (bank_card).patterns[0]`).

Lives in `detectors` because the agent and the collector both import it already and it imports neither:
nothing here may import `agent` or `collector`. Files are parsed by detectors/safeyaml.py under
`FILE_CAPS` whoever wrote them (a config, a filing, a catalog named by EGRESSWATCH_CONFIGS): a hostile file
fails in one line instead of a freeze or a traceback, for ~6 ms more per catalog than PyYAML's C loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from detectors.safeyaml import FILE_CAPS, Caps, SafeYamlError
from detectors.safeyaml import load as _load

__all__ = ["TOP", "InputError", "PathIssue", "Strict", "describe", "location", "problem", "read_yaml",
           "validate"]

TOP = "(top level)"
_LABEL_MAX = 40

M = TypeVar("M", bound=BaseModel)


class InputError(ValueError):
    """Input the program cannot use; `str()` is one line naming the source and where in it."""

    @classmethod
    def at(cls, source: Path | str, where: str | None, detail: str) -> Self:
        """`SOURCE: where: detail` (`SOURCE: detail` without a location)."""
        return cls(f"{source}: {where}: {detail}" if where else f"{source}: {detail}")


class PathIssue(ValueError):
    """Raised inside a validator for a problem deeper than the validator's own location: `loc` is appended
    to it (a model validator that finds `scenarios[1].recipients[0]` wrong says so)."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


class Strict(BaseModel):
    # Unknown keys are typos far more often than extensions: reject them with their path. Frozen: a
    # validated config is not edited behind its validation.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _label(item: Any) -> str:
    ident = item.get("id") if isinstance(item, Mapping) else None
    if isinstance(ident, str | int) and not isinstance(ident, bool):
        text = str(ident)
        return f" ({text if len(text) <= _LABEL_MAX else text[:_LABEL_MAX] + '…'})"
    return ""


def location(loc: tuple[str | int, ...] | list[str | int], data: Any = None) -> str:
    """`scenarios[1].recipients[0]` from a pydantic location; `data` (the document as read) names list
    items by their `id`. The empty location is the whole document: `(top level)`."""
    out = ""
    node = data
    for part in loc:
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        if isinstance(part, int):
            out += f"[{part}]{_label(node)}"
        else:
            out += ("." if out else "") + str(part)
    return out or TOP


def problem(err: ValidationError, data: Any = None) -> tuple[str, str]:
    """(location, message) of the first error of `err`, with a count of the others."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    msg = first["msg"]
    issue = (first.get("ctx") or {}).get("error")
    if isinstance(issue, PathIssue):
        loc, msg = loc + issue.loc, issue.msg
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return location(loc, data), " ".join(msg.split()) + more


def describe(err: ValidationError, data: Any = None) -> str:
    """The first error as `field.path: message` (plus a count of the rest): one line."""
    where, msg = problem(err, data)
    return f"{where}: {msg}"


def validate(model: type[M], data: Any, source: Path | str, error: type[InputError]) -> M:
    """`model.model_validate(data)`; the first problem becomes one `error` naming `source` and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise error.at(source, *problem(e, data)) from None


def read_yaml(path: Path | str, error: type[InputError] = InputError, caps: Caps = FILE_CAPS, *,
              what: str = "", empty_ok: bool = False) -> dict[str, Any]:
    """Parse the YAML mapping in `path` under `caps` (size, depth, aliases); I/O, syntax, cap and shape
    problems become one `error` naming the file. `what` completes "expected a mapping…"; `empty_ok`: an
    empty file is an empty mapping (a config whose every key is optional)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(caps.max_bytes + 1)   # never more than the cap into memory, even from a FIFO
        data = _load(raw, caps)
    except OSError as e:
        raise error.at(path, None, f"cannot read: {e.strerror or type(e).__name__}") from None
    except SafeYamlError as e:
        raise error.at(path, None, str(e)) from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise error.at(path, TOP, f"expected a mapping{' ' + what if what else ''}")
    return data
