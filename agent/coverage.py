"""How far the agent could look into a flow: its record's `visibility` and `uninspected_reason` (DESIGN §3).

Pure functions over `CoverageFacts`, the few facts the pipeline knows when it writes a flow's row, so the
decision table is tested on its own (tests/agent/test_coverage.py) and the report's coverage numbers
(collector/coverage.py) rest on one definition.

`facts_of(session, ...)` reads these attributes of a session (AppSession, ServedSession or a protocol
handler's session; every one through getattr with the default shown, so a session without it still works):

    app: str = "unknown"           the innermost protocol understood
    encrypted: bool = False        TLS or QUIC seen
    inspected: bool = False        a message with a body or a query string went to the detectors
    decrypted: bool = False        some application data of the TLS/QUIC flow was decrypted
    decrypt_reason: str | None = None   why it could not be: no_secrets | unsupported_cipher | decrypt_failed
    budget_exceeded: bool = False  a body budget (max_payload_bytes_per_flow, max_decompressed_bytes) cut
                                   what would have been inspected
    visibility_hint: str | None = None  a handler that knows better (ICAP "proxy", HAR "har", h2c
                                   "plaintext") says so; a value outside VISIBILITIES is ignored
    alpn: str | None = None        the negotiated ALPN protocol, else the first offered one

The pipeline adds what the session does not know: whether the flow is egress the agent would inspect
(cross-border, from an internal source to an external destination), whether the sampler picked it, its
application bytes in the row's interval and the bytes the capture missed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DECRYPT_REASONS", "PLAINTEXT_APPS", "UNINSPECTED_REASONS", "VISIBILITIES", "CoverageFacts",
           "alpn_of", "facts_of", "uninspected_reason", "visibility"]

# The vocabularies of DESIGN §3 (plan11/interfaces.md), exactly.
VISIBILITIES = ("plaintext", "decrypted", "proxy", "har", "encrypted", "none")
UNINSPECTED_REASONS = ("not_cross_border", "sampled_out", "no_payload", "unsupported_protocol", "no_secrets",
                       "unsupported_cipher", "decrypt_failed", "capture_gap", "budget_exceeded", "no_content")
DECRYPT_REASONS = frozenset({"no_secrets", "unsupported_cipher", "decrypt_failed"})
# Cleartext protocols the agent parses: an HTTP/1.x request stream, HTTP/2 with prior knowledge, DNS.
PLAINTEXT_APPS = frozenset({"http", "h2c", "dns"})
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
    """Why the detectors saw nothing of the flow; None when they did. The first reason that holds wins, in
    the order a flow meets them: the pipeline's choice (egress, sampling), the bytes, their encryption,
    the capture, the budgets, the parser, and last a parsed flow that carried no body or query."""
    if f.inspected:
        return None
    if not f.egress:
        return "not_cross_border"
    if not f.sampled:
        return "sampled_out"
    if f.payload_bytes <= 0:
        return "no_payload"
    seen = visibility(f)
    if seen == "encrypted":
        return f.decrypt_reason if f.decrypt_reason in DECRYPT_REASONS else "no_secrets"
    if f.missed_bytes > 0:
        return "capture_gap"
    if f.budget_exceeded:
        return "budget_exceeded"
    if seen == "none":
        return "unsupported_protocol"
    return "no_content"


def alpn_of(session: object) -> str | None:
    """The session's ALPN protocol when it is a plain token, else None."""
    alpn = getattr(session, "alpn", None)
    return alpn if isinstance(alpn, str) and ALPN_RE.fullmatch(alpn) else None


def facts_of(session: object | None, *, egress: bool, sampled: bool, payload_bytes: int,
             missed_bytes: int) -> CoverageFacts:
    """The facts of one flow row from its session (None: no session, nothing parsed) and the pipeline."""
    hint = getattr(session, "visibility_hint", None)
    reason = getattr(session, "decrypt_reason", None)
    return CoverageFacts(
        egress=egress, sampled=sampled,
        app=str(getattr(session, "app", "unknown")),
        payload_bytes=payload_bytes, missed_bytes=missed_bytes,
        encrypted=bool(getattr(session, "encrypted", False)),
        decrypted=bool(getattr(session, "decrypted", False)),
        decrypt_reason=reason if isinstance(reason, str) else None,
        budget_exceeded=bool(getattr(session, "budget_exceeded", False)),
        inspected=bool(getattr(session, "inspected", False)),
        hint=hint if isinstance(hint, str) else None,
    )
