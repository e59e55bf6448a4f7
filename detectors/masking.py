"""Masked evidence samples (DESIGN §3 `masked_samples`): enough to recognise a value's kind, never the value.

Each field type names its masker in configs/field_types.yaml. Every masker returns a string that differs
from its input; a value too short to mask safely becomes stars only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SEPARATORS = re.compile(r"[\s\-]")
_DIVISION = re.compile(r"^(.{1,12}?(?:特别行政区|自治区|省|市))")


def _stars(n: int) -> str:
    return "*" * max(n, 1)


def _keep(value: str, head: int, tail: int) -> str:
    """Keep `head` and `tail` characters when at least three characters stay hidden."""
    n = len(value)
    if n < head + tail + 3:
        return value[:1] + _stars(n - 1) if n >= 4 else _stars(n)
    return value[:head] + _stars(n - head - tail) + (value[n - tail:] if tail else "")


def mask_generic(value: str) -> str:
    return _keep(value.strip(), 1, 1)


def mask_resident_id(value: str) -> str:
    # 330***********123X: area prefix and the last four (sequence + check) as on printed receipts.
    return _keep(_SEPARATORS.sub("", value).upper(), 3, 4)


def mask_mobile(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) > 11 and digits.endswith(digits[-11:]) and digits[:-11] in ("86", "0086"):
        digits = digits[-11:]
    return _keep(digits, 3, 4) if len(digits) == 11 else _keep(digits, 2, 2)


def mask_email(value: str) -> str:
    local, sep, domain = value.strip().rpartition("@")
    if not sep or not local:
        return mask_generic(value)
    return f"{local[0]}***@{domain.lower()}"


def mask_bank_card(value: str) -> str:
    return _keep(re.sub(r"\D", "", value), 6, 4)


def mask_person_name(value: str) -> str:
    name = " ".join(value.split())
    if not name:
        return "*"
    if name.isascii():
        return name[0] + "***"
    # 张* / 张**: the surname's first character, one star per remaining character.
    return name[0] + _stars(len(name.replace(" ", "")) - 1)


def mask_postal_address(value: str) -> str:
    # Keep the first administrative division only (浙江省***, 上海市***) — and only when it is one: the
    # division pattern alone would keep whatever stands before 省/市 (张三收浙江省***). The kept prefix must
    # pass the same check the collector applies to samples on ingest (a known place, no name, no digits).
    from detectors.samples import is_masked  # samples imports this module's pattern

    text = "".join(value.split())
    m = _DIVISION.match(text)
    if m and len(m.group(1)) < len(text):
        candidate = m.group(1) + "***"
    elif len(text) > 4:
        candidate = text[:2] + "***"
    else:
        return _stars(len(text))
    return candidate if is_masked(candidate) else "***"


def mask_secret(value: str) -> str:
    # Passwords and codes: nothing of the value, not even its length.
    return "******"


def mask_blob(value: str) -> str:
    # Images, vectors, sequences: the kind and the size, never content (a masked 100 kB blob is no sample).
    text = value.strip()
    if "base64," in text[:40]:
        text = text.split("base64,", 1)[1]
    kind = "jpeg" if text.startswith("/9j/") else "png" if text.startswith("iVBOR") else None
    if kind is None and re.fullmatch(r"[\s\[\]\d.,eE+-]+", text):
        numbers = [p for p in re.split(r"[,\s\[\]]+", text) if p]
        kind = f"vector[{len(numbers)}]"
    return f"<{kind or 'data'}:{len(text)} chars>"


MASKERS: dict[str, Callable[[str], str]] = {
    "generic": mask_generic,
    "resident_id": mask_resident_id,
    "mobile": mask_mobile,
    "email": mask_email,
    "bank_card": mask_bank_card,
    "person_name": mask_person_name,
    "postal_address": mask_postal_address,
    "secret": mask_secret,
    "blob": mask_blob,
}


def mask(masker: str, value: str) -> str:
    """Mask `value` with the named masker; the result never equals a non-empty input."""
    out = MASKERS.get(masker, mask_generic)(value)
    if out and out == value.strip():
        return _stars(len(out))
    return out
