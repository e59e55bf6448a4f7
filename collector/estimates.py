"""Estimated distinct persons and distinct values when the agent sampled flows (DESIGN §5).

The exact counts of persons.py and reports.py cover inspected flows only: with sampling they are lower
bounds. This module adds an estimate of the whole with a 95 % interval, from the tables `flows`,
`record_persons` and `pi_values` over the report's scope (cross-border flows starting in the period).

Model. The agent samples flows by a keyed hash of the 5-tuple (agent/sampling.py), which behaves as an
independent Bernoulli draw per 5-tuple with probability p_j = 1 / sample_weight_j. A "flow" below is
therefore a 5-tuple: the intervals of a long flow, and later flows reusing its ports, share its draw.
A unit (a person, or a distinct value of a field type) i travels in m_i >= 1 flows and is observed when
at least one of them was sampled. m_i is not observed: only k_i, the number of sampled flows that
carried the unit.

Why not a per-unit Horvitz–Thompson estimate. A unit seen in one sampled flow looks the same whether it
travels once (weight 1/p is right) or five times (observed with probability 1 - (1 - p)^5; at p = 0.25
weighting per unit overcounts such persons about twofold, and 2.5-fold at p = 0.1 for persons in three
flows). No weight g(k_i) fixes that unit by unit; the population's frequency counts do. Write
q_j = 1 - p_j, Q_i = prod over i's flows of q_j (i unseen) and

    S1 = sum over units seen in exactly one sampled flow j of (w_j - 1)        E[S1] = sum_i Q_i m_i
    S2 = sum over units seen in exactly two sampled flows j, l of (w_j - 1)(w_l - 1)
                                                                          E[S2] = sum_i Q_i m_i (m_i - 1) / 2

The expected number of unseen units F0 = sum_i Q_i is bracketed by them: F0 <= E[S1] since m_i >= 1, and
F0 >= E[S1]^2 / E[S1 + 2 S2] by Cauchy–Schwarz (sum Q m)^2 <= (sum Q)(sum Q m^2). This is Chao's lower
bound in the form Chao & Lin (Biometrics 68, 2012) give for sampling a known fraction of units, with each
flow's own p. The report uses, over S observed units,

    estimate  N = S + S1^2 / (S1 + 2 S2)        (S when S1 = 0)
    upper     U = S + S1

N is exact in expectation when every unit travels in the same number of flows — in particular in the
common case of one flow per unit, where S2 = 0 and N = U = sum of the units' weights (observed / p for one
rate: the plain Horvitz–Thompson estimator). When flow counts vary across units (some persons come back,
some do not), N errs low and U high; the data cannot tell where in between the truth lies. (At p = 0.25
with one person in ten in two flows, N runs about 4 % low: tests/collector/test_estimates.py.)

Interval. Persons travel in batches (one flow, many records), so the sampling unit is the flow, not the
person. Each estimator is linearised (its derivative in S, S1, S2 gives a value z_i per unit), z_i is split
evenly over the k_i sampled flows that carried the unit, and the Bernoulli variance estimator
sum over sampled flows of (1 - p_j) u_j^2 is applied to the flow totals u_j (the "ultimate cluster"
variance; exact for the Horvitz–Thompson case). The interval runs from N - 1.96 sd(N), clipped below at the
exact count S, to U + 1.96 sd(U): sampling error plus the range the data leave open. Values are rounded
to whole units: S <= low <= value <= high.

Flows with sample_weight 1 contribute no extrapolation (w - 1 = 0, 1 - p = 0), so a scope whose flows
all have weight 1 gets value = low = high = the exact count. The estimate extrapolates to the flows the
agent would have inspected: encrypted payloads stay invisible whether sampled or not. The checks keep the
exact lower bounds; estimates are for the reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import duckdb

from collector.checks.views import use_period
from collector.report_models import Estimate

__all__ = ["METHOD", "FlowTerms", "SampledEstimates", "estimate", "sampled_estimates", "sampling_rate_min"]

METHOD = "chao_lin_flow_sample"
Z95 = 1.959963984540054
ZERO = Estimate(value=0, low=0, high=0, method=METHOD)
# A weight of 1 + float noise is no sampling.
_SAMPLED = 1.0 + 1e-9

# The report's flows (views.sql period_flows) with their sampling unit `su`: the 5-tuple the agent's sampler
# hashes, so the intervals of a long flow and flows that reuse a 5-tuple, sampled alike, are one draw. A
# weight below 1 reads as 1. Not filtered on `inspected`: units are whatever the exact counts count, so an
# estimate never falls below.
_SCOPED = """
tuples AS (
    SELECT f.flow_id, f.destination AS dest, f.sample_weight,
           concat_ws('|', f.transport, f.src_ip, f.src_port, f.dst_ip, f.dst_port) AS su
    FROM period_flows f
),
scoped AS (
    SELECT flow_id, dest, su,
           greatest(coalesce(max(sample_weight) OVER (PARTITION BY su), 1.0), 1.0) AS w
    FROM tuples
)"""

_RATE_SQL = f"""
SELECT min(1.0 / f.sample_weight) FROM period_flows f WHERE f.inspected AND f.sample_weight > {_SAMPLED}
"""

# One incidence (group, unit, sampling unit) per distinct unit and sampled 5-tuple; group = (g1, g2). g2 NULL
# is the enterprise-wide group of the persons.
_PERSON_UNITS = """
SELECT DISTINCT k.kind AS g1, CASE WHEN b.by_dest THEN s.dest END AS g2, rp.person_id AS unit, s.su, s.w
FROM record_persons rp
JOIN scoped s ON s.flow_id = rp.flow_id
CROSS JOIN (VALUES ('nonsensitive'), ('sensitive')) k(kind)
CROSS JOIN (VALUES (false), (true)) b(by_dest)
WHERE CASE k.kind WHEN 'sensitive' THEN rp.sensitive ELSE rp.nonsensitive END
"""

_VALUE_UNITS = """
SELECT DISTINCT p.field_type AS g1, s.dest AS g2, p.value_key AS unit, s.su, s.w
FROM pi_values p
JOIN scoped s ON s.flow_id = p.flow_id
"""

# Per (group, sampled 5-tuple): its weight and the sums over the units it carried of 1/k, s1/k and s2/k.
_TERMS_SQL = """
WITH {scoped},
inc AS ({units}),
units AS (
    SELECT g1, g2, unit, count(*) AS k,
           CASE WHEN count(*) = 1 THEN max(w) - 1 ELSE 0 END AS s1,
           CASE WHEN count(*) = 2 THEN (max(w) - 1) * (min(w) - 1) ELSE 0 END AS s2
    FROM inc
    GROUP BY ALL
)
SELECT i.g1, i.g2, i.su, any_value(i.w), sum(1.0 / u.k), sum(u.s1 / u.k), sum(u.s2 / u.k)
FROM inc i
JOIN units u ON u.g1 = i.g1 AND u.g2 IS NOT DISTINCT FROM i.g2 AND u.unit = i.unit
GROUP BY i.g1, i.g2, i.su
ORDER BY i.g1, i.g2, i.su
"""


@dataclass(frozen=True, slots=True)
class FlowTerms:
    """One sampled flow's share of a group's units: `observed` = sum of 1/k_i, `single` = sum of s1_i/k_i,
    `double` = sum of s2_i/k_i over the units it carried (k_i: sampled flows carrying unit i). A "flow"
    here is a 5-tuple: every flow record with it was one sampling draw."""

    weight: float
    observed: float
    single: float
    double: float


def estimate(flows: Iterable[FlowTerms]) -> Estimate:
    """The estimate and 95 % interval of the units a group's sampled flows carried (module docstring)."""
    flows = list(flows)
    seen = sum(f.observed for f in flows)
    s1 = sum(f.single for f in flows)
    s2 = sum(f.double for f in flows)
    if s1 <= 0.0:
        unseen, d1, d2 = 0.0, 1.0, 0.0   # nothing to extrapolate; d1 would multiply zeros only
    else:
        den = s1 + 2.0 * s2
        unseen, d1, d2 = s1 * s1 / den, s1 * (s1 + 4.0 * s2) / (den * den), -2.0 * s1 * s1 / (den * den)
    var_n = var_u = 0.0
    for f in flows:
        q = 1.0 - 1.0 / f.weight
        var_n += q * (f.observed + d1 * f.single + d2 * f.double) ** 2
        var_u += q * (f.observed + f.single) ** 2
    observed = round(seen)
    n = seen + unseen
    value = max(observed, round(n))
    # Sums of 1/k are floats (1/3 + 1/3 + 1/3 + 2 is 3.0000000000000004): round off that noise before
    # floor/ceil, or a bound moves by a whole person.
    low = max(observed, math.floor(round(n - Z95 * math.sqrt(var_n), 9)))
    high = max(value, math.ceil(round(seen + s1 + Z95 * math.sqrt(var_u), 9)))
    return Estimate(value=value, low=low, high=high, method=METHOD)


def _terms(
    con: duckdb.DuckDBPyConnection, units: str, period: tuple[datetime, datetime]
) -> dict[tuple[str, str | None], Estimate]:
    sql = _TERMS_SQL.format(scoped=_SCOPED, units=units)
    groups: dict[tuple[str, str | None], list[FlowTerms]] = {}
    use_period(con, period)
    for g1, g2, _su, w, observed, single, double in con.execute(sql).fetchall():
        groups.setdefault((g1, g2), []).append(FlowTerms(float(w), float(observed), float(single),
                                                         float(double)))
    return {g: estimate(terms) for g, terms in groups.items()}


def sampling_rate_min(con: duckdb.DuckDBPyConnection, period: tuple[datetime, datetime]) -> float | None:
    """The smallest 1 / sample_weight among inspected cross-border flows of the period, or None when
    every one of them has weight 1 (no sampling: the counts are exact)."""
    use_period(con, period)
    (rate,) = con.execute(_RATE_SQL).fetchone()
    return None if rate is None else float(rate)


@dataclass(frozen=True, slots=True)
class SampledEstimates:
    """Every estimate of a sampled report; a scope without units estimates 0 (exactly)."""

    rate_min: float
    persons: dict[tuple[str, str | None], Estimate]   # (kind, destination or None for the enterprise)
    values: dict[tuple[str, str | None], Estimate]    # (field type, destination)

    def persons_of(self, kind: str, dest: str | None = None) -> Estimate:
        return self.persons.get((kind, dest), ZERO)

    def values_of(self, field_type: str, dest: str) -> Estimate:
        return self.values.get((field_type, dest), ZERO)


def sampled_estimates(
    con: duckdb.DuckDBPyConnection, period: tuple[datetime, datetime]
) -> SampledEstimates | None:
    """Estimates of persons (enterprise and per destination, by kind) and of distinct values (per
    destination and field type), or None when the period's inspected flows were not sampled."""
    rate = sampling_rate_min(con, period)
    if rate is None:
        return None
    return SampledEstimates(rate_min=rate, persons=_terms(con, _PERSON_UNITS, period),
                            values=_terms(con, _VALUE_UNITS, period))
