"""Smoke test of bench/corpus.py and bench/accuracy.py on a tiny corpus: labels are exact and
deterministic, hard negatives are labeled as such, and the scorer counts TP/FP/FN as documented.

No engine speed and no accuracy thresholds here: those are the benchmark's output, not a test's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from stdnum import luhn
from stdnum.cn import ric, uscc

from detectors.catalog import load_catalog
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
N, SEED = 40, 11


def _load(name: str) -> ModuleType:
    return load_script(BENCH / f"{name}.py", name)


@pytest.fixture(scope="module")
def corpus() -> ModuleType:
    return sys.modules.get("corpus") or _load("corpus")


@pytest.fixture(scope="module")
def accuracy(corpus: ModuleType) -> ModuleType:
    return _load("accuracy")


@pytest.fixture(scope="module")
def bodies(corpus: ModuleType) -> list:
    return list(corpus.generate(N, SEED))


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT / "configs" / "field_types.yaml")


def test_corpus_is_deterministic_for_a_seed(corpus: ModuleType, bodies: list) -> None:
    again = list(corpus.generate(N, SEED))
    assert [(b.fmt, b.content_type, b.data, b.labels, b.negatives) for b in again] == \
           [(b.fmt, b.content_type, b.data, b.labels, b.negatives) for b in bodies]
    other = list(corpus.generate(N, SEED + 1))
    assert [b.data for b in other] != [b.data for b in bodies]


def test_every_label_type_is_a_catalog_id(bodies: list, catalog) -> None:
    types = {lb.field_type for b in bodies for lb in b.labels}
    assert types and types <= catalog.ids
    assert {lb.where for b in bodies for lb in b.labels} <= {"keyed", "generic", "text"}


def _plain_text(accuracy: ModuleType, body) -> str:
    text = accuracy.decoded_text(body)
    if body.fmt.startswith("json"):
        # \u escapes (ensure_ascii bodies) and numbers as the walker sees them.
        text = json.dumps(json.loads(text), ensure_ascii=False)
    return text


def test_labels_and_negatives_are_in_their_bodies(accuracy: ModuleType, bodies: list) -> None:
    for body in bodies:
        text = _plain_text(accuracy, body)
        for item in [*body.labels, *body.negatives]:
            assert item.value in text, (body.index, body.fmt, item)
        assert body.labels or body.negatives


def test_planted_values_have_valid_check_digits(corpus: ModuleType, bodies: list) -> None:
    labels = [lb for b in bodies for lb in b.labels]
    for lb in labels:
        v = lb.value.replace(" ", "").upper()
        if lb.field_type == "resident_id_cn" or (lb.field_type == "travel_permit" and len(v) == 18):
            # calc_check_digit takes the whole 18 characters and ignores the last (engineering notes).
            assert ric.calc_check_digit(v[:17] + "0") == v[17]
            assert v.startswith(("810000", "820000", "830000")) == (lb.field_type == "travel_permit")
        elif lb.field_type == "bank_card":
            assert luhn.is_valid(v) and 16 <= len(v) <= 19
        elif lb.field_type == "org_credit_code":
            assert uscc.calc_check_digit(v[:17]) == v[17]
        elif lb.field_type == "vin":
            assert corpus.vin_check_digit(v) == v[8]
        elif lb.field_type == "device_id":
            assert luhn.is_valid(v) and len(v) == 15
    assert {"resident_id_cn", "mobile_cn", "bank_card", "person_name", "postal_address"} <= \
           {lb.field_type for lb in labels}


def test_hard_negatives_are_labeled_as_such(bodies: list) -> None:
    negatives = [n for b in bodies for n in b.negatives]
    kinds = {n.kind for n in negatives}
    assert len(kinds) >= 8 and {"order_no", "price"} <= kinds
    for n in negatives:
        compact = n.value.replace(" ", "").replace("-", "")
        if n.kind == "ric_bad_check":
            assert ric.calc_check_digit(compact[:17] + "0") != compact[17]
        elif n.kind == "order_no_luhn":
            assert luhn.is_valid(compact) and 18 <= len(compact) <= 20
        elif n.kind == "card_bad_luhn":
            assert not luhn.is_valid(compact)
        elif n.kind == "uscc_bad_check":
            assert uscc.calc_check_digit(compact[:17]) != compact[17]
        elif n.kind == "hotline":
            assert compact[:3] in ("400", "800")
    for body in bodies:
        # A negative never shares its value with a label of the same body (the scorer could not tell them).
        assert not {n.value for n in body.negatives} & {lb.value for lb in body.labels}


def test_dump_refuses_paths_outside_bench_out(corpus: ModuleType, bodies: list, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        corpus.dump(bodies[:1], tmp_path / "corpus.jsonl")


def test_scorer_counts_on_a_hand_built_example(corpus: ModuleType, accuracy: ModuleType, catalog) -> None:
    rid, mobile, name, order = "110101199003074514", "13800138000", "张伟", "202603020930151234"
    body = corpus.Body(0, "json_object", "application/json", b"{}", labels=[
        corpus.Label("resident_id_cn", rid, "sfzh", "keyed"),
        corpus.Label("mobile_cn", mobile, "mobile", "keyed"),
        corpus.Label("person_name", name, "xm", "keyed"),
    ], negatives=[corpus.Negative("order_no", order, "orderNo")])
    keys = accuracy.LabelKeys(b"k", {ft.id: ft.normalizer for ft in catalog.field_types})
    hit = accuracy.PseudoHit
    hits = [
        hit("resident_id_cn", keys.of("resident_id_cn", rid), "$.sfzh"),            # TP
        hit("resident_id_cn", keys.of("resident_id_cn", rid), "$.sfzh"),            # duplicate: counted once
        hit("mobile_cn", keys.of("mobile_cn", "+86 138-0013-8000"), "$.mobile"),    # TP after normalization
        hit("bank_card", keys.of("bank_card", rid), "$.sfzh"),                      # FP: a confusion
        hit("mobile_cn", keys.of("mobile_cn", order), "$.orderNo"),                 # FP: a hard negative
        hit("person_name", keys.of("person_name", "张"), "$.xm"),                    # FP (span cut short)
        hit("minor_under_14", 1, "$.sfzh"),                                         # derived: ignored
    ]                                                                               # name itself: FN
    scores = accuracy.score([body], [hits], keys)
    got = {t: (c.tp, c.fp, c.fn) for t, c in scores.by_type.items()}
    assert got == {"resident_id_cn": (1, 0, 0), "mobile_cn": (1, 1, 0), "person_name": (0, 1, 1),
                   "bank_card": (0, 1, 0)}
    assert scores.keyed["person_name"].fp == 1 and scores.keyed["person_name"].fn == 1
    assert scores.missed_keys == {("person_name", "xm"): 1}
    assert scores.negatives_hit == {("order_no", "mobile_cn"): 1}
    assert scores.confusions == {("resident_id_cn", "bank_card"): 1}
    assert scores.unexplained_fp == {"person_name": 1}
    assert scores.ignored_hits == {"minor_under_14": 1}
    fmt = scores.by_format["json_object"]
    assert (fmt.tp, fmt.fp, fmt.fn) == (2, 3, 1)
    micro = scores.micro(["resident_id_cn", "mobile_cn", "person_name", "bank_card"])
    assert micro.precision == pytest.approx(2 / 5) and micro.recall == pytest.approx(2 / 3)
    assert micro.f1 == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))

    # Restricted to some types (how Presidio's counterparts are scored): other labels are not FNs.
    only = accuracy.score([body], [hits], keys, frozenset({"mobile_cn"}))
    assert {t: (c.tp, c.fp, c.fn) for t, c in only.by_type.items()} == {"mobile_cn": (1, 1, 0)}


def test_counts_without_data_have_no_ratios(accuracy: ModuleType) -> None:
    empty = accuracy.Counts()
    assert empty.precision is None and empty.recall is None and empty.f1 is None
    assert accuracy.Counts(tp=0, fp=2, fn=0).f1 == 0.0


def test_gbk_form_is_decoded_for_presidio(corpus: ModuleType, accuracy: ModuleType) -> None:
    body = corpus.Body(0, "form_gbk", "application/x-www-form-urlencoded; charset=GBK",
                       b"xm=%D5%C5%CE%B0&sjh=13800138000")
    assert accuracy.decoded_text(body) == "xm=张伟&sjh=13800138000"
