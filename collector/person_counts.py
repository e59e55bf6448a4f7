"""A spot check's persons from the warehouse's person index (person_index.py) instead of relinking: for a
period that is exactly a CST calendar year, `record_persons` is one select of the index's records of that
year, streamed into the check's store (Arrow batches: memory bounded), and the Linking one aggregate."""

from __future__ import annotations

import logging
from datetime import datetime

import duckdb

from collector.inspection import LinkPersons
from collector.person_index import index_max_records
from collector.persons import Linking, SharedKey, calendar_year
from collector.warehouse import Warehouse

log = logging.getLogger(__name__)

__all__ = ["index_persons"]

_KINDS = {"id": "identifier", "combo": "combination"}
# Queued pi_values rows a spot check folds in itself before counting from the index. Folding costs more per
# row than linking the whole period at once (it relinks the components each batch touches), so past this a
# check relinks and the background catches up.
MAX_FOLD_AT_CHECK = 200_000


def index_persons(warehouse: Warehouse, enterprise_id: str, period: tuple[datetime, datetime]
                  ) -> LinkPersons | None:
    """A `run_inspection(link_persons=…)` reading the index, when it can answer for `period` (a calendar
    year, index built with the warehouse's max_records_per_key); None: relink."""
    year = period[0].astimezone(calendar_year(2000)[0].tzinfo).year
    if calendar_year(year) != period:
        return None
    with warehouse.cursor() as cur:
        if index_max_records(cur) != warehouse.max_records_per_key:
            return None
    # Rows queued since the background's last pass are folded in now; a backlog larger than relinking the
    # year costs (a bulk load, a first start) is left to the background and this check relinks.
    pending = warehouse.persons_pending(enterprise_id, at_most=MAX_FOLD_AT_CHECK)
    if pending > MAX_FOLD_AT_CHECK:
        log.warning("person index of %s is %d rows behind: this check relinks the period", enterprise_id,
                    pending)
        return None
    warehouse.fold_persons(enterprise_id)

    def link(con: duckdb.DuckDBPyConnection, _: tuple[datetime, datetime]) -> Linking:
        scope = [enterprise_id, year]
        with warehouse.cursor() as cur:
            reader = cur.sql(
                "SELECT flow_id, CAST(record_key AS BIGINT) AS record_key, "
                "CAST(person AS BIGINT) AS person_id, "
                "sensitive, nonsensitive FROM person_records WHERE enterprise_id = ? AND year = ? "
                "AND person IS NOT NULL", params=scope).to_arrow_reader()
            con.register("_index_persons", reader)
            try:
                con.execute("CREATE OR REPLACE TABLE record_persons AS SELECT * FROM _index_persons")
            finally:
                con.unregister("_index_persons")
            persons, records = cur.execute(
                "SELECT count(DISTINCT person), count(person) FROM person_records "
                "WHERE enterprise_id = ? AND year = ?", scope).fetchone() or (0, 0)
            key_ids = tuple(r[0] for r in cur.execute(
                "SELECT DISTINCT key_id FROM person_records WHERE enterprise_id = ? AND year = ? ORDER BY 1",
                scope).fetchall())
            shared = cur.execute(
                "SELECT kind, t1, t2, records FROM person_key_counts WHERE enterprise_id = ? AND year = ? "
                "AND records > ?", [*scope, warehouse.max_records_per_key]).fetchall()
        keys = sorted((SharedKey(_KINDS[k], f"{t1}+{t2}" if t2 else t1, int(n)) for k, t1, t2, n in shared),
                      key=lambda s: (-s.records, s.kind, s.field_types))
        log.info("persons of %s in %d from the person index: %d", enterprise_id, year, persons)
        return Linking(int(persons), int(records), key_ids, tuple(keys))

    return link
