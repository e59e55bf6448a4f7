"""bench/scale_data.py and bench/scale_filing.py: the zone-year records the collector bench (and the
DuckDB/Spark equality test) use are what an agent writes, are accepted by the collector as uploads, and
have the shape the bench's docstring promises (persons ≈ rows / 10, a year of days, 60 destinations,
linking components from one record to hundreds). Nothing here times anything: that is
bench/collector_scale.py's output.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from agent.records import RECORD_TYPES, SCHEMA_VERSION
from bench.scale_data import ScaleSpec, enterprise_ids, generate, make_chunk
from bench.scale_data import _person_cdf as person_cdf
from bench.scale_filing import DESTINATIONS, filing_dict
from collector.ingest import parse_batch
from collector.models import Filing, field_type_catalog
from collector.persons import build_record_persons
from collector.store import Store, match_recipients

SPEC = ScaleSpec(200_000, enterprises=2, batch_pi_rows=20_000)


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, int]]]:
    out = tmp_path_factory.mktemp("scale")
    return out, generate(SPEC, out)


def _read(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("*.parquet")))


def test_files_have_exactly_the_agents_schemas_one_batch_each(spool: tuple[Path, dict]) -> None:
    out, rows = spool
    assert set(rows) == set(enterprise_ids(SPEC))
    for enterprise in enterprise_ids(SPEC):
        for record_type in ("flows", "detections", "pi_values", "capture_stats"):
            files = sorted((out / enterprise / record_type).glob("*.parquet"))
            assert len(files) == SPEC.chunks()
            for path in files[:3]:
                table = pq.read_table(path)
                assert table.schema.equals(RECORD_TYPES[record_type][1])
                assert pc.unique(table.column("batch_id")).to_pylist() == [path.stem]
                assert pc.unique(table.column("schema_version")).to_pylist() == [SCHEMA_VERSION]
                assert pc.unique(table.column("enterprise_id")).to_pylist() == [enterprise]
        assert 10_000 <= max(pq.read_metadata(p).num_rows
                             for p in (out / enterprise / "pi_values").glob("*.parquet")) <= 100_000


def test_a_year_of_an_enterprise_looks_like_the_docstring(spool: tuple[Path, dict]) -> None:
    out, rows = spool
    enterprise = enterprise_ids(SPEC)[0]
    pi, flows = _read(out / enterprise / "pi_values"), _read(out / enterprise / "flows")
    assert pi.num_rows == rows[enterprise]["pi_values"]
    assert 0.9 * SPEC.pi_rows / 2 <= pi.num_rows <= 1.1 * SPEC.pi_rows / 2
    assert 8 <= pi.num_rows / SPEC.persons() <= 12                          # persons ≈ rows / 10
    catalog = field_type_catalog()
    kinds = Counter(pi.column("field_type").to_pylist())
    identifiers = [t for t in kinds if catalog[t]["identifier"]]
    assert len(identifiers) >= 5 and "person_name" in kinds and "date_of_birth" in kinds
    for t, flag in (("identifier", "identifier"), ("sensitive", "sensitive")):
        want = pa.array([catalog[f][flag] for f in pi.column("field_type").to_pylist()])
        assert pi.column(t).combine_chunks().equals(want)
    assert set(pi.column("flow_id").to_pylist()) <= set(flows.column("flow_id").to_pylist())
    days = pc.unique(pc.strftime(pc.add(flows.column("ts_start"), pa.scalar(8 * 3600 * 10**6,
                                                                             pa.duration("us"))),
                                 format="%Y-%m-%d"))
    assert len(days) >= 300 and all(d.as_py().startswith(str(SPEC.year)) for d in days)
    assert len(pc.unique(flows.column("dst_ip"))) >= 50
    assert pc.mean(flows.column("cross_border").cast(pa.int8())).as_py() > 0.8
    assert len(pc.unique(flows.column("agent_id"))) == 4


def test_persons_link_into_components_of_one_to_hundreds_of_records(spool: tuple[Path, dict]) -> None:
    out, _ = spool
    with Store() as store:
        store.load_records(out / enterprise_ids(SPEC)[0])
        persons = build_record_persons(store.con).persons
        sizes = [n for (n,) in store.con.execute(
            "SELECT count(*) FROM record_persons GROUP BY person_id").fetchall()]
    assert persons == len(sizes)
    assert min(sizes) == 1 and sum(1 for n in sizes if n >= 100) >= 3
    assert sum(1 for n in sizes if n == 1) > len(sizes) / 3


def test_the_filing_validates_and_declares_all_but_the_trackers_and_domestic_hosts() -> None:
    filing = Filing.model_validate(filing_dict("bench-e0", SPEC.persons(), SPEC.year))
    assert len(filing.scenarios) == 10
    for d in DESTINATIONS:
        matched = match_recipients(filing, d.server_name, d.dst_ip)
        assert bool(matched) == (d.recipient is not None), d


def test_batches_are_accepted_by_the_collector_as_uploads(spool: tuple[Path, dict]) -> None:
    out, _ = spool
    enterprise = enterprise_ids(SPEC)[1]
    for record_type in ("flows", "pi_values", "detections", "capture_stats"):
        path = sorted((out / enterprise / record_type).glob("*.parquet"))[0]
        agent = pq.read_table(path).column("agent_id")[0].as_py()
        batch = parse_batch(path.read_bytes(), path.stem, record_type, enterprise, agent)
        assert batch.table.num_rows == pq.read_metadata(path).num_rows


def test_generation_is_deterministic_chunk_by_chunk() -> None:
    a = make_chunk(SPEC, 1, 3, person_cdf(SPEC, 1))
    b = make_chunk(SPEC, 1, 3, person_cdf(SPEC, 1))
    other = make_chunk(SPEC, 0, 3, person_cdf(SPEC, 0))
    for record_type, table in a.tables.items():
        assert table.equals(b.tables[record_type])
    assert not a.tables["pi_values"].column("value_key").equals(other.tables["pi_values"].column("value_key"))
