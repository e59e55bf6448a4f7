"""egresswatch agent: packets in, records out. Never imports collector."""
