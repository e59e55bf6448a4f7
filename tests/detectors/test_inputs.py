"""One loader, one location wording, one error root for every input file (detectors/inputs.py), and the
catalog's validator/normalizer/masker names taken from the registries themselves."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.capture import CaptureFormatError
from agent.config import ConfigError, load_agent_config
from collector.config import CollectorConfigError, load_collector_config
from collector.models import FilingError, load_filing
from collector.negative_lists import NegativeListError, load_negative_list
from detectors.catalog import REGISTRIES, CatalogError, load_catalog, load_important_data, load_policy
from detectors.inputs import TOP, InputError, PathIssue, Strict, describe, location
from detectors.masking import MASKERS
from detectors.subjects import NORMALIZERS
from detectors.validators import VALIDATORS

from .conftest import CONFIGS

REPO = Path(__file__).resolve().parents[2]

LOADERS: list[tuple[Callable[[Path], object], type[InputError]]] = [
    (load_agent_config, ConfigError), (load_collector_config, CollectorConfigError),
    (load_filing, FilingError), (load_negative_list, NegativeListError), (load_catalog, CatalogError),
    (load_policy, CatalogError), (load_important_data, CatalogError),
]
IDS = [f.__name__ for f, _ in LOADERS]


def test_every_input_error_derives_from_the_one_root() -> None:
    for error in {e for _, e in LOADERS} | {CaptureFormatError}:
        assert issubclass(error, InputError), error


@pytest.mark.parametrize(("load", "error"), LOADERS, ids=IDS)
def test_a_document_that_is_not_a_mapping_is_named_the_same_way_by_every_loader(
        tmp_path: Path, load: Callable[[Path], object], error: type[InputError]) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(error) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: {TOP}: expected a mapping"), str(e.value)


@pytest.mark.parametrize(("load", "error"), LOADERS, ids=IDS)
def test_a_missing_or_broken_file_is_one_line_naming_it_for_every_loader(
        tmp_path: Path, load: Callable[[Path], object], error: type[InputError]) -> None:
    with pytest.raises(error, match=re.escape(f"{tmp_path / 'nope.yaml'}: cannot read: No such file")):
        load(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1,\n", encoding="utf-8")
    with pytest.raises(error, match=re.escape(f"{broken}: line ")):
        load(broken)


@pytest.mark.parametrize(("load", "error"), LOADERS, ids=IDS)
def test_an_alias_bomb_is_refused_by_every_loader(
        tmp_path: Path, load: Callable[[Path], object], error: type[InputError]) -> None:
    # Each loader reads through the capped loader: billions of nodes are never built.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(error, match="aliases"):
        load(path)


def test_an_unknown_key_is_named_by_its_path_in_every_config(tmp_path: Path) -> None:
    cases: list[tuple[Callable[[Path], object], str, str]] = [
        (load_agent_config, "limits: {max_flow: 3}\n", "limits.max_flow: Extra inputs are not permitted"),
        (load_collector_config, "listen: {hots: x}\n", "listen.hots: Extra inputs are not permitted"),
        (load_policy, "sensitive_override: {}\n", "sensitive_override: Extra inputs are not permitted"),
    ]
    for load, text, expected in cases:
        path = tmp_path / "c.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError) as e:
            load(path)
        assert str(e.value) == f"{path}: {expected}"


def test_location_names_lists_by_index_and_items_by_their_id() -> None:
    data = {"field_types": [{"id": "a"}, {"id": "bank_card", "patterns": [{"name": "p"}]}]}
    assert location(()) == TOP
    assert location(("scenarios", 1, "recipients", 0)) == "scenarios[1].recipients[0]"
    assert location(("field_types", 1, "patterns", 0, "regex"), data) == \
        "field_types[1] (bank_card).patterns[0].regex"
    assert location(("field_types", 7, "id"), data) == "field_types[7].id"    # beyond the list: no label


class _Inner(Strict):
    n: int


class _Doc(Strict):
    items: list[_Inner]


def test_describe_is_one_line_with_the_count_of_the_others() -> None:
    with pytest.raises(ValidationError) as e:
        _Doc.model_validate({"items": [{"n": "x"}, {"n": "y"}], "extra": 1})
    assert describe(e.value).startswith("items[0].n: Input should be a valid integer")
    assert describe(e.value).endswith("(and 2 more)")
    assert PathIssue(("a", 0), "m").loc == ("a", 0)


def _entry_with(tmp_path: Path, kind: str, name: str) -> Path:
    """The bundled catalog with the mobile entry's `kind` set to `name`."""
    text = (CONFIGS / "field_types.yaml").read_text(encoding="utf-8")
    old = {"validator": "validator: luhn", "normalizer": "normalizer: mobile",
           "masker": "masker: mobile"}[kind]
    assert old in text
    path = tmp_path / f"{kind}-{name}.yaml"
    path.write_text(text.replace(old, f"{kind}: {name}", 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("kind", "registry"), [("validator", VALIDATORS), ("normalizer", NORMALIZERS),
                                                ("masker", MASKERS)])
def test_the_catalog_accepts_exactly_the_registered_names(tmp_path: Path, kind: str, registry: dict) -> None:
    assert REGISTRIES[kind] is registry
    for name in registry:
        load_catalog(_entry_with(tmp_path, kind, name))
    with pytest.raises(CatalogError, match=f"unknown {kind} 'not_registered'"):
        load_catalog(_entry_with(tmp_path, kind, "not_registered"))


def test_no_module_keeps_its_own_strict_base_or_location_formatter() -> None:
    for package in ("agent", "collector", "detectors"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            own = [n.name for n in ast.walk(tree)
                   if isinstance(n, ast.ClassDef) and n.name in ("_Strict", "Strict")]
            assert not own or path.name == "inputs.py", path
            text = path.read_text(encoding="utf-8")
            assert '"(top)"' not in text and 'or "root"' not in text, path


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_shared_pieces_import_neither_agent_nor_collector_and_the_cli_modules_no_cycle() -> None:
    for path in (REPO / "detectors").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("agent", "collector")}
        assert not bad, (path, bad)
    assert not {m for m in _imports(REPO / "collector" / "cli_service.py") if m.startswith("collector.cli")
                and not m.startswith("collector.cli_common")}
    assert "collector.cli_service" not in _imports(REPO / "collector" / "cli_common.py")
