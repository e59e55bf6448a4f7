"""A SparkSession for the checks on Apache Spark (DESIGN §9, `egress-collector check --engine spark`).

pyspark is the optional extra `egresswatch[spark]` and needs Java 17: without either the one-line
`SparkUnavailable` says what to install. The session asks for no packages or jars, so nothing is downloaded
at run time; it runs in UTC (the JVM, the session and the Python side's conversions), so the instants the
checks compare and the report prints are the same as DuckDB's TIMESTAMPTZ. Where the host name does not
resolve only SPARK_LOCAL_IP lets a local driver start (engineering notes), hence the default 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MASTER", "SparkUnavailable", "spark_available", "spark_session"]

DEFAULT_MASTER = "local[2]"
INSTALL_HINT = "install egresswatch[spark] and Java 17"

# Fixed settings: small shuffles (one enterprise's checks, not a join of two huge tables), UTC everywhere,
# Parquet timestamps as the agent writes them, no UI port, no Arrow fallback hiding a type problem.
_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.driver.memory": "1g",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.parquet.mergeSchema": "true",
}


class SparkUnavailable(RuntimeError):
    """pyspark or Java is missing, or the session did not start; `str()` is one line."""


def spark_available() -> str | None:
    """None when a session can be started, else why not (naming pyspark or java)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return f"pyspark is not installed: {INSTALL_HINT}"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return f"java was not found: {INSTALL_HINT}"
    return None


def spark_session(master: str = DEFAULT_MASTER, app_name: str = "egresswatch-checks") -> SparkSession:
    """Start (or reuse, within one process) a SparkSession; raises SparkUnavailable."""
    problem = spark_available()
    if problem:
        raise SparkUnavailable(problem)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", _python())
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in _CONF.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as e:  # JAVA_GATEWAY_EXITED and friends: say what to check, in one line
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SparkUnavailable(f"Spark did not start ({first}): {INSTALL_HINT}") from None
    session.sparkContext.setLogLevel("OFF")
    log.info("Spark %s session on %s", session.version, master)
    return session


def _python() -> str:
    import sys

    return sys.executable
