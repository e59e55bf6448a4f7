"""The report's `observed.coverage` (DESIGN §7): how much of the period's cross-border traffic the checks
could look into, from the flow records' `visibility`, `inspected` and `uninspected_reason` (DESIGN §3,
agent/coverage.py).

Bytes are bytes out (what left: a push's request bodies, a pull's answers), over the shared view
`period_flows` (checks/views.sql), as every other count of the report. The inspected share is the bytes out
of flows the detectors actually saw over all cross-border bytes out: sampling, encryption without secrets,
capture gaps and budgets all lower it. Below `SMALL_SHARE` the report says plainly that its verdict rests
on a small share of the traffic — a "consistent" verdict over 10 % of the bytes says little about the rest.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from agent.coverage import VISIBILITIES
from collector.checks.views import use_period
from collector.models import Coverage, ReasonBytes, UninspectedDestination

__all__ = ["REASON_NAMES", "SMALL_SHARE", "TOP_DESTINATIONS", "VISIBILITY_NAMES", "coverage"]

# Below this share of cross-border bytes out inspected, the verdict rests on a small share of the traffic.
SMALL_SHARE = 0.5
# Uninspected destinations listed (largest bytes out first); the rest are counted, not listed.
TOP_DESTINATIONS = 20

# How the HTML report names them (the JSON keeps the DESIGN §3 ids).
VISIBILITY_NAMES = {
    "plaintext": "明文 plaintext", "decrypted": "已解密 decrypted", "proxy": "代理 proxy", "har": "HAR",
    "encrypted": "加密未解密 encrypted", "none": "无内容或未解析 none",
}
REASON_NAMES = {
    "not_sampled": "未抽中 not sampled", "unknown_protocol": "协议未知 unknown protocol",
    "no_secrets": "无密钥 no secrets logged", "unsupported_cipher": "密码套件不支持 unsupported cipher",
    "decrypt_failed": "解密失败 decryption failed", "capture_gap": "抓包缺失 capture gap",
    "budget_exceeded": "超出预算 budget exceeded",
}

_TOTALS_SQL = """
SELECT f.visibility, coalesce(sum(f.bytes_out), 0),
       coalesce(sum(f.bytes_out) FILTER (WHERE f.inspected), 0)
FROM period_flows f
GROUP BY f.visibility
"""

_REASONS_SQL = """
SELECT f.uninspected_reason, count(*) AS flows, coalesce(sum(f.bytes_out), 0) AS bytes_out
FROM period_flows f
WHERE NOT f.inspected
GROUP BY f.uninspected_reason
ORDER BY bytes_out DESC, flows DESC, f.uninspected_reason NULLS LAST
"""

# Per destination and reason; the destinations ranked by their uninspected bytes out. Flows that sent no
# bytes out are left out here as in `observed.uninspected` (nothing of them left the country).
_DESTINATIONS_SQL = """
WITH uninspected AS (
    SELECT f.destination, f.uninspected_reason AS reason, f.bytes_out, f.dst_country
    FROM period_flows f
    WHERE NOT f.inspected AND f.bytes_out > 0
),
ranked AS (
    SELECT destination, sum(bytes_out) AS total, count(*) AS flows, mode(dst_country) AS country,
           row_number() OVER (ORDER BY sum(bytes_out) DESC, destination) AS rank
    FROM uninspected
    GROUP BY destination
),
per_reason AS (
    SELECT destination, reason, count(*) AS flows, sum(bytes_out) AS bytes_out
    FROM uninspected
    GROUP BY destination, reason
)
SELECT r.rank, r.destination, r.total, r.flows, r.country, p.reason, p.flows, p.bytes_out,
       (SELECT count(*) FROM ranked) AS destinations
FROM ranked r JOIN per_reason p ON p.destination = r.destination
WHERE r.rank <= $top
ORDER BY r.rank, p.bytes_out DESC, p.flows DESC, p.reason NULLS LAST
"""


def coverage(con: duckdb.DuckDBPyConnection, period: tuple[datetime, datetime],
             top: int = TOP_DESTINATIONS, small_share: float = SMALL_SHARE) -> Coverage:
    """The coverage block of the period's cross-border flows."""
    use_period(con, period)
    by_visibility = dict.fromkeys(VISIBILITIES, 0)
    inspected = 0
    for seen, total, seen_inspected in con.execute(_TOTALS_SQL).fetchall():
        by_visibility[seen] = by_visibility.get(seen, 0) + int(total)
        inspected += int(seen_inspected)
    total_out = sum(by_visibility.values())
    share = inspected / total_out if total_out else None
    reasons = [ReasonBytes(reason=r, flows=int(n), bytes_out=int(b))
               for r, n, b in con.execute(_REASONS_SQL).fetchall()]
    destinations: list[UninspectedDestination] = []
    listed = 0
    for rank, dest, total, flows, country, reason, n, b, count in con.execute(
            _DESTINATIONS_SQL, {"top": top}).fetchall():
        listed = int(count)
        if len(destinations) < rank:
            destinations.append(UninspectedDestination(destination=dest, country=country, flows=int(flows),
                                                       bytes_out=int(total)))
        destinations[-1].reasons.append(ReasonBytes(reason=reason, flows=int(n), bytes_out=int(b)))
    return Coverage(
        cross_border_bytes_out=total_out, bytes_out=total_out, by_visibility=by_visibility,
        inspected_bytes_out=inspected,
        inspected_share=share, small_share_threshold=small_share,
        small_share=share is not None and share < small_share,
        uninspected_by_reason=reasons, uninspected_destinations=destinations,
        uninspected_destinations_omitted=max(0, listed - len(destinations)),
    )
