"""HL7 v2 messages (ER7, the pipe-and-hat encoding) into triples.

Segments end in CR (HL7 requires it; LF and CRLF are tolerated), fields split on `|`, repetitions on `~`,
components on `^`; the separators come from MSH-1/MSH-2 when present. Key paths name segment and field
numbers, indexes folded: `hl7.PID[*].7` for a field without components, `hl7.OBR[*].31.1` for component 1
of a field that has them (detectors/keys.py reads these as `PID-7`, `OBR-31.1` for key hints).

A person name field (XPN: PID-5 patient name, PID-6 mother's maiden name, PID-9 alias, NK1-2 next of
kin) is one value, family and given names joined (`张^三` -> `张三`, `Smith^John` -> `John Smith`): a
name split into components is no name the recognizers know, and one character alone is no name at all.

Records: each message (MSH) is one record, and each further PID segment inside one message starts another
(a merge or swap message names two patients); the segments after a PID belong to that patient.
"""

from __future__ import annotations

import re

from detectors.walkers.common import Body, Sink, Walker

_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_LINES = re.compile(r"\r\n|\r|\n")
# Fields of type XPN (extended person name) by segment: joined into one name value.
_NAME_FIELDS = frozenset({("PID", 5), ("PID", 6), ("PID", 9), ("NK1", 2), ("MRG", 7), ("IN1", 16)})
_HAN = re.compile(r"[\u4e00-\u9fff]")
# HL7 escape sequences for the delimiters themselves (\F\ \S\ \T\ \R\ \E\): values carry the characters.
_ESCAPES = (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"), ("\\R\\", "~"), ("\\E\\", "\\"))


def looks_like_hl7(text: str) -> bool:
    """An ER7 message or batch: MSH (or a batch header FHS/BHS) with its field separator first."""
    head = text.lstrip("\x0b \t\r\n")[:4]
    return head[:3] in ("MSH", "FHS", "BHS") and len(head) == 4 and not head[3].isalnum() \
        and not head[3].isspace()


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    for esc, char in _ESCAPES:
        value = value.replace(esc, char)
    return value


def join_name(components: list[str]) -> str:
    """XPN family^given^middle -> one name: Han names family first without a space, others given first."""
    family, given = [*components, "", ""][:2]
    middle = components[2] if len(components) > 2 else ""
    family = family.split("&", 1)[0]        # XPN.1 is FN: surname&own surname prefix&…
    parts = [p.strip() for p in (given, middle) if p.strip()]
    if _HAN.search(family + given):
        return family.strip() + "".join(parts)
    return " ".join([*parts, family.strip()]).strip()


def walk_hl7(text: str, sink: Sink) -> None:
    field_sep, comp_sep, rep_sep = "|", "^", "~"
    record = -1
    seen_pid = False
    for line in _LINES.split(text.strip("\x0b\x1c\r\n")):
        line = line.strip("\x0b\x1c")
        seg_id = line[:3]
        if not _SEGMENT_ID.match(seg_id):
            continue
        if seg_id in ("MSH", "FHS", "BHS") and len(line) > 3:
            field_sep = line[3]
            enc = line[4:8].split(field_sep, 1)[0]
            comp_sep = enc[0] if enc else "^"
            rep_sep = enc[1] if len(enc) > 1 else "~"
        if seg_id == "MSH" or record < 0:
            record, seen_pid = record + 1, False
        if seg_id == "PID":
            if seen_pid:
                record += 1
            seen_pid = True
        fields = line.split(field_sep)
        # MSH-1 is the field separator itself, so MSH's n-th split item is field n+1; MSH-2 holds the
        # encoding characters, never a value.
        shift, first = (1, 2) if seg_id in ("MSH", "FHS", "BHS") else (0, 1)
        for i in range(first, len(fields)):
            number = i + shift
            if fields[i] and not _emit_field(sink, seg_id, number, fields[i], comp_sep, rep_sep, record):
                return   # the budget is spent


def _emit_field(sink: Sink, seg_id: str, number: int, raw: str, comp_sep: str, rep_sep: str,
                record: int) -> bool:
    path = f"hl7.{seg_id}[*].{number}"
    for rep in raw.split(rep_sep):
        if not rep:
            continue
        comps = [_unescape(c) for c in rep.split(comp_sep)]
        if (seg_id, number) in _NAME_FIELDS:
            name = join_name(comps)
            if name and not sink.emit(path, name, record):
                return False
            continue
        if len(comps) == 1:
            if comps[0].strip() and not sink.emit(path, comps[0], record):
                return False
            continue
        for j, comp in enumerate(comps, start=1):
            if comp.strip() and not sink.emit(f"{path}.{j}", comp, record):
                return False
    return True


def _walk(body: Body, sink: Sink) -> str | None:
    # Typed application/hl7-v2, or sent as text/plain with the `MSH|^~\&` signature; read line by line as
    # text it would lose which field a value sits in. Declared JSON or XML is not HL7 v2.
    ct = body.ct
    if "json" in ct or "xml" in ct or not (("hl7" in ct and "v2" in ct) or looks_like_hl7(body.stripped)):
        return None
    walk_hl7(body.stripped, sink)
    return "hl7"


WALKER = Walker("hl7", _walk)
