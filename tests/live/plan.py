"""What the live exporter sends, to whom, and what a filing says about it: the data side of the harness.

Imported by `tests/live/netns.py` (as `tests.live.plan`) and by `tests/live/exporter.py`, which runs as a
script inside the client namespace (as `plan`); so this module has no package-relative imports.

Destinations (server name -> address in the server namespace; countries by the agent's geo-IP, checked by
tests/live/test_netns_harness.py):

| server name                   | address        | geo | filing                                          |
|-------------------------------|----------------|-----|-------------------------------------------------|
| api.partner-logistics.example | 203.116.1.77   | SG  | R1, scenario order-fulfilment: consistent       |
| sync.crm-vendor.example       | 8.8.4.77       | US  | R2, scenario crm-sync: resident_id_cn undeclared |
| collect.ad-metrics.example    | 52.28.0.77     | DE  | no recipient: undeclared_recipient              |
| api.domestic-crm.example      | 114.114.114.77 | CN  | domestic: must not count as an export           |

People come from the pcap fixtures' factory (fixtures/pcaps/plant.py: seeded Faker zh_CN, resident IDs with
python-stdnum check digits), so the same seed always gives the same bodies. The truth holds counts only.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_PCAPS = ROOT / "fixtures" / "pcaps"


def _import_plant() -> Any:
    """fixtures/pcaps/plant.py, imported the way tests/test_fixtures.py does: on sys.path only meanwhile,
    and without writing a __pycache__ into fixtures/pcaps (generate.py keeps it free of one)."""
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(_PCAPS))
    try:
        import plant
    finally:
        sys.path.remove(str(_PCAPS))
        sys.dont_write_bytecode = saved
    return plant


_plant = _import_plant()
SENSITIVE: dict[str, bool] = _plant.SENSITIVE
People = _plant.People
Person = _plant.Person

SEED = 20260310
PORT = 80
CLIENT_IP = "10.77.0.2"
GATEWAY_IP = "10.77.0.1"          # the server namespace's side of the link; the client's default route
PREFIX_LEN = 24
OVERSEAS_SG = "203.116.1.77"
OVERSEAS_US = "8.8.4.77"
OVERSEAS_DE = "52.28.0.77"
DOMESTIC_CN = "114.114.114.77"
FILING_ID = "ZJFTZ-HZ-LIVE-0001"
ENTERPRISE_ID = "hz-live"
CONTENT_TYPE = "application/json;charset=UTF-8"


@dataclass(frozen=True, slots=True)
class Destination:
    server_name: str
    ip: str
    country: str
    scenario_id: str | None
    path: str
    note: str


DESTINATIONS = (
    Destination("api.partner-logistics.example", OVERSEAS_SG, "SG", "order-fulfilment", "/v2/shipments",
                "declared (R1), within catalog and scale"),
    Destination("sync.crm-vendor.example", OVERSEAS_US, "US", "crm-sync", "/api/v1/customers/bulk",
                "declared (R2); resident_id_cn is not in crm-sync's data catalog"),
    Destination("collect.ad-metrics.example", OVERSEAS_DE, "DE", None, "/v1/collect",
                "undeclared recipient"),
    Destination("api.domestic-crm.example", DOMESTIC_CN, "CN", None, "/crm/customer/batchImport",
                "domestic: no export, no finding"),
)
BY_NAME = {d.server_name: d for d in DESTINATIONS}
SERVER_ADDRESSES = tuple(dict.fromkeys(d.ip for d in DESTINATIONS))


@dataclass(frozen=True, slots=True)
class Message:
    """One POST: its body and what it plants, as (person id, field type, normalized value) triples."""

    server_name: str
    path: str
    body: bytes
    planted: tuple[tuple[int, str, str], ...]
    records: int


def records_message(dest: Destination, records: Sequence[tuple[Person, dict[str, str]]],
                    pad: int = 0) -> Message:
    """`records` pairs a person with {JSON key: field type} for the keys its record carries; `pad` > 0
    puts a record of that many bytes of filler and no PI first (a body larger than a proxy's preview)."""
    rows: list[dict[str, str]] = [{"ref": "PAD", "note": "x" * pad}] if pad else []
    planted = []
    for n, (person, keys) in enumerate(records):
        row: dict[str, str] = {"ref": f"LV{n + 1:03d}"}
        for key, ft in keys.items():
            row[key] = {"person_name": person.name, "mobile_cn": person.mobile,
                        "resident_id_cn": person.resident_id}[ft]
            planted.append((person.pid, ft, person.value(ft)))
        rows.append(row)
    body = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Message(dest.server_name, dest.path, body, tuple(planted), len(records))


def messages(seed: int = SEED) -> list[Message]:
    """Every POST the exporter sends, in order. Linked records: a person's mobile (or ID) sent again later,
    to the same destination and (one person) to another one."""
    people = People(seed)
    partner, crm, ads, domestic = DESTINATIONS
    name_mobile = {"receiverName": "person_name", "mobile": "mobile_cn"}
    mobile_only = {"mobile": "mobile_cn"}
    full = {"customerName": "person_name", "mobile": "mobile_cn", "idNo": "resident_id_cn"}
    out: list[Message] = []

    a = people.many(12)    # order-fulfilment: names and mobiles; 3 mobiles again in a third request
    out.append(records_message(partner, [(p, name_mobile) for p in a[:6]]))
    out.append(records_message(partner, [(p, name_mobile) for p in a[6:]]))
    out.append(records_message(partner, [(a[i], mobile_only) for i in (0, 3, 7)]))

    b = people.many(8)     # crm-sync: adds resident IDs; later a mobile alone and an ID alone
    out.append(records_message(crm, [(p, full) for p in b[:4]]))
    out.append(records_message(crm, [(p, full) for p in b[4:]]))
    out.append(records_message(crm, [(b[1], mobile_only), (b[5], mobile_only),
                                     (b[2], {"idNo": "resident_id_cn"})]))

    c = people.many(5)     # undeclared recipient: mobile + ID; a[1] (an order-fulfilment person) again
    phone_id = {"phone": "mobile_cn", "idNo": "resident_id_cn"}
    out.append(records_message(ads, [(p, phone_id) for p in c[:3]]))
    out.append(records_message(ads, [(p, phone_id) for p in [*c[3:], a[1]]]))

    d = people.many(6)     # domestic: everything, and none of it is an export
    out.append(records_message(domestic, [(p, {"xm": "person_name", "sjhm": "mobile_cn",
                                               "sfzh": "resident_id_cn"}) for p in d]))
    return out


# ---------------------------------------------------------------------------------------------- truth

@dataclass
class _Ledger:
    requests: int = 0
    records: int = 0
    body_bytes: int = 0
    connections: int = 0
    occurrences: dict[str, int] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)
    persons: dict[str, set[int]] = field(default_factory=dict)

    def add(self, msg: Message) -> None:
        self.requests += 1
        self.records += msg.records
        self.body_bytes += len(msg.body)
        for pid, ft, value in msg.planted:
            self.occurrences[ft] = self.occurrences.get(ft, 0) + 1
            self.values.setdefault(ft, set()).add(value)
            self.persons.setdefault(ft, set()).add(pid)


def _persons(ledgers: Iterable[_Ledger]) -> dict[str, int]:
    every, sens, nonsens = set(), set(), set()
    for led in ledgers:
        for ft, pids in led.persons.items():
            every |= pids
            (sens if SENSITIVE[ft] else nonsens).update(pids)
    return {"persons": len(every), "persons_nonsensitive": len(nonsens), "persons_sensitive": len(sens)}


def truth(sent: Sequence[Message], connections: dict[str, int], header: dict[str, Any]) -> dict[str, Any]:
    """Counts only: per server name, per scenario, and over every cross-border destination."""
    ledgers: dict[str, _Ledger] = {}
    for msg in sent:
        ledgers.setdefault(msg.server_name, _Ledger()).add(msg)
    dests: dict[str, Any] = {}
    for name, led in sorted(ledgers.items()):
        d = BY_NAME[name]
        dests[name] = {
            "dst_ip": d.ip, "dst_port": header.get("port", PORT), "country": d.country,
            "cross_border": d.country != "CN",
            "scenario_id": d.scenario_id, "note": d.note, "app": "http",
            "requests": led.requests, "connections": connections.get(name, 0), "records": led.records,
            "body_bytes": led.body_bytes,
            "field_types": {ft: {"distinct_values": len(led.values[ft]), "occurrences": led.occurrences[ft],
                                 "persons": len(led.persons[ft]), "sensitive": SENSITIVE[ft]}
                            for ft in sorted(led.values)},
            **_persons([led]),
        }
    scenarios: dict[str, Any] = {}
    for sid in sorted({d.scenario_id for d in DESTINATIONS if d.scenario_id}):
        leds = [ledgers[d.server_name] for d in DESTINATIONS
                if d.scenario_id == sid and d.server_name in ledgers]
        scenarios[sid] = {"field_types": sorted({ft for led in leds for ft in led.values}), **_persons(leds)}
    abroad = [ledgers[n] for n in ledgers if BY_NAME[n].country != "CN"]
    return {**header,
            "destinations": dests,
            "scenarios": scenarios,
            "cross_border": {"requests": sum(led.requests for led in abroad), **_persons(abroad)},
            "expected_findings": EXPECTED_FINDINGS}


TRUTH_SEMANTICS = {
    "requests": "HTTP POSTs the exporter sent to the server name and got a 200 for",
    "connections": "TCP connections the exporter opened to the server name",
    "body_bytes": "sum of the request bodies' lengths (headers not included)",
    "field_types": "per planted field type: distinct normalized values, values sent (occurrences), persons",
    "persons_*": "distinct planted persons with any (non-)sensitive field type; resident_id_cn is sensitive "
                 "(configs/policy.yaml default), person_name and mobile_cn are not",
    "scenarios": "persons over the scenario's server names, as the collector counts them per scenario",
    "cross_border": "persons over every non-CN destination (one person is sent to two of them)",
}

# What `egress-collector selfcheck --records SPOOL --filing <filing()>` should report for this traffic.
EXPECTED_FINDINGS = [
    {"check": "undeclared_field_type", "scenario_id": "crm-sync", "subject": "resident_id_cn"},
    {"check": "scale_exceeded", "scenario_id": "crm-sync", "subject": "persons_sensitive"},
    {"check": "route_threshold", "scenario_id": "crm-sync", "subject": "sensitive_ge_1",
     "why": "sensitive PI (resident_id_cn) under route exempt_outside_list"},
    {"check": "undeclared_recipient", "scenario_id": None, "subject": "collect.ad-metrics.example"},
]


# ---------------------------------------------------------------------------------------------- filing

def filing(today: dt.date | None = None) -> dict[str, Any]:
    """The filing for this traffic (configs/filings/demo.yaml's shape), valid from 1 January of this year
    (China Standard Time) so live traffic falls inside it. order-fulfilment matches what is sent;
    crm-sync's catalog leaves out resident_id_cn and declares no sensitive persons; the ad-metrics host
    and the domestic host are no recipients."""
    today = today or dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    name_mobile = [{"item_id": "D1", "name_cn": "姓名", "field_type": "person_name"},
                   {"item_id": "D2", "name_cn": "手机号", "field_type": "mobile_cn"}]
    no_list = {"entry_ids": [], "subcategory": None, "reason": "不含负面清单所列数据"}
    return {
        "schema": "zjftz.filing/v1",
        "filing_id": FILING_ID,
        "ftz_area": "hangzhou",
        "status": "active",
        "valid_from": f"{today.year}-01-01",
        "valid_until": "2099-12-31",
        "processor": {"id": ENTERPRISE_ID, "name": "杭州某跨境电商有限公司（联调）",
                      "uscc": "91330106MA2KD7QH8A", "is_ciio": False,
                      "industry": {"gbt4754": "F5292", "label": "互联网零售"}},
        "recipients": [
            {"recipient_id": "R1", "name": "Partner Logistics Pte. Ltd.", "country_region": "SG",
             "declared_endpoints": {"domains": ["api.partner-logistics.example"], "ip_cidrs": []}},
            {"recipient_id": "R2", "name": "CRM Vendor Inc.", "country_region": "US",
             "declared_endpoints": {"domains": ["sync.crm-vendor.example"], "ip_cidrs": []}},
        ],
        "scenarios": [
            {"scenario_id": "order-fulfilment", "name": "跨境电商订单履约", "route": "exempt_outside_list",
             "negative_list_match": no_list, "recipients": ["R1"], "data_catalog": name_mobile,
             "scale": {"window": "calendar_year", "persons_nonsensitive": 1000, "persons_sensitive": 0},
             "transfer": {"method": "https_api_push", "direction": "push", "frequency": "realtime"}},
            {"scenario_id": "crm-sync", "name": "客户关系管理数据同步", "route": "exempt_outside_list",
             "negative_list_match": no_list, "recipients": ["R2"], "data_catalog": name_mobile,
             "scale": {"window": "calendar_year", "persons_nonsensitive": 1000, "persons_sensitive": 0},
             "transfer": {"method": "https_api_push", "direction": "push", "frequency": "daily"}},
        ],
        "tolerances": {"volume_increase_major_pct": 30},
    }
