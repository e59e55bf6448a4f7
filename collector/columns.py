"""What each uploaded column may hold (DESIGN §3), checked on ingest so that no agent — an old one, a
broken one, a hostile one — stores a raw value or an unbounded key in a column the DESIGN fixes.

The schema check (ingest.py) says which columns a batch has and their types; this module says what their
values may be: ids and names in their fixed syntax (a flow id is not a 60 KB string charged as a key; a
server name is a host name, not `张三`), field types from the catalog, important-data sub-categories
"1".."40". Anomaly details are free text written by the agent; digit runs and CJK text in them are
replaced, since a detail describes traffic and never needs a value (agent/anomalies.py shapes its own).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from agent.coverage import ALPN_RE, UNINSPECTED_REASONS, VISIBILITIES
from agent.records import DST_IP_SOURCES
from collector.errors import RequestProblem

__all__ = ["check_columns"]

_IP = (r"[0-9A-Fa-f.:]{2,45}", "an IP address")
# column -> (full-match pattern, what it must be)
FORMATS: dict[str, tuple[str, str]] = {
    "flow_id": (r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", "an agent flow id (1-128 of [A-Za-z0-9._:-])"),
    "server_name": (r"[A-Za-z0-9_.:\[\]-]{1,253}", "a host name or an IP address"),
    "src_ip": _IP,
    "dst_ip": _IP,
    "transport": (r"[a-z0-9_]{1,16}", "a transport name"),
    "app": (r"[a-z0-9_]{1,16}", "an application protocol name"),
    "dst_country": (r"[A-Z]{2}", "an ISO 3166-1 alpha-2 code"),
    "layer": (r"[a-z0-9_.-]{1,64}", "an anomaly layer"),
    "name": (r"[a-z0-9_.-]{1,64}", "an anomaly name"),
    "source": (r"[A-Za-z0-9_.:@-]{1,64}", "an interface name or pcap"),
    "key_id": (r"[0-9a-f]{8}", "8 hex digits"),
    "initiator": (r"internal|external", "internal or external"),
    "visibility": ("|".join(VISIBILITIES), "one of " + ", ".join(VISIBILITIES)),
    "alpn": (ALPN_RE.pattern, "an ALPN protocol id (1-32 of [A-Za-z0-9._/+-])"),
    "uninspected_reason": ("|".join(UNINSPECTED_REASONS), "one of " + ", ".join(UNINSPECTED_REASONS)),
    "dst_ip_source": ("|".join(DST_IP_SOURCES), "one of " + ", ".join(DST_IP_SOURCES)),
}
SUBCATEGORIES = pa.array([str(i) for i in range(1, 41)], pa.string())
# In an anomaly's free-text detail: a run of 5+ digits (with separators) or of CJK text is never needed.
_DETAIL_VALUES = ((r"\d(?:[\s\-_.,:/()+]*\d){4,}", "<digits>"),
                  (r"[\x{3400}-\x{9fff}\x{f900}-\x{faff}]+", "<text>"))


def _refuse(column: str, bad: int, what: str) -> RequestProblem:
    return RequestProblem(422, f"column {column}", f"column {column}: {bad} value(s) are not {what}")


def check_columns(table: pa.Table, field_types: frozenset[str]) -> pa.Table:
    """`table` with anomaly details scrubbed; raises RequestProblem(422, "column X") for a value outside
    its column's domain."""
    for column, (pattern, what) in FORMATS.items():
        if column in table.column_names:
            # Each distinct value once: a batch repeats its ids and names (100,000 pi_values rows carry a
            # few thousand flow ids), and the regex is what costs.
            values = pc.unique(table.column(column))
            wrong = pc.invert(pc.match_substring_regex(values, f"^(?:{pattern})$"))
            if pc.any(wrong).as_py():      # nulls are the schema check's business
                bad = int(pc.sum(pc.is_in(table.column(column), value_set=values.filter(wrong))).as_py())
                raise _refuse(column, bad, what)
    if "field_type" in table.column_names:
        known = pa.array(sorted(field_types), pa.string())
        bad = int(pc.sum(pc.invert(pc.is_in(table.column("field_type"), value_set=known))).as_py() or 0)
        if bad:
            raise _refuse("field_type", bad, "a field type id of the catalog")
    if "important_subcategory" in table.column_names:
        sub = table.column("important_subcategory")
        bad = int(pc.sum(pc.and_(pc.is_valid(sub), pc.invert(pc.is_in(sub, value_set=SUBCATEGORIES))))
                  .as_py() or 0)
        if bad:
            raise _refuse("important_subcategory", bad, 'an appendix sub-category "1".."40"')
    if "uninspected_reason" in table.column_names and "inspected" in table.column_names:
        # A reason says why the detectors saw nothing: an inspected flow has none (DESIGN §3).
        both = pc.and_(table.column("inspected"), pc.is_valid(table.column("uninspected_reason")))
        bad = int(pc.sum(both).as_py() or 0)
        if bad:
            raise _refuse("uninspected_reason", bad, "null on an inspected flow")
    if "detail" in table.column_names:
        i = table.schema.get_field_index("detail")
        detail = table.column(i)
        for pattern, placeholder in _DETAIL_VALUES:
            detail = pc.replace_substring_regex(detail, pattern, placeholder)
        table = table.set_column(i, table.schema.field(i), detail)
    return table
