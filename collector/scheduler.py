"""Scheduled spot checks (DESIGN §9 `schedule.spot_checks`): APScheduler runs every active filing on a cron
expression in China Standard Time. One run at a time: a slow run is not started twice (max_instances=1), and
runs missed while the service was down are coalesced into one, not replayed. A filing whose enterprise is
not in the registry (a warehouse from before `enterprises:`) is skipped with a warning: no regulator could
read its report.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler

from collector.config import SHANGHAI, cron_trigger
from collector.persons import CST
from collector.spotcheck import active_filings, run_spot_check
from collector.warehouse import Warehouse

log = logging.getLogger(__name__)

__all__ = ["SpotCheckScheduler"]


class SpotCheckScheduler:
    def __init__(self, warehouse: Warehouse, cron: str | None,
                 areas: Mapping[str, str] | None = None) -> None:
        self.warehouse = warehouse
        self.cron = cron
        self.areas = areas      # enterprise id -> FTZ area; None: check every filing (no registry)
        self.runs = 0                 # completed scheduled runs, for /healthz and tests
        self._lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        if not self.cron:
            log.info("no spot-check schedule configured")
            return
        self._scheduler = BackgroundScheduler(timezone=SHANGHAI)
        self._scheduler.add_job(self.run_once, cron_trigger(self.cron), id="spot_checks", max_instances=1,
                                coalesce=True, misfire_grace_time=60)
        self._scheduler.start()
        log.info("spot checks scheduled: %s (Asia/Shanghai)", self.cron)

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def run_once(self) -> list[str]:
        """Check every active filing now; returns the report ids. A failing filing is logged and skipped."""
        with self._lock:
            now = datetime.now(CST)
            report_ids = []
            for filing_id in active_filings(self.warehouse, now.date()):
                if not self._registered(filing_id):
                    continue
                try:
                    report_ids.append(run_spot_check(self.warehouse, filing_id, trigger="schedule",
                                                     now=now).report_id)
                except Exception:
                    log.exception("scheduled spot check of %s failed", filing_id)
            self.runs += 1
            log.info("scheduled spot checks: %d report(s)", len(report_ids))
            return report_ids

    def _registered(self, filing_id: str) -> bool:
        if self.areas is None:
            return True
        v = self.warehouse.get_document("filing", filing_id)
        if v is None or v.enterprise_id not in self.areas:
            log.warning("filing %s: enterprise %s is not registered (collector.yaml enterprises:); "
                        "not checked", filing_id, v.enterprise_id if v else None)
            return False
        return True
