"""Key paths without raw values (DESIGN §3, `detections.key_paths`): one pure redaction for everyone.

A key is sometimes a value: a map keyed by mobile number (`{"138-1234-5678": {…}}`), by resident ID, by
card number, by the customer's name (`{"张三": {…}}`), a CSV whose first row is data. Such a key segment
becomes `<value>`; catalog key hints (`idNo`, `姓名`, `手机号`, `sfzh`, `xm`) stay, so the path still says
what the value under it is. The walkers fold shape matches while they build paths (`value_shaped`, no
catalog needed); the engine redacts every path it hands out with the catalog's rules and its own
recognizers (`redact_key_path(path, rules, detect)`); the collector can run the same function on ingest as
defence in depth.

A segment is a value when it has
- five or more digits joined only by separators or spaces (`138-1234-5678`, `6222 0212 3456 7890`,
  `1101-0519-4912-3100-2X`, `192.168.10.20`): a version or a short code has fewer;
- an `@` (e-mail), or the shape of a device id (UUID, MAC address, a long hex run with digits);
- the shape of a person's name: the person_name validator's Han names (surname dictionary, compound
  surnames, minority names with a middle dot) or two to four capitalised Latin words — unless it is a
  catalog hint or ends like a field word (`金额`, `时间`: 金 and 时 are surnames, 额 and 间 end no name);
- whatever the caller's `detect` (the engine's recognizers) finds in it.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import ahocorasick

from detectors.configs import configs_dir
from detectors.keys import PLACEHOLDERS, VALUE, fold_key
from detectors.validators import prepare_params, validate_person_name

_CONFIGS = configs_dir()

_DIGIT_RUN = re.compile(r"\d(?:[\s\-_.,:/()+~·]*\d){4,}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_MAC = re.compile(r"[0-9a-f]{2}(?:[:\-][0-9a-f]{2}){5}", re.I)
_HEX_ID = re.compile(r"[0-9a-f]{12,}", re.I)
_HAN = re.compile(r"^[\u4e00-\u9fa5]+(?:[·•・][\u4e00-\u9fa5]+)*$")
_LATIN_WORDS = re.compile(r"^[A-Z][a-z]+(?: [A-Z][a-z]+){1,3}$")
# Characters that end Chinese field words but (almost) no given name: they keep keys such as 金额, 时间,
# 明细, 单价 readable although their first character is a common surname.
_FIELD_ENDINGS = frozenset("额间细价号量型态式码期称址数率值类别因息项表况单位度费款")
# Key path syntax (detectors/walkers/common.path_key): a root, then `.plain`, `['quoted']` or `[*]` steps.
# What an older or hostile agent may upload is read too: `["double-quoted"]` and unquoted `[12]`,
# `[anything]`.
_ROOT = re.compile(r"[^.\[]*")
_STEP = re.compile(r"""\.([^.\[]+)|\['((?:[^'\\]|\\.)*)'\]|\["((?:[^"\\]|\\.)*)"\]|\[([^\]'"\[]*)\]""")
# An e-mail address over dot-joined segments (`zhang.san@example.com` read as three keys): the segments
# before the one with the @ that could be its local part, and those after it that could be domain labels.
_EMAIL_LOCAL = re.compile(r"[\w%+\-]+")
_EMAIL_LABEL = re.compile(r"[\w\-]+")
# Cheap tests first: a value spread over segments needs five digits or an @ somewhere in the path.
_FIVE_DIGITS = re.compile(r"\d(?:\D*\d){4}")
_AT_SIGNS = ("@", "\uff20", "\ufe6b")        # @, and the full-width and small forms NFKC folds to it
_UNESCAPE = re.compile(r"\\(.)")
# An unparsable path is one segment; its pieces between path punctuation are checked one by one as well.
_PIECES = re.compile(r"""[.\[\]'"\\]+""")


@dataclass(frozen=True, slots=True)
class KeyRules:
    """What a redaction needs from the catalog: hints that stay, and the person_name validator's params."""

    keep: frozenset[str] = frozenset()           # folded key hints (exact)
    keep_inside: tuple[str, ...] = ()            # folded hints that also count inside a longer key
    name_params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # An Aho-Corasick automaton over keep_inside: a thousand hints, one pass per key (a loop over them
    # cost 40 µs a key, seconds for a body of a hundred thousand distinct keys).
    _inside: Any = field(default=None, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.keep_inside and self._inside is None:
            auto = ahocorasick.Automaton()
            for hint in self.keep_inside:
                auto.add_word(hint, hint)
            auto.make_automaton()
            object.__setattr__(self, "_inside", auto)

    @classmethod
    def from_catalog(cls, catalog: Any, important: Any = None) -> KeyRules:
        words: list[str] = list(catalog.non_pi_key_hints)
        for ft in catalog.field_types:
            words += [*ft.key_hints, *ft.context, *ft.exclude_parent_hints]
        if important is not None:
            for sub in important.subcategories:
                words += [*sub.key_hints, *sub.keywords]
        folded = {fold_key(w) for w in words if w}
        # Substring matches as detectors/keys.py makes them: 5+ ASCII characters, 2+ Chinese ones.
        inside = tuple(sorted(h for h in folded if len(h) >= 5 or (not h.isascii() and len(h) >= 2)))
        params = next((prepare_params(ft.params) for ft in catalog.field_types if ft.id == "person_name"), {})
        return cls(frozenset(folded), inside, params)

    @classmethod
    def from_configs(cls, configs_dir: Path | str) -> KeyRules:
        from detectors.catalog import load_catalog, load_important_data

        configs_dir = Path(configs_dir)
        important_path = configs_dir / "important_data.yaml"
        important = load_important_data(important_path) if important_path.is_file() else None
        return cls.from_catalog(load_catalog(configs_dir / "field_types.yaml"), important)

    def is_hint(self, folded: str) -> bool:
        if folded in self.keep:
            return True
        return self._inside is not None and next(self._inside.iter(folded), None) is not None


@cache
def default_rules() -> KeyRules:
    """The bundled catalog's rules (loaded once); shape rules alone when the catalog is not there."""
    try:
        return KeyRules.from_configs(_CONFIGS)
    except (OSError, ValueError):
        return KeyRules()


def value_shaped(segment: str) -> bool:
    """Digits with separators, an e-mail, a device id: a value whatever the catalog says. Cached for keys of
    ordinary length: the walkers ask once per key of every record; a long key (an uploaded path can be
    anything) is not kept in the cache."""
    return _value_shaped_cached(segment) if len(segment) <= _CACHED_CHARS else _value_shaped(segment)


_CACHED_CHARS = 256


@lru_cache(maxsize=65_536)
def _value_shaped_cached(segment: str) -> bool:
    return _value_shaped(segment)


def _value_shaped(segment: str) -> bool:
    text = unicodedata.normalize("NFKC", segment)
    return bool(_DIGIT_RUN.search(text) or "@" in text or _UUID.search(text) or _MAC.search(text)
                or any(any(c.isdigit() for c in m) for m in _HEX_ID.findall(text)))


def name_shaped(segment: str, rules: KeyRules) -> bool:
    text = " ".join(unicodedata.normalize("NFKC", segment).split())
    if _LATIN_WORDS.match(text):
        return True
    if not _HAN.match(text) or text[-1] in _FIELD_ENDINGS:
        return False
    if any(sep in text for sep in "·•・"):
        return validate_person_name(text, rules.name_params, keyed=True)
    if not rules.name_params:
        return 2 <= len(text) <= 4   # no surname dictionary: every short Han key could be a name
    return validate_person_name(text, rules.name_params, keyed=False)


def redact_segment(segment: str, rules: KeyRules | None = None,
                   detect: Callable[[str], bool] | None = None) -> str:
    """`segment`, or `<value>` when it holds PI-shaped content (module docstring)."""
    if segment in PLACEHOLDERS or not segment.strip():
        return segment
    if value_shaped(segment):
        return VALUE
    rules = rules if rules is not None else default_rules()
    if rules.is_hint(fold_key(segment)):
        return segment
    if name_shaped(segment, rules) or (detect is not None and detect(segment)):
        return VALUE
    return segment


_Segment = tuple[str, str, bool]     # text as written, key as read, dot-joined to the previous segment


def redact_key_path(path: str, rules: KeyRules | None = None,
                    detect: Callable[[str], bool] | None = None) -> str:
    """Every segment of `path` through `redact_segment`: the root (`$`, `form`, `csv` stay; a root that is a
    value becomes `<value>`), `.plain` steps and bracket steps in any form (`['quoted']`, `["quoted"]`,
    `[12]`); `[*]` stays. A redacted bracket step (`['6222 0212 3456 7890']`, `[13812345678]`) becomes
    `.<value>`. A value with dots written as plain steps (`$.192.168.10.20`, `$.zhang.san@example.com`, as
    an older agent wrote keys) spreads over several segments: consecutive dot-joined segments that together
    make a digit run or an e-mail address become one `<value>`. A path that does not parse is one segment
    and fails closed: `<value>` when it, or any piece of it between path punctuation, holds PI-shaped
    content."""
    rules = rules if rules is not None else default_rules()
    segs = _parse(path)
    if segs is None:
        return _whole(path, rules, detect)
    hidden = [redact_segment(key, rules, detect) == VALUE for _, key, _ in segs]
    value_of = list(range(len(segs)))       # segments of one value spread over several share a number
    if len(segs) > 1 and (_FIVE_DIGITS.search(path) or any(at in path for at in _AT_SIGNS)):
        _hide_dotted_values(segs, hidden, value_of)
    out = []
    for i, (text, _, _) in enumerate(segs):
        if not hidden[i]:
            out.append(text)
        elif not (i and value_of[i] == value_of[i - 1]):
            out.append("." + VALUE if i else VALUE)
    return "".join(out)


def _parse(path: str) -> list[_Segment] | None:
    """The segments of `path`, the root first (`_Segment`); None when the path does not parse."""
    m = _ROOT.match(path)
    head = m.group(0) if m else ""
    segs = [(head, head, False)]
    pos = len(head)
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            return None
        pos = m.end()
        plain, single, double, bare = m.groups()
        key = plain if plain is not None else bare if bare is not None else \
            _UNESCAPE.sub(r"\1", single if single is not None else double)
        segs.append((m.group(0), key, plain is not None))
    return segs


def _hide_dotted_values(segs: list[_Segment], hidden: list[bool], value_of: list[int]) -> None:
    """Hide the segments of each run of dot-joined segments that together hold a digit run or an e-mail;
    the segments of one such value get one number (they become one `<value>`). Linear in the path."""
    start = 0
    for end in range(1, len(segs) + 1):
        if end < len(segs) and segs[end][2]:
            continue
        if end - start > 1:
            keys = [unicodedata.normalize("NFKC", key) for _, key, _ in segs[start:end]]
            spans: list[tuple[int, int]] = []          # (first, last) segment index within the run
            starts, at = [], 0
            for key in keys:
                starts.append(at)
                at += len(key) + 1
            for m in _DIGIT_RUN.finditer(".".join(keys)):
                spans.append((bisect_right(starts, m.start()) - 1, bisect_right(starts, m.end() - 1) - 1))
            for i, key in enumerate(keys):
                if "@" in key:
                    first, last = i, i
                    while first > 0 and _EMAIL_LOCAL.fullmatch(keys[first - 1]):
                        first -= 1
                    while last + 1 < len(keys) and _EMAIL_LABEL.fullmatch(keys[last + 1]):
                        last += 1
                    spans.append((first, last))
            for first, last in spans:
                for j in range(start + first, start + last + 1):
                    hidden[j] = True
                    value_of[j] = value_of[start + first]
        start = end


def _whole(path: str, rules: KeyRules, detect: Callable[[str], bool] | None) -> str:
    """Fail closed for a path the syntax does not describe: nothing of it is kept when any of it is PI."""
    pieces = [path, *(p for p in _PIECES.split(path) if p)]
    if any(redact_segment(p, rules, detect) == VALUE for p in pieces):
        return VALUE
    return path


def redact_paths(paths: Iterable[str], rules: KeyRules | None = None) -> list[str]:
    """Several paths (a detection's examples), in order, duplicates that redaction created removed. Linear:
    a hostile upload may hold many paths. A missing (null) path is dropped."""
    rules = rules if rules is not None else default_rules()
    out: list[str] = []
    seen: set[str] = set()
    for p in paths:
        if not isinstance(p, str):
            continue
        red = redact_key_path(p, rules)
        if red not in seen:
            seen.add(red)
            out.append(red)
    return out
