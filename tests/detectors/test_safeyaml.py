"""Documents under caps (DESIGN §9 "Hostile input"): size, nesting depth, YAML aliases and what they expand
to, each refused at composition — before anything is expanded — with one line naming the cap and its value;
and the service's entry points (`documents.parse_filing`, `parse_negative_list_body`, `parse_json_body`)
turning every refusal into the one error type, never a RecursionError or a freeze."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field
from yaml.composer import Composer
from yaml.constructor import BaseConstructor
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent

from collector import documents
from collector.config import Limits
from collector.errors import RequestProblem
from detectors.safeyaml import FILE_CAPS, HARD_MAX_DEPTH, Caps, SafeYamlError, load
from tests.collector.builders import EXAMPLE_NEGATIVE_LIST, REPO

CAPS = Caps(max_bytes=65536, max_depth=32, max_aliases=100)
LIMITS = Limits(max_document_bytes=262144, max_document_depth=32, max_document_aliases=100)


def nested_flow(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_block(depth: int) -> str:
    """`depth` mappings, one inside the other, in block style."""
    return "".join("  " * i + "k:\n" for i in range(depth - 1)) + "  " * (depth - 1) + "k: 1\n"


def depth_of(data: Any) -> int:
    """Collections on the longest path (a scalar adds none)."""
    if isinstance(data, dict):
        return 1 + max(map(depth_of, data.values()), default=0)
    if isinstance(data, list):
        return 1 + max(map(depth_of, data), default=0)
    return 0


def laughs(levels: int, width: int) -> str:
    """The "billion laughs" shape: each level a list of `width` aliases of the level before."""
    text = "l0: &l0 [" + ", ".join(["lol"] * width) + "]\n"
    for i in range(1, levels):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n"
    return text


def aliases(n: int) -> str:
    return "a: &a x\nb: [" + ", ".join(["*a"] * n) + "]\n"


def refusal(text: str | bytes, caps: Caps = CAPS) -> SafeYamlError:
    with pytest.raises(SafeYamlError) as exc:
        load(text, caps)
    assert "\n" not in str(exc.value)
    return exc.value


@dataclass
class Work:
    """What PyYAML's own composer and constructor did during a test: nodes composed (one per event, an
    alias included — never what it refers to) and objects constructed."""
    composed: int = 0
    constructed: int = 0


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    """Counts the real composer's and constructor's steps (the capped loader calls both)."""
    seen = Work()
    compose, construct = Composer.compose_node, BaseConstructor.construct_object

    def counting_compose(self: Any, parent: Any, index: Any) -> Any:
        seen.composed += 1
        return compose(self, parent, index)

    def counting_construct(self: Any, node: Any, deep: bool = False) -> Any:
        seen.constructed += 1
        return construct(self, node, deep)

    monkeypatch.setattr(Composer, "compose_node", counting_compose)
    monkeypatch.setattr(BaseConstructor, "construct_object", counting_construct)
    return seen


def nodes_in(text: str) -> int:
    """Nodes written in the document (an alias is one), as the parser reports them."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    nodes = (ScalarEvent, AliasEvent, CollectionStartEvent)
    return sum(isinstance(e, nodes) for e in yaml.parse(text, loader))


# --- each cap at its boundary and beyond -----------------------------------------------------------------

@pytest.mark.parametrize(("text", "depth"), [
    pytest.param(nested_flow(32), 32, id="flow-at-cap"),
    pytest.param(nested_block(32), 32, id="block-at-cap"),
    pytest.param(json.dumps(json.loads(nested_flow(31))), 31, id="json-under-cap"),
    pytest.param("a: &a " + nested_flow(20) + "\nb: " + "[" * 11 + "*a" + "]" * 11, 32, id="alias-at-cap"),
])
def test_depth_at_the_cap_loads(text: str, depth: int) -> None:
    assert depth_of(load(text, CAPS)) == depth


@pytest.mark.parametrize(("text", "at"), [
    pytest.param(nested_flow(33), "line 1, column 33: ", id="flow-one-over"),
    pytest.param(nested_block(33), "line 33, column 65: ", id="block-one-over"),
    pytest.param("a: &a " + nested_flow(20) + "\nb: " + "[" * 12 + "*a" + "]" * 12, "line 2, column 16: ",
                 id="alias-carries-depth"),
    # one line of 100,000 `[`: libyaml's own ceiling (1000 open flow collections) stops it while scanning
    # ahead, before the first node; it has no column worth showing
    pytest.param(nested_flow(100_000), "line 1: ", id="json-100k-deep"),
    pytest.param("[\n" * 100_000 + "]\n" * 100_000, "line 33, column 1: ", id="json-100k-deep-lines"),
    pytest.param('{"a": ' * 100_000 + "1" + "}" * 100_000, "line 1, column 193: ",
                 id="json-objects-100k-deep"),
    pytest.param("".join("  " * i + "-\n" for i in range(3000)), "line 33, column 65: ", id="block-3k-deep"),
])
def test_depth_beyond_the_cap_is_refused_at_the_first_level_past_it(text: str, at: str, work: Work) -> None:
    """Refused where the 33rd level opens: the composer never went deeper than the cap (at most a
    collection and a key per level, whatever the document's depth) and nothing was constructed."""
    e = refusal(text, Caps(max_bytes=16 * 1024 * 1024, max_depth=32, max_aliases=100))
    assert (e.status, e.cap) == (422, "max_document_depth")
    assert str(e) == f"{at}nesting deeper than max_document_depth 32"
    assert work.composed <= 3 + 2 * 32, work
    assert work.constructed == 0, work


def test_a_configured_depth_never_reaches_the_recursion_limit() -> None:
    caps = Caps(max_bytes=16 * 1024 * 1024, max_depth=10**6, max_aliases=100)
    assert caps.depth == HARD_MAX_DEPTH
    assert load(nested_flow(HARD_MAX_DEPTH), caps)
    e = refusal(nested_flow(HARD_MAX_DEPTH + 1) + " " * 10, caps)
    assert f"max_document_depth {HARD_MAX_DEPTH}" in str(e)


@pytest.mark.parametrize(("text", "caps", "ok"), [
    pytest.param(aliases(100), CAPS, True, id="aliases-at-cap"),
    pytest.param(aliases(101), CAPS, False, id="aliases-one-over"),
    pytest.param(aliases(1), Caps(65536, 32, 0), False, id="no-aliases-allowed"),
    pytest.param("a: &a {k: 1}\nb: {<<: *a, j: 2}\n", Caps(65536, 32, 0), False, id="merge-key-is-an-alias"),
    pytest.param("a: &a {k: 1}\nb: {<<: *a, j: 2}\n", Caps(65536, 32, 1), True, id="merge-key-in-budget"),
])
def test_alias_budget(text: str, caps: Caps, ok: bool) -> None:
    if ok:
        assert load(text, caps)
        return
    e = refusal(text, caps)
    assert (e.status, e.cap) == (422, "max_document_aliases")
    assert f"than max_document_aliases {caps.max_aliases}" in str(e)


def first_alias_past(levels: int, width: int, budget: int) -> str:
    """Where in `laughs(levels, width)` the expanded node count first passes `budget`, worked out from the
    shape alone: the root mapping, then per level its key, its list and what each item brings (a scalar
    one node, an alias of level i - 1 all of that level's list)."""
    total, size = 1, 0                          # size: expanded nodes of the previous level's list
    for i in range(levels):
        total += 2
        item = 1 if i == 0 else size
        for j in range(width):
            total += item
            if total > budget:
                if i == 0:
                    raise AssertionError("the plain first level alone is over the budget")
                column = len(f"l{i}: &l{i} [") + j * len(f"*l{i - 1}, ") + 1
                return f"line {i + 1}, column {column}: "
        size = 1 + width * item
    raise AssertionError("never over the budget")


@pytest.mark.parametrize(("levels", "width"), [(9, 9), (30, 2), (4, 25), (20, 10)])
def test_alias_bombs_are_refused_at_the_first_alias_past_the_budget_before_any_expansion(
        levels: int, width: int, work: Work) -> None:
    """Within the alias count the expansion budget still holds: nothing may expand beyond what a plain
    document of max_bytes could hold. The refusal comes at the alias that passes the budget — the rest of
    the document is never composed, no alias is copied out (each is one composed node) and nothing is
    constructed."""
    text = laughs(levels, width)
    e = refusal(text, Caps(max_bytes=65536, max_depth=32, max_aliases=1000))
    assert e.status == 422 and "expand the document to more than 65536 nodes" in str(e)
    assert str(e).startswith(first_alias_past(levels, width, 65536)), str(e)
    assert work.composed < nodes_in(text), work
    assert work.constructed == 0, work


def scalar_bytes(data: Any) -> int:
    """UTF-8 bytes of every key and scalar value, as if each alias were copied out."""
    if isinstance(data, dict):
        return sum(scalar_bytes(k) + scalar_bytes(v) for k, v in data.items())
    if isinstance(data, list):
        return sum(map(scalar_bytes, data))
    return len(str(data).encode())


# What an alias brings counts in bytes too, not only in nodes: one anchored 900 KB scalar is a single node,
# and 99 aliases of it turned a 0.9 MB filing into an 85 MB one (security review). Each case below is
# exactly at max_bytes 65536 once expanded (keys included), and its "over" twin one byte more.
BYTES = Caps(max_bytes=65536, max_depth=32, max_aliases=1000)


def scalar_times(size: int, n: int, key: str = "b") -> str:
    """One anchored scalar of `size` bytes and `n` aliases of it: 1 + len(key) + size * (n + 1) expanded."""
    return f"a: &a {'x' * size}\n{key}: [" + ", ".join(["*a"] * n) + "]\n"


def mapping_times(size: int, n: int, key: str = "c") -> str:
    """A mapping anchor holding one big scalar, `n` aliases: 1 + len(key) + (1 + size) * (n + 1)."""
    return f"m: &m {{k: {'x' * size}}}\n{key}: [" + ", ".join(["*m"] * n) + "]\n"


def nested(size: int, key: str = "c") -> str:
    """An anchor of aliases of an anchor: a, b = [*a]*3, c = [*b]*3 expand to 2 + len(key) + 13 * size."""
    return f"a: &a {'x' * size}\nb: &b [*a, *a, *a]\n{key}: [*b, *b, *b]\n"


@pytest.mark.parametrize(("text", "ok"), [
    pytest.param(scalar_times(434, 150), True, id="scalar-x150-at-cap"),
    pytest.param(scalar_times(434, 150, key="bb"), False, id="scalar-x150-one-byte-over"),
    pytest.param(scalar_times(65000, 1), False, id="scalar-x1-far-over"),
    pytest.param(scalar_times(32767, 1), True, id="scalar-x1-at-cap"),
    pytest.param(mapping_times(2113, 30), True, id="mapping-anchor-at-cap"),
    pytest.param(mapping_times(2113, 30, key="cc"), False, id="mapping-anchor-one-byte-over"),
    pytest.param(nested(5041, key="c"), True, id="nested-anchors-at-cap"),
    pytest.param(nested(5041, key="cc"), False, id="nested-anchors-one-byte-over"),
    pytest.param("a: &a " + "备" * 1000 + "\nb: [" + ", ".join(["*a"] * 21) + "]\n", False,
                 id="utf8-bytes-not-characters"),
])
def test_aliases_may_not_expand_the_document_beyond_max_bytes(text: str, ok: bool, work: Work) -> None:
    assert len(text.encode()) < BYTES.max_bytes
    if ok:
        assert scalar_bytes(load(text, BYTES)) == BYTES.max_bytes
        return
    e = refusal(text, BYTES)
    assert (e.status, e.cap) == (422, "max_document_bytes")
    assert "YAML aliases expand the document beyond max_document_bytes 65536" in str(e), str(e)
    # counted, not copied out: one composed node per node written, and the graph never constructed
    assert (work.composed, work.constructed) == (nodes_in(text), 0), work


def test_the_review_s_scalar_bomb_is_refused_under_the_default_caps(work: Work) -> None:
    """The reported shape: a 0.9 MB document, one 900 KB anchored scalar, 99 aliases — within the alias
    budget (100) and the node budget, 85 MiB once expanded."""
    caps = documents.caps_of(Limits())
    text = scalar_times(900_000, 99)
    assert len(text.encode()) < caps.max_bytes and text.count("*a") < caps.max_aliases
    e = refusal(text, caps)
    assert (e.status, e.cap) == (422, "max_document_bytes")
    assert f"YAML aliases expand the document beyond max_document_bytes {caps.max_bytes}" in str(e)
    assert "line 2, column 5: " in str(e), str(e)          # the first alias that passes the cap
    # 85 MiB never built: the root, `a`, its scalar, `b`, its list and 99 aliases composed (each once),
    # nothing constructed
    assert nodes_in(text) == 5 + 99 and (work.composed, work.constructed) == (5 + 99, 0), work


def test_a_document_another_cap_refuses_keeps_that_refusal() -> None:
    """The byte cap is the last word: past it, composing goes on (counting only), so an earlier cap's
    refusal — aliases, depth, not YAML — reads as it did before bytes were counted."""
    e = refusal(scalar_times(1000, 101), Caps(max_bytes=65536, max_depth=32, max_aliases=100))
    assert e.cap == "max_document_aliases" and "than max_document_aliases 100" in str(e), str(e)
    e = refusal(scalar_times(40000, 1) + "c: " + nested_flow(40) + "\n", BYTES)
    assert e.cap == "max_document_depth"
    e = refusal(scalar_times(40000, 1) + "c: [1, 2\n", BYTES)
    assert "not valid YAML or JSON" in str(e), str(e)


def test_file_caps_name_the_file_limit_for_expanded_bytes() -> None:
    e = refusal(scalar_times(9 * 1024 * 1024, 1), FILE_CAPS)
    assert "beyond the limit for files of 16777216 bytes" in str(e), str(e)


def test_only_what_aliases_bring_can_pass_the_byte_cap() -> None:
    """A plain document's keys and values can take more UTF-8 bytes than its text (each `\\L` escape is 2
    bytes of text, 3 of U+2028): at max_bytes it still loads, even with aliases that bring no bytes."""
    head = 'e: &e []\nf: [*e, *e]\ng: "'
    text = head + "\\L" * ((65536 - len(head) - 2) // 2) + '"\n'
    assert len(text.encode()) <= 65536
    data = load(text, BYTES)
    assert data["f"] == [[], []] and scalar_bytes(data) > 65536


def test_a_small_expansion_within_the_budget_loads() -> None:
    data = load(laughs(3, 10), Caps(max_bytes=65536, max_depth=32, max_aliases=100))
    assert len(data["l2"]) == 10 and data["l2"][0][0] == ["lol"] * 10


def test_a_recursive_alias_is_refused() -> None:
    e = refusal("a: &a [1, *a]\n")
    assert e.status == 422 and "*a refers to a node that contains it" in str(e)


@pytest.mark.parametrize(("size", "status"), [(65536, None), (65537, 413)])
def test_size_at_the_cap_and_one_byte_over(size: int, status: int | None) -> None:
    text = "a: " + "x" * (size - 4) + "\n"
    assert len(text.encode()) == size
    if status is None:
        assert load(text, CAPS) == {"a": "x" * (size - 4)}
        return
    e = refusal(text)
    assert (e.status, e.cap) == (413, "max_document_bytes")
    assert str(e) == "65537 bytes is more than max_document_bytes 65536"


def test_size_counts_utf8_bytes_not_characters() -> None:
    assert refusal("a: " + "备" * 30000).status == 413


@pytest.mark.parametrize(("text", "fragment"), [
    pytest.param("a: [1, 2\n", "line 1, at the end: not valid YAML or JSON", id="syntax"),
    pytest.param("a: [1, 2\nb: 3\n", "line 2, column 2: not valid YAML or JSON", id="syntax-line-2"),
    pytest.param("a: 1\n---\nb: 2\n", "not valid YAML or JSON: but found another document", id="two-docs"),
    pytest.param("a: *nowhere\n", "found undefined alias", id="undefined-alias"),
    pytest.param("a: &x 1\nb: &x 2\n", "line 2", id="duplicate-anchor"),
    pytest.param("a: !!python/object/apply:os.system [id]\n", "could not determine a constructor",
                 id="python-tag"),
    pytest.param("a: " + "9" * 5000 + "\n", "a value cannot be read: Exceeds the limit",
                 id="int-5000-digits"),
    pytest.param("a: 0000-01-01\n", "a value cannot be read: year 0 is out of range", id="year-0"),
    pytest.param("a: 2026-02-30\n", "a value cannot be read: day is out of range", id="feb-30"),
    pytest.param(b"a: \xff\xfe\n", "not UTF-8 text", id="not-utf8"),
])
def test_what_is_not_yaml_is_one_line(text: str | bytes, fragment: str) -> None:
    e = refusal(text)
    assert e.status == 422 and fragment in str(e), str(e)


def test_ordinary_documents_with_anchors_and_merge_keys_load() -> None:
    text = ("base: &ep {domains: [a.example], ip_cidrs: []}\n"
            "r1: {declared_endpoints: *ep}\n"
            "r2: {declared_endpoints: {<<: *ep, ip_cidrs: [192.0.2.0/24]}}\n")
    data = load(text, CAPS)
    assert data["r1"]["declared_endpoints"] == {"domains": ["a.example"], "ip_cidrs": []}
    assert data["r2"]["declared_endpoints"]["ip_cidrs"] == ["192.0.2.0/24"]


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml"))
                         + sorted((REPO.parent / "shared" / "reference").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_yaml_loads_under_the_file_caps_and_the_service_caps(path: Any) -> None:
    text = path.read_text(encoding="utf-8")
    assert load(text, FILE_CAPS) == yaml.safe_load(text)
    if path.parent.name in ("filings", "negative_lists") or path.name == "filing.example.yaml":
        assert load(text, documents.caps_of(Limits())) == yaml.safe_load(text)


def test_file_caps_messages_say_they_are_the_file_limits() -> None:
    e = refusal(nested_flow(65), FILE_CAPS)
    assert "nesting deeper than the limit for files of 64 levels" in str(e)


# --- the service's entry points -------------------------------------------------------------------------

def demo_filing_yaml(**changes: Any) -> bytes:
    data = yaml.safe_load((REPO / "configs" / "filings" / "demo.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()


def problem(fn: Any, *args: Any) -> RequestProblem:
    with pytest.raises(RequestProblem) as exc:
        fn(*args)
    assert "\n" not in str(exc.value)
    return exc.value


def test_the_demo_filing_parses_under_the_limits() -> None:
    assert documents.parse_filing(demo_filing_yaml(), "ZJFTZ-HZ-2026-0107", LIMITS).processor.id == "hz-demo"


@pytest.mark.parametrize(("body", "status", "fragment"), [
    pytest.param(demo_filing_yaml() + b"#" * 262144, 413, "more than max_document_bytes 262144", id="size"),
    pytest.param(nested_flow(100_000).encode(), 422, "nesting deeper than max_document_depth 32", id="deep"),
    pytest.param(laughs(9, 9).encode() + demo_filing_yaml(), 422, "YAML aliases expand", id="laughs"),
    pytest.param(aliases(101).encode(), 422, "than max_document_aliases 100", id="aliases"),
    pytest.param(scalar_times(200_000, 99).encode() + demo_filing_yaml(), 422,
                 "YAML aliases expand the document beyond max_document_bytes 262144", id="scalar-bomb"),
    pytest.param(b"schema: [1, 2\n", 422, "not valid YAML or JSON", id="syntax"),
    pytest.param(b"- a\n- b\n", 422, "must be a mapping at the top level", id="not-a-mapping"),
])
def test_documents_refuse_with_the_one_error_type(body: bytes, status: int, fragment: str) -> None:
    for fn, doc_id in ((documents.parse_filing, "ZJFTZ-HZ-2026-0107"),
                       (documents.parse_negative_list_body, "zj-ftz-example")):
        e = problem(fn, body, doc_id, LIMITS)
        assert (e.status, e.field) == (status, "body")
        assert str(e).startswith("body: ") and fragment in str(e), str(e)


def test_a_deep_value_inside_a_valid_filing_is_refused_not_recursed() -> None:
    body = demo_filing_yaml(tolerances={"volume_increase_major_pct": 30}).replace(
        b"tolerances:", b"extra: " + nested_flow(5000).encode() + b"\ntolerances:")
    e = problem(documents.parse_filing, body, "ZJFTZ-HZ-2026-0107", LIMITS)
    assert e.status == 422 and "max_document_depth 32" in str(e)


def test_the_default_limits_apply_when_none_are_given() -> None:
    e = problem(documents.parse_filing, nested_flow(40).encode(), "X")
    assert "max_document_depth 32" in str(e)


def test_a_negative_list_version_must_be_a_scalar() -> None:
    data = yaml.safe_load(EXAMPLE_NEGATIVE_LIST.read_text(encoding="utf-8"))
    data["version"] = [[1, 2], [3]]
    e = problem(documents.parse_negative_list_body, json.dumps(data, default=str).encode(), "zj-ftz-example",
                LIMITS)
    assert e.status == 422 and e.field == "version", str(e)


@pytest.mark.parametrize(("body", "status", "fragment"), [
    pytest.param(b'{"filing_id": "F", "from": "2026-01-01"}', None, None, id="ok"),
    pytest.param(nested_flow(100_000).encode(), 422, "nesting deeper than max_document_depth 32", id="deep"),
    pytest.param(b'{"a": ' * 33 + b"1" + b"}" * 33, 422, "max_document_depth 32", id="one-over"),
    pytest.param(b'{"a": "' + b"[" * 1000 + b'"}', None, None, id="brackets-in-strings"),
    pytest.param(b'{"a": "\\"' + b"[" * 1000 + b'"}', None, None, id="escaped-quote"),
    pytest.param(b"{" + b" " * 262144 + b"}", 413, "max_document_bytes 262144", id="size"),
    pytest.param(b'{"a": ' + b"9" * 5000 + b"}", 422, "not valid JSON", id="huge-int"),
    pytest.param(b"[1, 2]", 422, "a JSON object", id="not-an-object"),
    pytest.param(b"{'a': 1}", 422, "not valid JSON", id="not-json"),
    pytest.param(b"\xff", 422, "not valid JSON", id="not-utf8"),
])
def test_parse_json_body(body: bytes, status: int | None, fragment: str | None) -> None:
    if status is None:
        assert isinstance(documents.parse_json_body(body, LIMITS), dict)
        return
    e = problem(documents.parse_json_body, body, LIMITS)
    assert (e.status, e.field) == (status, "body") and fragment in str(e), str(e)


class _Run(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    filing_id: str = Field(min_length=1)
    from_: date | None = Field(default=None, alias="from")


@pytest.mark.parametrize(("body", "status", "field"), [
    pytest.param(b'{"filing_id": "F", "from": "2026-01-01"}', None, None, id="ok"),
    pytest.param(b'{"filing_id": "F", "from": "2026-13-01"}', 422, "from", id="bad-date"),
    pytest.param(b'{"filing_id": "F", "colour": 1}', 422, "colour", id="unknown-key"),
    pytest.param(b'{"filing_id": ' + nested_flow(100_000).encode() + b"}", 422, "body", id="deep"),
])
def test_parse_request_validates_the_model_naming_the_field(body: bytes, status: int | None,
                                                            field: str | None) -> None:
    if status is None:
        assert documents.parse_request(body, _Run, LIMITS).from_ == date(2026, 1, 1)
        return
    e = problem(documents.parse_request, body, _Run, LIMITS)
    assert (e.status, e.field) == (status, field) and str(e).startswith(f"{field}: "), str(e)
