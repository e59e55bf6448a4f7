"""egresswatch detectors: bytes and a content type in, field hits out. Pure functions of their input."""
