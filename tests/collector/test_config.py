"""The collector config (DESIGN §9) and its tokens: one-line errors naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.auth import AuthError, TokenBook, token_digest
from collector.config import CollectorConfigError, cron_trigger, load_collector_config

HASH = token_digest("secret-token")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "collector.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_the_shipped_example_config_loads(tmp_path: Path) -> None:
    cfg = load_collector_config(Path(__file__).resolve().parents[2] / "configs" / "collector.yaml")
    assert cfg.listen.port == 8465 and cfg.schedule.spot_checks == "0 2 * * *"
    assert Path(cfg.data_dir).is_absolute()


REG = "enterprises: [{enterprise_id: e, ftz_area: hangzhou}]\n"


@pytest.mark.parametrize(("text", "needle"), [
    ("tokens: [{name: a, sha256: secret-token, role: agent, enterprise_id: e, agent_id: g}]",
     "tokens[0].sha256"),
    (f"tokens: [{{name: a, sha256: {HASH}, role: agent}}]", "needs enterprise_id"),
    # A token line from before tenancy: refused with the fix named.
    (REG + f"tokens: [{{name: a, sha256: {HASH}, role: agent, enterprise_id: e}}]",
     "needs agent_id: add `agent_id:"),
    (f"tokens: [{{name: a, sha256: {HASH}, role: enterprise, enterprise_id: ghost}}]",
     "tokens[0].enterprise_id: 'ghost' is not registered"),
    (REG + f"tokens: [{{name: a, sha256: {HASH}, role: enterprise, enterprise_id: e, agent_id: g}}]",
     "agent_id is only for role agent"),
    ("enterprises: [{enterprise_id: e, ftz_area: hangzhou}, {enterprise_id: e, ftz_area: ningbo}]",
     "enterprises[1].enterprise_id"),
    ("enterprises: [{enterprise_id: ../x, ftz_area: hangzhou}]", "enterprises[0].enterprise_id"),
    ("enterprises: [{enterprise_id: e, ftz_area: shanghai}]", "enterprises[0].ftz_area"),
    (f"tokens: [{{name: a, sha256: {HASH}, role: regulator}}]", "needs ftz_area"),
    (f"tokens: [{{name: a, sha256: {HASH}, role: admin, enterprise_id: e}}]", "tokens[0].role"),
    (f"tokens: [{{name: a, sha256: {HASH}, role: regulator, ftz_area: shanghai}}]", "tokens[0].ftz_area"),
    (REG + f"tokens: [{{name: a, sha256: {HASH}, role: agent, enterprise_id: e, agent_id: g}}, "
     f"{{name: b, sha256: {HASH}, role: agent, enterprise_id: e, agent_id: g}}]", "appears twice"),
    ("schedule: {spot_checks: '61 * * * *'}", "schedule.spot_checks"),
    ("listen: {port: 70000}", "listen.port"),
    ("max_upload_bytes: 0", "max_upload_bytes"),
    ("lisen: {port: 1}", "lisen"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CollectorConfigError) as err:
        load_collector_config(path)
    message = str(err.value)
    assert message.startswith(str(path)) and needle in message and "\n" not in message


@pytest.mark.parametrize(("expr", "fields"), [
    ("0 2 * * *", {"minute": "0", "hour": "2", "second": "0"}),
    ("*/5 * * * * *", {"second": "*/5"}),
])
def test_cron_takes_five_fields_or_six_with_seconds_first(expr: str, fields: dict[str, str]) -> None:
    trigger = cron_trigger(expr)
    got = {f.name: str(f) for f in trigger.fields}
    assert {k: got[k] for k in fields} == fields
    assert str(trigger.timezone) == "Asia/Shanghai"


@pytest.mark.parametrize(("header", "status"), [
    (None, 401), ("", 401), ("Basic abc", 401), ("Bearer ", 401), ("Bearer wrong", 401),
    ("Bearer secret-token", None), ("bearer secret-token", None),
])
def test_only_a_known_bearer_token_authenticates(header: str | None, status: int | None) -> None:
    from collector.config import TokenEntry

    book = TokenBook([TokenEntry(name="gw", sha256=HASH, role="agent", enterprise_id="e", agent_id="gw")])
    if status is None:
        assert book.authenticate(header).name == "gw"
    else:
        with pytest.raises(AuthError) as err:
            book.authenticate(header)
        assert err.value.status == status


@pytest.mark.parametrize(("role", "scope", "enterprise", "allowed"), [
    ("agent", {"enterprise_id": "e1", "agent_id": "g"}, "e1", True),
    ("agent", {"enterprise_id": "e1", "agent_id": "g"}, "e2", False),
    ("enterprise", {"enterprise_id": "e1"}, "e1", True),
    ("enterprise", {"enterprise_id": "e1"}, "e2", False),
    ("regulator", {"ftz_area": "hangzhou"}, "e2", True),      # e2 is registered in hangzhou
    ("regulator", {"ftz_area": "hangzhou"}, "e1", False),     # e1 is registered in ningbo
    ("regulator", {"ftz_area": "hangzhou"}, "ghost", False),  # not registered: nobody's area
    ("regulator", {"ftz_area": "hangzhou"}, "", False),
])
def test_a_token_reaches_its_enterprise_or_the_registered_enterprises_of_its_area(
        role: str, scope: dict[str, str], enterprise: str, allowed: bool) -> None:
    from collector.config import EnterpriseEntry, TokenEntry

    registry = [EnterpriseEntry(enterprise_id="e1", ftz_area="ningbo"),
                EnterpriseEntry(enterprise_id="e2", ftz_area="hangzhou")]
    book = TokenBook([TokenEntry(name="t", sha256=HASH, role=role, **scope)], registry)
    who = book.authenticate("Bearer secret-token")
    assert who.may_access(enterprise) is allowed
