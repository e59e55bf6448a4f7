"""How far the agent could look into a flow: its record's `visibility` and `uninspected_reason` (DESIGN §3).

Pure functions over `CoverageFacts`, the few facts the pipeline knows when it writes a flow's row, so the
decision table is tested on its own (tests/agent/test_coverage.py) and the report's coverage numbers
(collector/coverage.py) rest on one definition.

`facts_of(summary, ...)` takes the flow's `Summary` (agent/protocols/handler.py): its app, whether it was
encrypted, decrypted and inspected, the decryptor's reason, whether a budget cut a body, the ALPN.

The pipeline adds what the session does not know: whether the flow is egress the agent would inspect
(cross-border, from an internal source to an external destination), whether the sampler picked it, its
application bytes in the row's interval and the bytes the capture missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.protocols.handler import Summary

__all__ = ["DECRYPT_REASONS", "PLAINTEXT_APPS", "UNINSPECTED_REASONS", "VISIBILITIES", "CoverageFacts",
           "alpn_of", "facts_of", "uninspected_reason", "visibility"]

# The vocabularies of DESIGN §3. `capture_gap` is ours: a hole in the capture broke a TLS record stream or
# an HTTP message before anything reached the detectors.
VISIBILITIES = ("plaintext", "decrypted", "proxy", "har", "encrypted", "none")
UNINSPECTED_REASONS = ("not_sampled", "no_secrets", "unsupported_cipher", "decrypt_failed", "capture_gap",
                       "budget_exceeded", "unknown_protocol")
DECRYPT_REASONS = frozenset({"no_secrets", "unsupported_cipher", "decrypt_failed", "capture_gap"})
# Cleartext protocols the agent parses: HTTP/1.x, HTTP/2 with prior knowledge (h2c) and gRPC on it, DNS.
PLAINTEXT_APPS = frozenset({"http", "http2", "grpc", "dns"})
# An ALPN protocol id as the collector accepts it (collector/columns.py): registered ids are short tokens;
# anything else (RFC 7301 allows any bytes) is left out rather than carried into a record.
ALPN_RE = re.compile(r"[A-Za-z0-9._/+-]{1,32}")


@dataclass(frozen=True, slots=True)
class CoverageFacts:
    egress: bool            # cross-border, internal source, external destination: the agent would inspect it
    sampled: bool           # the flow sampler picked it (always True at flow_rate 1)
    app: str
    payload_bytes: int      # application bytes of the row, both directions (0: handshake only or nothing)
    missed_bytes: int       # sequence gaps never filled (the capture lost them)
    encrypted: bool
    decrypted: bool
    decrypt_reason: str | None
    budget_exceeded: bool
    inspected: bool
    hint: str | None = None


def visibility(f: CoverageFacts) -> str:
    """What the agent could read of the flow's application data, whether or not it inspected it."""
    if f.hint in VISIBILITIES:
        return f.hint
    if f.payload_bytes <= 0:
        return "none"
    if f.decrypted:
        return "decrypted"
    if f.encrypted:
        return "encrypted"
    return "plaintext" if f.app in PLAINTEXT_APPS else "none"


def uninspected_reason(f: CoverageFacts) -> str | None:
    """Why an eligible flow's content did not reach the detectors (DESIGN §3); None when it did, when the
    flow is not eligible (not an export: domestic, or not from an internal source), and when there was no
    content (no payload, or requests without body or query). The first reason that holds wins, in the order
    a flow meets them: sampling, encryption, the capture, the budgets, the parser."""
    if f.inspected or not f.egress or f.payload_bytes <= 0:
        return None
    if not f.sampled:
        return "not_sampled"
    seen = visibility(f)
    if seen == "encrypted":
        return f.decrypt_reason if f.decrypt_reason in DECRYPT_REASONS else "no_secrets"
    if f.missed_bytes > 0:
        return "capture_gap"
    if f.budget_exceeded:
        return "budget_exceeded"
    if seen == "none":
        return "unknown_protocol"
    return None


def alpn_of(summary: Summary) -> str | None:
    """The flow's ALPN protocol when it is a plain token, else None."""
    alpn = summary.alpn
    return alpn if alpn is not None and ALPN_RE.fullmatch(alpn) else None


def facts_of(summary: Summary, *, egress: bool, sampled: bool, payload_bytes: int,
             missed_bytes: int) -> CoverageFacts:
    """The facts of one flow row from its handlers' summary and the pipeline."""
    return CoverageFacts(
        egress=egress, sampled=sampled, app=summary.app,
        payload_bytes=payload_bytes, missed_bytes=missed_bytes,
        encrypted=summary.encrypted, decrypted=summary.decrypted, decrypt_reason=summary.reason,
        budget_exceeded=summary.truncated, inspected=summary.inspected, hint=summary.visibility,
    )
