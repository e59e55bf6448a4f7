"""Consistency checks: one SQL file per check, run by runner.py."""
