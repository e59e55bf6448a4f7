"""What the user's client sends through Squid in the ICAP tests, and the truth it gives.

The live plan's nine POSTs (tests/live/plan.py: its destinations, people, filing and expected findings),
each sent one way — HTTPS through ssl_bump or plain HTTP to the proxy; a Content-Length body, a chunked
one (no Content-Length: Squid then may not let the service answer 204, so the agent echoes), or with
`Expect: 100-continue` — plus requests the plan does not have: bodies of about 1 MB (far past the ICAP
preview, their persons at the very end) and GETs whose only PI is in the query string. The extra persons
continue the plan's stream of people (same seed), so nobody is counted twice by accident, and they go to
destinations whose findings they do not change. The truth is plan.truth over the requests answered 200.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.live import plan

LARGE_PAD = 1 << 20          # bytes of PI-free padding before the persons of a large body
PLAN_PERSONS = 31            # people plan.messages() draws from the seed's stream
NAME_MOBILE = {"receiverName": "person_name", "mobile": "mobile_cn"}
FULL = {"customerName": "person_name", "mobile": "mobile_cn", "idNo": "resident_id_cn"}


@dataclass(frozen=True)
class Request:
    message: plan.Message
    scheme: str                  # "https": CONNECT, bumped; "http": an absolute URL to the proxy
    expect: bool = False         # `Expect: 100-continue`
    chunked: bool = False        # Transfer-Encoding: chunked, no Content-Length
    query: str = ""              # a GET: the PI is here, there is no body

    @property
    def method(self) -> str:
        return "GET" if self.query else "POST"

    @property
    def url(self) -> str:
        m = self.message
        return f"{self.scheme}://{m.server_name}{m.path}" + (f"?{self.query}" if self.query else "")

    @property
    def dst_ip(self) -> str:
        return plan.BY_NAME[self.message.server_name].ip

    def curl_args(self, body_dir: Path, n: int) -> list[str]:
        """curl's options for this request (the body in a file of `body_dir`)."""
        if self.query:
            return ["-H", "Expect:"]
        body = body_dir / f"body-{n}"
        body.write_bytes(self.message.body)
        args = ["--data-binary", f"@{body}", "-H", f"Content-Type: {plan.CONTENT_TYPE}",
                "-H", "Expect: 100-continue" if self.expect else "Expect:"]
        return args + (["-H", "Transfer-Encoding: chunked"] if self.chunked else [])


def _records(dest: plan.Destination, people: Sequence[plan.Person], keys: dict[str, str],
             pad: int = 0) -> plan.Message:
    return plan.records_message(dest, [(p, keys) for p in people], pad=pad)


def _query(dest: plan.Destination, person: plan.Person, key: str, ft: str) -> tuple[plan.Message, str]:
    query = urllib.parse.urlencode({"ref": "SQ-GET", key: {"mobile_cn": person.mobile,
                                                          "resident_id_cn": person.resident_id}[ft]})
    return plan.Message(dest.server_name, dest.path, b"", ((person.pid, ft, person.value(ft)),), 1), query


def requests() -> list[Request]:
    """Every request of the main test, in order."""
    msgs = plan.messages()
    people = plan.People(plan.SEED)
    people.many(PLAN_PERSONS)
    extra = people.many(9)
    partner, crm, _ads, _domestic = plan.DESTINATIONS
    get_partner, q_partner = _query(partner, extra[7], "mobile", "mobile_cn")
    get_crm, q_crm = _query(crm, extra[8], "idNo", "resident_id_cn")
    return [
        Request(msgs[0], "https"),
        Request(msgs[1], "http", chunked=True),
        Request(msgs[2], "https", expect=True),
        Request(msgs[3], "http"),
        Request(msgs[4], "https", chunked=True),
        Request(msgs[5], "http", expect=True),
        Request(msgs[6], "https", chunked=True, expect=True),
        Request(msgs[7], "http"),
        Request(msgs[8], "https"),                     # domestic: no export
        Request(_records(partner, extra[:4], NAME_MOBILE, LARGE_PAD), "https", expect=True),
        Request(_records(crm, extra[4:7], FULL, LARGE_PAD), "http", chunked=True),
        Request(get_partner, "https", query=q_partner),
        Request(get_crm, "http", query=q_crm),
    ]


def truth(sent: Sequence[Request]) -> dict[str, Any]:
    """plan.truth over the requests sent (those answered 200)."""
    return plan.truth([r.message for r in sent], {}, {"port": None})
