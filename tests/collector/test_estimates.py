"""Estimates of persons and distinct values under flow sampling (collector/estimates.py): a table of small
cases with known answers, a property over random incidences, and a simulated population sampled by the
agent's own FlowSampler."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.sampling import FlowSampler
from collector.estimates import METHOD, FlowTerms, SampledEstimates, estimate, sampled_estimates
from collector.models import Estimate
from collector.persons import build_record_persons
from collector.store import Store

from .builders import PERIOD, flow, pi, write_records

# A scope as data: one (sample_weight, person numbers) per inspected flow, each flow its own 5-tuple. A
# person number is a mobile value key, so the same number on two flows is one person seen twice.
Flows = tuple[tuple[float, tuple[int, ...]], ...]


def _estimates(
    root: Path, flows: Flows, uninspected: int = 0, same_tuple: bool = False
) -> SampledEstimates | None:
    weight = max((w for w, _ in flows), default=1.0)
    records = [flow(f"f{i}", sample_weight=w, src_port=40000 if same_tuple else 40000 + i)
               for i, (w, _) in enumerate(flows)]
    records += [flow(f"n{i}", inspected=False, sample_weight=weight, src_port=50000 + i)
                for i in range(uninspected)]
    values = [pi(f"f{i}", r, "mobile_cn", person, identifier=True)
              for i, (_, persons) in enumerate(flows) for r, person in enumerate(persons)]
    write_records(root, records, pi_values=values)
    with Store() as store:
        store.load_records(root)
        build_record_persons(store.con)
        return sampled_estimates(store.con, PERIOD)


def _observed(flows: Flows) -> int:
    return len({p for _, persons in flows for p in persons})


CASES = [
    # name, flows, expected estimate (None: not sampled, no estimate)
    ("unsampled: every flow weight 1", ((1.0, (1, 2)), (1.0, (3,)), (1.0, (1,))), None),
    ("one flow each at p = 0.5: twice the observed", ((2.0, (1, 2)), (2.0, (3,)), (2.0, (4,))), 8),
    ("a person in two sampled flows counts for less than 1/p",      # 6 if all three were seen once
     ((2.0, (1,)), (2.0, (1,)), (2.0, (2,)), (2.0, (3,))), 4),       # S=3, S1=2, S2=1: 3 + 4/4
    ("mixed weights, one flow each: the sum of the weights", ((2.0, (1,)), (4.0, (2,)), (1.0, (3,))), 7),
    ("mixed weights, a person in flows of both weights", ((2.0, (1,)), (4.0, (1, 2))), 3),  # 2 + 9/9
    ("sampled, but the persons' flows all had weight 1", ((1.0, (1, 2)), (4.0, ())), 2),
]


@pytest.mark.parametrize(("flows", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_estimate_table(tmp_path: Path, flows: Flows, expected: int | None) -> None:
    est = _estimates(tmp_path, flows)
    if expected is None:
        assert est is None
        return
    assert est is not None
    e = est.persons_of("nonsensitive")
    assert e.value == expected and e.method == METHOD
    assert _observed(flows) <= e.low <= e.value <= e.high
    assert est.persons_of("nonsensitive", "booking.gfb-freight.example") == e   # the one destination
    assert est.values_of("mobile_cn", "booking.gfb-freight.example") == e       # values = persons here
    assert est.persons_of("sensitive") == Estimate(value=0, low=0, high=0, method=METHOD)


def test_one_flow_each_is_horvitz_thompson_with_its_bernoulli_variance(tmp_path: Path) -> None:
    # p = 0.5, flows carrying 2, 1, 1 persons: N = 2 * 4; var = sum (1 - p) (w c)^2 = 0.5 * (16 + 4 + 4)
    est = _estimates(tmp_path, ((2.0, (1, 2)), (2.0, (3,)), (2.0, (4,))), uninspected=3)
    assert est is not None and est.rate_min == 0.5
    # 1.96 * sqrt(12) = 6.79: low = max(4, floor(1.21)), high = ceil(14.79)
    assert est.persons_of("nonsensitive") == Estimate(value=8, low=4, high=15, method=METHOD)


def test_the_intervals_of_one_flow_are_one_draw(tmp_path: Path) -> None:
    # Two records of one 5-tuple (a long flow cut in two): person 1 in both is seen in one flow, not two.
    est = _estimates(tmp_path, ((2.0, (1, 2)), (2.0, (1,))), same_tuple=True)
    assert est is not None and est.persons_of("nonsensitive").value == 4


def test_the_lowest_rate_is_reported(tmp_path: Path) -> None:
    est = _estimates(tmp_path, ((2.0, (1,)), (10.0, (2,)), (1.0, (3,))))
    assert est is not None and est.rate_min == pytest.approx(0.1)


def test_a_batch_of_persons_in_one_flow_is_less_certain_than_persons_in_their_own_flows() -> None:
    # Ten persons behind one sampled flow stand or fall together: the flow is the sampling unit.
    batch = estimate([FlowTerms(weight=4.0, observed=10.0, single=30.0, double=0.0)])
    spread = estimate([FlowTerms(weight=4.0, observed=1.0, single=3.0, double=0.0)] * 10)
    assert batch.value == spread.value == 40
    assert batch.high - batch.low > spread.high - spread.low


def test_repeat_visitors_lower_the_estimate_and_widen_the_interval_upwards(tmp_path: Path) -> None:
    # 18 persons at p = 0.25: all in one flow each, or 16 so and 2 seen in two flows each
    once = _estimates(tmp_path / "once", tuple((4.0, (p,)) for p in range(18)))
    repeat = _estimates(tmp_path / "repeat", tuple((4.0, (p,)) for p in (*range(18), 16, 17)))
    assert once is not None and repeat is not None
    e_once, e_repeat = once.persons_of("nonsensitive"), repeat.persons_of("nonsensitive")
    assert e_once.value == 72
    assert e_repeat.value == round(18 + 48 ** 2 / (48 + 2 * 18)) == 45    # S = 18, S1 = 16 * 3, S2 = 2 * 9
    assert e_repeat.high >= 18 + 48                                         # the upper bound S + S1


# --- properties -----------------------------------------------------------------------------------------

_flow = st.tuples(st.sampled_from([1.0, 1.0, 2.0, 4.0, 10.0]),
                  st.lists(st.integers(0, 30), max_size=6, unique=True).map(tuple))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_flow, min_size=1, max_size=12).map(tuple))
@example(((1.0, (1, 0, 2)), (1.0, (0,)), (2.0, ()), (1.0, (0,))))   # thirds summing past 3 in floats
def test_the_estimate_is_at_least_the_exact_count_and_inside_its_interval(flows: Flows) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        est = _estimates(Path(tmp), flows)
    if all(w == 1.0 for w, _ in flows):
        assert est is None
        return
    assert est is not None
    exact = _observed(flows)
    for e in (est.persons_of("nonsensitive"), est.values_of("mobile_cn", "booking.gfb-freight.example")):
        assert exact <= e.low <= e.value <= e.high
        if all(w == 1.0 for w, persons in flows if persons):   # nothing to extrapolate from
            assert e.value == e.high == exact


# --- a simulated population ----------------------------------------------------------------------------

def _simulate(root: Path, persons: int, repeat_share: float, sampler: FlowSampler) -> SampledEstimates | None:
    """Persons travel in batches of 1–3 records per flow, a share of them in two flows; `sampler` decides
    over the flows' synthetic 5-tuples, as the agent does; only sampled flows carry pi_values."""
    rng = random.Random(2026)
    slots = [p for p in range(persons) for _ in range(2 if rng.random() < repeat_share else 1)]
    rng.shuffle(slots)
    records, values, start = [], [], 0
    while start < len(slots):
        batch = slots[start:start + rng.randint(1, 3)]
        fid, port = f"s{len(records)}", 20000 + len(records)
        inspected = sampler.sampled("10.0.0.5", port, "198.51.100.10", 443, "tcp")
        records.append(flow(fid, src_port=port, inspected=inspected, sample_weight=sampler.weight))
        if inspected:
            values += [pi(fid, r, "mobile_cn", p, identifier=True) for r, p in enumerate(batch)]
        start += len(batch)
    write_records(root, records, pi_values=values)
    with Store() as store:
        store.load_records(root)
        build_record_persons(store.con)
        return sampled_estimates(store.con, PERIOD)


@pytest.mark.parametrize("repeat_share", [0.0, 0.1], ids=["one flow each", "one in ten in two flows"])
def test_simulated_population_sampled_by_the_agent(tmp_path: Path, repeat_share: float) -> None:
    """One seeded draw with the agent's FlowSampler at rate 0.25: the true population lies in the 95 %
    interval and the estimate within 10 % of it. Not a lucky draw: over 100 other sampler salts the
    interval held the truth in 94 % (one flow each) and 100 % (repeats) of draws, the 10 % in 99 % and 95 %
    (with repeats the estimate runs about 4 % low: see collector/estimates.py)."""
    persons = 5000
    est = _simulate(tmp_path, persons, repeat_share, FlowSampler(0.25))
    assert est is not None and est.rate_min == 0.25
    e = est.persons_of("nonsensitive")
    assert e.low <= persons <= e.high
    assert abs(e.value - persons) <= 0.1 * persons
