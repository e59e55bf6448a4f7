"""Flow sampling is deterministic per flow and direction-independent."""

from __future__ import annotations

import pytest

from agent.sampling import FlowSampler


def test_full_rate_inspects_every_flow_with_weight_one() -> None:
    s = FlowSampler(1.0)
    assert s.sampled("10.0.0.1", 1234, "8.8.8.8", 443, "tcp") and s.weight == 1.0


def test_both_directions_of_a_flow_get_the_same_decision() -> None:
    s = FlowSampler(0.3)
    for port in range(1000, 1200):
        assert s.sampled("10.0.0.1", port, "8.8.8.8", 80, "tcp") == s.sampled("8.8.8.8", 80, "10.0.0.1",
                                                                                port, "tcp")


def test_the_sampled_fraction_is_close_to_the_rate() -> None:
    s = FlowSampler(0.25)
    hits = sum(s.sampled("10.0.0.1", p, "8.8.8.8", 80, "tcp") for p in range(20000, 40000))
    assert 0.23 < hits / 20000 < 0.27
    assert s.weight == 4.0


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5])
def test_a_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError):
        FlowSampler(rate)
