"""Engine.inspect end to end: hits per record, key paths, policy, and no raw value anywhere in a hit."""

from __future__ import annotations

import dataclasses
import json

from detectors.catalog import Policy
from detectors.engine import Engine, FieldHit
from detectors.subjects import normalize_mobile, value_key

from .conftest import SUBJECT_KEY
from .helpers import card, rid

RID = rid("33010619900101123")
RID2 = rid("11010819851231002")
CARD = card("622202", 19)


def _orders(n: int, fake) -> tuple[bytes, list[str]]:
    orders, raws = [], []
    for _ in range(n):
        rec = {"orderNo": str(fake.random_number(digits=18, fix_len=True)),
               "receiver": {"name": fake.name(), "idNo": fake.ssn(), "mobile": fake.phone_number(),
                            "address": fake.address(), "email": fake.email()},
               "payment": {"cardNo": fake.credit_card_number()},
               "remark": "请尽快发货"}
        orders.append(rec)
        raws += [*rec["receiver"].values(), rec["payment"]["cardNo"]]
    return json.dumps({"code": 0, "data": {"orders": orders}}, ensure_ascii=False).encode(), raws


def test_hits_group_by_record_with_key_paths(engine, fake):
    body, _ = _orders(3, fake)
    hits = engine.inspect(body, "application/json; charset=utf-8").hits
    by_record: dict[int, set[str]] = {}
    for h in hits:
        by_record.setdefault(h.record_index, set()).add(h.field_type)
    six = {"person_name", "resident_id_cn", "mobile_cn", "postal_address", "email", "bank_card"}
    assert by_record == {0: six, 1: six, 2: six}
    paths = {h.field_type: h.key_path for h in hits}
    assert paths["resident_id_cn"] == "$.data.orders[*].receiver.idNo"
    assert paths["bank_card"] == "$.data.orders[*].payment.cardNo"


def test_no_raw_value_in_any_field_of_any_hit(engine, fake):
    body, raws = _orders(40, fake)
    hits = engine.inspect(body, "application/json").hits
    assert len(hits) >= 40 * 6
    for hit in hits:
        for field in dataclasses.fields(FieldHit):
            text = str(getattr(hit, field.name))
            for raw in raws:
                assert raw not in text, (field.name, hit.field_type)
        assert hit.masked not in raws


def test_raw_value_as_json_key_is_not_in_key_path(engine):
    body = json.dumps({"13800138000": {"sfzh": RID}}).encode()
    hits = engine.inspect(body, "application/json").hits
    assert [(h.field_type, h.key_path) for h in hits] == [("resident_id_cn", "$.<value>.sfzh")]


def test_same_value_in_two_records_has_one_value_key(engine):
    body = json.dumps([{"sjh": "13800138000"}, {"mobile": "+86 138-0013-8000"}]).encode()
    hits = engine.inspect(body, "application/json").hits
    assert [h.record_index for h in hits] == [0, 1]
    assert hits[0].value_key == hits[1].value_key == value_key(SUBJECT_KEY, "mobile_cn",
                                                               normalize_mobile("13800138000"))


def test_gbk_form_end_to_end(engine):
    body = b"xm=%D5%C5%C8%FD&sfzh=" + RID.encode() + b"&sjh=13800138000&yhkh=" + CARD.encode()
    hits = engine.inspect(body, "application/x-www-form-urlencoded; charset=GBK").hits
    assert {(h.field_type, h.key_path) for h in hits} == {
        ("person_name", "form.xm"), ("resident_id_cn", "form.sfzh"), ("mobile_cn", "form.sjh"),
        ("bank_card", "form.yhkh")}
    assert {h.masked for h in hits} >= {"张*", "330***********" + RID[-4:], "138****8000"}


def test_text_body_one_record_per_line(engine):
    body = f"张三 身份证{RID}\n李四 身份证{RID2}\n".encode()
    hits = engine.inspect(body, "text/plain").hits
    assert [(h.field_type, h.record_index) for h in hits] == [("resident_id_cn", 0), ("resident_id_cn", 1)]


def test_business_keys_are_not_pi(engine):
    body = json.dumps({"orderNo": "13800138000", "tradeNo": CARD, "skuId": RID}).encode()
    assert engine.inspect(body, "application/json").hits == ()


def test_flags_follow_catalog_and_policy(engine, catalog):
    body = json.dumps({"sfzh": RID, "sjh": "13800138000"}).encode()
    hits = {h.field_type: h for h in engine.inspect(body, "application/json").hits}
    assert hits["resident_id_cn"].sensitive and hits["resident_id_cn"].identifier
    assert not hits["mobile_cn"].sensitive and hits["mobile_cn"].identifier
    relaxed = Engine(catalog, Policy(resident_id_is_sensitive=False), SUBJECT_KEY)
    (hit,) = [h for h in relaxed.inspect(body, "application/json").hits if h.field_type == "resident_id_cn"]
    assert not hit.sensitive


def test_subject_key_changes_value_keys(engine, catalog):
    body = json.dumps({"sjh": "13800138000"}).encode()
    other = Engine(catalog, Policy(), b"another-key")
    assert engine.inspect(body, "application/json").hits[0].value_key != \
        other.inspect(body, "application/json").hits[0].value_key


def test_malformed_input_never_raises(engine):
    for body, ct in [(b"", None), (b"\xff\xfe\x00garbage\x80", "application/json"), (b"{" * 5000, None),
                     (b"a=%ZZ&=&&b", "application/x-www-form-urlencoded"), (b"\x00" * 100, "text/plain")]:
        engine.inspect(body, ct)


def test_anomalies_are_passed_through(engine):
    ins = engine.inspect(b'{"sfzh": "x", 1}', "application/json")
    assert ("json_malformed" in {n for n, _ in ins.anomalies})


def test_long_value_is_scanned_in_windows(engine):
    text = "说明" * 3000 + f"身份证{RID}" + "。" * 3000 + "手机13800138000"
    hits = engine.inspect(json.dumps({"note": text}, ensure_ascii=False).encode(), "application/json").hits
    assert [h.field_type for h in hits] == ["resident_id_cn", "mobile_cn"]


def test_field_ids(engine, catalog):
    assert engine.field_ids == catalog.ids
    first_six = {"resident_id_cn", "mobile_cn", "email", "bank_card", "person_name", "postal_address"}
    assert first_six <= engine.field_ids


def test_a_detector_bug_becomes_an_anomaly_without_the_value(catalog, monkeypatch):
    eng = Engine(catalog, Policy(), SUBJECT_KEY)

    def boom(value, info):
        raise RuntimeError(f"bad value {value}")

    monkeypatch.setattr(eng, "_resolved", boom)
    ins = eng.inspect(json.dumps({"sfzh": RID}).encode(), "application/json")
    assert ins.hits == ()
    assert ins.anomalies == (("detector_error", "RuntimeError at $.sfzh"),)


def test_a_cut_minified_export_counts_every_person(engine):
    # A browser's HAR, ICAP's max_body_bytes or the wire agent's per-flow cap cuts the body: its complete
    # records stay one person each (a cut body scanned as one text line was one "person").
    ids = [rid(f"1101051990010112{i}") for i in range(7)]
    names = ["张三", "李四", "王五", "赵六", "钱七", "孙八", "周九"]
    people = [{"name": n, "idNo": i, "mobile": f"1381234567{k}"}
              for k, (n, i) in enumerate(zip(names, ids, strict=True))]
    body = json.dumps({"code": 0, "customers": people}, ensure_ascii=False, separators=(",", ":")).encode()
    cut = body[:body.index(ids[6].encode()) + 9]          # inside the seventh person's ID number
    inspection = engine.inspect(cut, "application/json")
    found = [(h.record_index, h.value_key) for h in inspection.hits if h.field_type == "resident_id_cn"]
    assert len(found) == len({r for r, _ in found}) == len({k for _, k in found}) == 6, found
    assert "json_truncated" in {name for name, _ in inspection.anomalies}
