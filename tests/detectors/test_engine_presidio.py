"""The engine's free scan calls each flagged type's presidio PatternRecognizer directly instead of going
through AnalyzerEngine.analyze (half the detectors' time was the analyzer's orchestration). These tests hold
the direct path to the analyzer's answer: after arbitration, the same spans with the same scores."""

from __future__ import annotations

import pytest
from faker import Faker

from detectors.engine import Engine
from detectors.recognizers import LANGUAGE, Candidate, resolve_overlaps
from tests.detectors.helpers import card, rid


def _texts(fake: Faker) -> list[str]:
    out = [
        f"客户{fake.name()}，身份证号{rid('33010619900307123')}，手机{fake.phone_number()}，"
        f"地址{fake.address()}，邮箱 {fake.email()}",
        f"card {card('622848', 19)} or {card('4111')}; order 2026112800012345; ts 1732780800123",
        "统一社会信用代码 91330100MA2B0L3X6K, passport E12345678, 车牌 浙A12345, VIN LSVAU2180N2183294",
        "HL7 MSH|^~\\&|HIS|HOSP|||20260101||ADT^A01|1|P|2.5 PID|||123||张^三 ICD-10 E11.9 rs12345 AG",
        f"{fake.name()} 在 {fake.city()} 下单，坐标 30.274085,120.155070，IMEI 490154203237518",
        "",
        "纯文本没有任何个人信息 plain ascii text 12345 67890",
    ]
    out += [fake.text(max_nb_chars=200) + " " + fake.ssn() + " " + fake.phone_number() for _ in range(20)]
    return out


def _direct(engine: Engine, text: str, entity: str) -> set[Candidate]:
    recognizer = engine._recognizers.free[entity]
    return {Candidate(entity, s, e, round(score, 6), False) for s, e, score in recognizer.spans(text)}


def _via_analyzer(engine: Engine, text: str, entity: str) -> set[Candidate]:
    results = engine._recognizers.analyzer.analyze(text=text, language=LANGUAGE, entities=[entity])
    return {Candidate(r.entity_type, r.start, r.end, round(r.score, 6), False) for r in results}


def test_direct_recognizer_spans_equal_analyzer_engine_after_arbitration(engine: Engine, fake: Faker) -> None:
    priority = {ft.id: ft.priority for ft in engine.catalog.field_types}
    compared = 0
    for text in _texts(fake):
        for entity in sorted(engine._recognizers.free):
            direct = resolve_overlaps(_direct(engine, text, entity), priority)
            via = resolve_overlaps(_via_analyzer(engine, text, entity), priority)
            assert direct == via, (entity, text[:40])
            compared += len(via)
    # The table must exercise real matches, not only empty answers.
    assert compared >= 40


@pytest.mark.parametrize("entity", ["resident_id_cn", "mobile_cn", "bank_card", "email"])
def test_direct_path_finds_what_the_analyzer_finds_for_common_types(engine: Engine, fake: Faker,
                                                                     entity: str) -> None:
    text = _texts(fake)[0] + " " + _texts(fake)[1]
    assert _via_analyzer(engine, text, entity), f"the table has no {entity} for the analyzer to find"
    assert {(c.start, c.end) for c in _direct(engine, text, entity)} >= \
        {(c.start, c.end) for c in _via_analyzer(engine, text, entity)}
