"""Load and validate the field-type catalog (configs/field_types.yaml), the policy (configs/policy.yaml)
and the important-data catalogue (configs/important_data.yaml, the Measures' appendix).

The catalog is data: every field type, its key hints, context words, patterns and the names of the
validator, normalizer and masker that apply to it. Adding a type is adding an entry here, not code.
Everything is validated once, at load time; a problem becomes one `CatalogError` line that names the file
and the entry (never a value seen in traffic: configs hold no PI).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

import regex
from pydantic import BaseModel, Field, field_validator

from detectors.inputs import InputError, Strict, read_yaml, validate
from detectors.masking import MASKERS
from detectors.subjects import NORMALIZERS
from detectors.validators import VALIDATORS

ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# The names an entry may give are the registries' own keys: an entry naming anything else is an error at
# load time, not a KeyError later, and a new validator is usable once it is registered.
REGISTRIES: dict[str, Mapping[str, object]] = {"validator": VALIDATORS, "normalizer": NORMALIZERS,
                                               "masker": MASKERS}


class CatalogError(InputError):
    """A config file is missing or wrong; `str()` is one line naming the file and the entry."""

    def __init__(self, path: Path | str, entry: str | None, detail: str) -> None:
        self.path = str(path)
        self.entry = entry or ""
        self.detail = " ".join(detail.split())
        super().__init__(f"{self.path}: {entry}: {self.detail}" if entry else f"{self.path}: {self.detail}")

    @classmethod
    def at(cls, source: Path | str, where: str | None, detail: str) -> Self:
        return cls(source, where, detail)


class PatternSpec(Strict):
    """One regex of a field type. `scope`: where it applies — `keyed` only to values under a key hint of
    the type, `free` only to values without one, `any` to both."""

    name: str
    regex: str
    score: float = Field(ge=0.0, le=1.0)
    scope: Literal["any", "keyed", "free"] = "any"


class FieldType(Strict):
    id: str
    name_zh: str
    name_en: str
    pi: bool
    sensitive: bool
    identifier: bool
    important_subcategory: str | None = None
    format: str | None = None
    # Arbitration: when two types claim overlapping spans, the higher priority wins (resident ID > card).
    priority: int = 0
    validator: str | None = None
    normalizer: str = "plain"
    masker: str = "generic"
    # A free (unkeyed) match counts only with a key hint, a context word or one of accept_prefixes.
    requires_context: bool = False
    accept_prefixes: tuple[str, ...] = ()
    key_hints: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    # Key path segments above the leaf that mean "not this type" (`$.items[*].name` is a product).
    exclude_parent_hints: tuple[str, ...] = ()
    patterns: tuple[PatternSpec, ...] = ()
    # Hyperscan-compatible expressions that flag a value for the free patterns; default: the free patterns.
    prefilter: tuple[str, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError("id must be lower_snake_case")
        return v

    @field_validator("accept_prefixes", mode="before")
    @classmethod
    def _prefixes_as_text(cls, v: Any) -> Any:
        # YAML reads 622202 as an int; a BIN is a string of digits.
        return [str(x) for x in v] if isinstance(v, list | tuple) else v

    @field_validator("important_subcategory")
    @classmethod
    def _subcategory(cls, v: str | None) -> str | None:
        if v is not None and not (v.isdigit() and 1 <= int(v) <= 40):
            raise ValueError('important_subcategory must be "1".."40"')
        return v

    def free_patterns(self) -> tuple[PatternSpec, ...]:
        return tuple(p for p in self.patterns if p.scope in ("any", "free"))

    def keyed_patterns(self) -> tuple[PatternSpec, ...]:
        return tuple(p for p in self.patterns if p.scope in ("any", "keyed"))


class Scoring(Strict):
    key_bonus: float = 0.35
    context_bonus: float = 0.2
    negative_key_factor: float = 0.3
    context_window: int = 16


class Catalog(Strict):
    version: int = 1
    scoring: Scoring = Scoring()
    # Keys whose values are business identifiers, never PI: a mobile-shaped orderNo is an order number.
    non_pi_key_hints: tuple[str, ...] = ()
    field_types: tuple[FieldType, ...]

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(ft.id for ft in self.field_types)

    def get(self, field_id: str) -> FieldType:
        for ft in self.field_types:
            if ft.id == field_id:
                return ft
        raise KeyError(field_id)


class Policy(Strict):
    """Switches where the rules disagree (documented in configs/policy.yaml)."""

    resident_id_is_sensitive: bool = True
    min_confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    sensitive_overrides: dict[str, bool] = Field(default_factory=dict)

    def is_sensitive(self, ft: FieldType) -> bool:
        if ft.id in self.sensitive_overrides:
            return self.sensitive_overrides[ft.id]
        if ft.id == "resident_id_cn":
            return self.resident_id_is_sensitive
        return ft.sensitive


def _check_entry(path: Path, ft: FieldType, index: int) -> None:
    entry = f"field_types[{index}] ({ft.id})"
    for name, value in (("validator", ft.validator), ("normalizer", ft.normalizer), ("masker", ft.masker)):
        if value is not None and value not in REGISTRIES[name]:
            raise CatalogError(path, f"{entry}.{name}", f"unknown {name} {value!r}")
    for j, pat in enumerate(ft.patterns):
        try:
            regex.compile(pat.regex)
        except regex.error as exc:
            raise CatalogError(path, f"{entry}.patterns[{j}] ({pat.name})", f"bad regex: {exc}") from None
    for j, expr in enumerate(ft.prefilter):
        try:
            regex.compile(expr)
        except regex.error as exc:
            raise CatalogError(path, f"{entry}.prefilter[{j}]", f"bad regex: {exc}") from None


_M = TypeVar("_M", bound=BaseModel)


def _load_model(path: Path, model: type[_M], what: str, empty_ok: bool = False) -> _M:
    """Read a YAML config and validate it as `model`; the first problem becomes one `CatalogError` line
    naming the file and the entry (`field_types[3] (bank_card).patterns[0].regex`)."""
    return validate(model, read_yaml(path, CatalogError, what=what, empty_ok=empty_ok), path, CatalogError)


def load_catalog(path: Path | str) -> Catalog:
    """Read and validate the catalog; raise `CatalogError` naming the file and entry on any problem."""
    path = Path(path)
    catalog = _load_model(path, Catalog, "with field_types")
    seen: set[str] = set()
    for i, ft in enumerate(catalog.field_types):
        if ft.id in seen:
            raise CatalogError(path, f"field_types[{i}] ({ft.id})", "duplicate id")
        seen.add(ft.id)
        _check_entry(path, ft, i)
    return catalog


def load_policy(path: Path | str, catalog: Catalog | None = None) -> Policy:
    """Read and validate the policy; with a catalog, ids in sensitive_overrides must exist in it."""
    path = Path(path)
    policy = _load_model(path, Policy, "of switches", empty_ok=True)
    if catalog is not None:
        for fid in policy.sensitive_overrides:
            if fid not in catalog.ids:
                raise CatalogError(path, f"sensitive_overrides.{fid}", "unknown field type id")
    return policy


# --- important data (configs/important_data.yaml) ---------------------------------------------------------
# The Measures' appendix 《中国（浙江）自由贸易试验区数据分类分级参考规则》: 13 categories, 40 sub-categories
# whose ids "1".."40" are fixed (DESIGN §4). Hits are candidates; detectability F carries no rule.

IMPORTANT_IDS = tuple(str(i) for i in range(1, 41))
IMPORTANT_CATEGORIES = 13


class CooccurrenceRule(Strict):
    """When words and field names make a candidate (a signature with `alone` always does)."""

    min_distinct_terms: int = Field(default=2, ge=1)       # distinct keywords (weak signatures count)
    min_distinct_key_hints: int = Field(default=2, ge=1)   # distinct key hints among the key paths
    key_hint_with_terms: int | None = Field(default=1, ge=1)  # one key hint plus this many terms; null = off


class RuleOverride(Strict):
    min_distinct_terms: int | None = Field(default=None, ge=1)
    min_distinct_key_hints: int | None = Field(default=None, ge=1)
    key_hint_with_terms: int | None = Field(default=None, ge=1)


class SignatureSpec(Strict):
    """A file/format signature on the raw body: `magic` (latin-1 string of bytes) at `offset`, and/or a bytes
    `regex` searched in the first `window` bytes; both must hold when both are given."""

    name: str
    magic: str | None = None
    offset: int = Field(default=0, ge=0, le=65536)
    regex: str | None = None
    window: int = Field(default=4096, ge=1, le=1 << 20)
    alone: bool = True    # False: a weak signature, one term towards the co-occurrence rule

    def magic_bytes(self) -> bytes | None:
        return self.magic.encode("latin-1") if self.magic is not None else None


class SubCategory(Strict):
    id: str
    name_zh: str
    name_en: str
    detectability: Literal["H", "M", "F"]
    keywords: tuple[str, ...] = ()
    key_hints: tuple[str, ...] = ()
    signatures: tuple[SignatureSpec, ...] = ()
    rule: RuleOverride | None = None

    @property
    def detectable(self) -> bool:
        return self.detectability != "F"


class ImportantCategory(Strict):
    id: str
    name_zh: str
    name_en: str
    subcategories: tuple[SubCategory, ...]


class ImportantData(Strict):
    version: int = 1
    source: str = ""
    default_rule: CooccurrenceRule = CooccurrenceRule()
    categories: tuple[ImportantCategory, ...]

    @property
    def subcategories(self) -> tuple[SubCategory, ...]:
        return tuple(s for c in self.categories for s in c.subcategories)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.subcategories)

    def get(self, sub_id: str) -> SubCategory:
        for s in self.subcategories:
            if s.id == sub_id:
                return s
        raise KeyError(sub_id)

    def rule_for(self, sub: SubCategory) -> CooccurrenceRule:
        if sub.rule is None:
            return self.default_rule
        changes = sub.rule.model_dump(exclude_unset=True)
        return self.default_rule.model_copy(update=changes)


def _check_important(path: Path, data: ImportantData) -> None:
    if len(data.categories) != IMPORTANT_CATEGORIES:
        raise CatalogError(path, "categories",
                           f"expected {IMPORTANT_CATEGORIES} categories, found {len(data.categories)}")
    seen: set[str] = set()
    for ci, cat in enumerate(data.categories):
        for si, sub in enumerate(cat.subcategories):
            entry = f"categories[{ci}] ({cat.id}).subcategories[{si}] ({sub.id})"
            if sub.id not in IMPORTANT_IDS:
                raise CatalogError(path, entry, 'id must be "1".."40"')
            if sub.id in seen:
                raise CatalogError(path, entry, "duplicate id")
            seen.add(sub.id)
            for kind, words in (("keywords", sub.keywords), ("key_hints", sub.key_hints)):
                for j, word in enumerate(words):
                    if not word.strip():
                        raise CatalogError(path, f"{entry}.{kind}[{j}]", "empty term")
            names: set[str] = set()
            for j, sig in enumerate(sub.signatures):
                where = f"{entry}.signatures[{j}] ({sig.name})"
                if sig.name in names:
                    raise CatalogError(path, where, "duplicate signature name")
                names.add(sig.name)
                if sig.magic is None and sig.regex is None:
                    raise CatalogError(path, where, "needs magic or regex")
                try:
                    sig.magic_bytes()
                except UnicodeEncodeError:
                    raise CatalogError(path, where, "magic must be bytes written as \\x.. escapes") from None
                if sig.regex is not None:
                    try:
                        re.compile(sig.regex.encode("utf-8"))
                    except re.error as exc:
                        raise CatalogError(path, where, f"bad regex: {exc}") from None
    missing = [i for i in IMPORTANT_IDS if i not in seen]
    if missing:
        raise CatalogError(path, "categories", f"missing sub-category id(s) {', '.join(missing)}")


def load_important_data(path: Path | str) -> ImportantData:
    """Read and validate configs/important_data.yaml; raise `CatalogError` naming the file and entry."""
    path = Path(path)
    data = _load_model(path, ImportantData, "with categories")
    _check_important(path, data)
    return data
