"""The destinations of a bench enterprise (bench/scale_data.py) and its filing: 12 recipients covering the
destinations, 10 scenarios whose data catalogs are what scale_data lets each destination carry, and
declarations chosen so that some checks fire on any size:

- scenarios s0-s4 (standard_contract / security_assessment) declare sensitive identifiers and generous
  scales; s5, s6 claim the exemption (exempt_outside_list) with small scales (scale_exceeded, and
  route_threshold once the persons pass the exemption's ceilings); s7 declares nothing sensitive;
  s8, s9 receive resident_id_cn / bank_card they never declared (undeclared_field_type, scale_exceeded
  for sensitive persons);
- recipient R11 says CA while its hosts are seen in BR (recipient_country_mismatch); six trackers are no
  recipient (undeclared_recipient); the filing is valid from 1 February (outside_validity for January).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from collector.models import Filing

__all__ = ["DESTINATIONS", "catalog", "filing_dict", "filing_id", "write_filing"]

COUNTRIES = ("SG", "US", "DE", "JP", "HK", "GB", "FR", "KR", "AU", "NL", "CA", "CH")


@dataclass(frozen=True, slots=True)
class Destination:
    server_name: str | None
    dst_ip: str
    country: str
    recipient: int | None         # index of the declared recipient covering it


def _destinations() -> tuple[Destination, ...]:
    out = []
    for r, country in enumerate(COUNTRIES):
        seen = "BR" if r == 11 else country          # recipient 11's hosts are not where it says
        for j in range(4):
            name = f"api.rcp{r}.example" if j == 0 else f"edge{j}.rcp{r}.example"
            out.append(Destination(name, f"198.51.{r}.{10 + j}", seen, r))
    out += [Destination(None, f"203.0.113.{j + 1}", "JP", 0) for j in range(2)]
    out += [Destination(f"collect.tracker{k}.example", f"192.0.2.{k + 1}", ("US", "SG")[k % 2], None)
            for k in range(6)]
    out += [Destination(f"api.domestic{k}.example.cn", f"10.200.0.{k + 1}", "CN", None) for k in range(4)]
    return tuple(out)


DESTINATIONS = _destinations()
# Recipient -> the scenario naming it; a scenario's catalog is what its destinations' records carry.
SCENARIO_OF_RECIPIENT = [r % 10 for r in range(12)]


def catalog(scenario: int) -> tuple[str, ...]:
    base = ["person_name", "mobile_cn", "email", "postal_address", "device_id", "ip_address", "landline_cn",
            "date_of_birth", "vehicle_plate"]
    if scenario in (0, 1, 2, 3, 4):      # payments and travel: sensitive identifiers declared
        base += ["resident_id_cn", "bank_card", "passport_no", "transaction_record"]
    if scenario in (5, 6):
        base += ["precise_location", "health_medical"]
    return tuple(base)


NAMES_CN = {"person_name": "姓名", "mobile_cn": "手机号", "email": "电子邮箱", "postal_address": "地址",
            "device_id": "设备标识", "ip_address": "IP地址", "landline_cn": "固定电话",
            "date_of_birth": "出生日期",
            "vehicle_plate": "车牌号", "resident_id_cn": "身份证号", "bank_card": "银行卡号",
            "passport_no": "护照号", "transaction_record": "交易记录", "precise_location": "精准定位",
            "health_medical": "健康医疗信息"}
ROUTES = ("standard_contract", "standard_contract", "security_assessment", "certification",
          "standard_contract", "exempt_outside_list", "exempt_outside_list", "standard_contract",
          "standard_contract", "standard_contract")


def filing_id(enterprise_id: str, year: int) -> str:
    return f"ZJFTZ-HZ-{year}-{enterprise_id.upper()}"


def filing_dict(enterprise_id: str, persons: int, year: int = 2026) -> dict[str, Any]:
    """The filing as the YAML/JSON a filer writes; `persons` (the generated persons) sets the scales."""
    recipients = [{
        "recipient_id": f"R{r}", "name": f"Bench Recipient {r} Ltd.",
        "country_region": "CA" if r == 11 else country,
        "declared_endpoints": {"domains": [f"api.rcp{r}.example", f"*.rcp{r}.example"],
                               "ip_cidrs": ["203.0.113.0/28"] if r == 0 else []},
    } for r, country in enumerate(COUNTRIES)]
    scenarios = []
    for s in range(10):
        big = s < 5
        scenarios.append({
            "scenario_id": f"s{s}", "name": f"基准场景{s}", "route": ROUTES[s],
            "negative_list_match": {"entry_ids": [], "subcategory": None, "reason": "不含负面清单所列数据"},
            "recipients": [f"R{r}" for r in range(12) if SCENARIO_OF_RECIPIENT[r] == s],
            "data_catalog": [{"item_id": f"D{i}", "name_cn": NAMES_CN[t], "field_type": t}
                             for i, t in enumerate(catalog(s), 1)],
            "scale": {"window": "calendar_year",
                      "persons_nonsensitive": 10 * persons if big or s == 7 else max(1, persons // 50),
                      "persons_sensitive": 10 * persons if big else 0},
            "transfer": {"method": "https_api_push", "direction": "push", "frequency": "realtime"},
        })
    body = {
        "schema": "zjftz.filing/v1", "filing_id": filing_id(enterprise_id, year), "ftz_area": "hangzhou",
        "status": "active", "valid_from": f"{year}-02-01", "valid_until": f"{year + 1}-12-31",
        "processor": {"id": enterprise_id, "name": f"基准企业 {enterprise_id}",
                      "uscc": "91330106MA2KD7QH8A", "industry": {"gbt4754": "F5292", "label": "互联网零售"},
                      "is_ciio": False},
        "recipients": recipients, "scenarios": scenarios, "tolerances": {"volume_increase_major_pct": 30},
    }
    Filing.model_validate(body)     # the bench's filing must be one the collector accepts
    return body


def write_filing(enterprise_id: str, persons: int, path: Path, year: int = 2026) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(filing_dict(enterprise_id, persons, year), allow_unicode=True,
                                   sort_keys=False), encoding="utf-8")
    return path
