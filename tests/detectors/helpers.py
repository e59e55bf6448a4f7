"""Helpers for the detector tests (imported by the test modules; fixtures live in conftest.py)."""

from __future__ import annotations

from detectors.engine import Engine


def found(engine: Engine, text: str, key_path: str = "text") -> list[tuple[str, str]]:
    """(field type, matched text) for every span the engine reports in `text` under `key_path`."""
    return [(c.field_type, text[c.start:c.end]) for c in engine.find_spans(text, key_path)]


def types_in(engine: Engine, body: bytes, content_type: str | None = "application/json") -> set[str]:
    return {h.field_type for h in engine.inspect(body, content_type).hits}


def rid(first17: str) -> str:
    """A resident ID with a correct MOD 11-2 check digit (calc_check_digit ignores the last character)."""
    from stdnum.cn import ric

    return first17 + ric.calc_check_digit(first17 + "0")


def card(prefix: str, length: int = 16) -> str:
    """A Luhn-valid card number starting with `prefix`."""
    from stdnum import luhn

    body = (prefix + "0123456789" * 2)[: length - 1]
    return body + luhn.calc_check_digit(body)
