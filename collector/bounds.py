"""What a parsed filing, negative list or check request may *say* (`Persons`, `Percent`, `DocDate`, used by
the filing and negative-list models and by check requests): a value the checks cannot compute with must be
refused where it enters, naming its field, not where it breaks. A scale of 2**63 persons validated fine,
then overflowed DuckDB's BIGINT in every check of its filing (a 500, and the scheduler skipping that
filing forever); `from: 9999-12-31` overflowed `date + 1 day` when a check period was built. The bounds
are generous for any real filing and far from every overflow: 10**10 persons (more than everyone alive,
nine orders of magnitude under int64 even after a count is multiplied by (1 + pct/100) or projected over a
year); 10,000 % (a hundredfold increase), finite; days 1970-01-01..2100-12-31, inside every date type the
service uses (Python, DuckDB, Parquet, Spark) with room for a period's `+ 1 day` and the CST offset.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field

__all__ = ["MAX_DATE", "MAX_PCT", "MAX_PERSONS", "MIN_DATE", "DocDate", "Percent", "Persons", "date_problem"]

MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2100, 12, 31)
MAX_PERSONS = 10**10
MAX_PCT = 10_000

# A date of a filing or list (valid_from, valid_until, area_opinion.issued_at, …).
DocDate = Annotated[date, Field(ge=MIN_DATE, le=MAX_DATE)]
# A count of distinct persons (a scale, a threshold floor).
Persons = Annotated[int, Field(ge=0, le=MAX_PERSONS)]
# A percentage such as tolerances.volume_increase_major_pct; NaN and infinity are not percentages.
Percent = Annotated[float, Field(ge=0, le=MAX_PCT, allow_inf_nan=False)]


def date_problem(value: date | None) -> str | None:
    """Why `value` cannot be a day of a check or a document (None: it can)."""
    if value is None or MIN_DATE <= value <= MAX_DATE:
        return None
    return f"{value.isoformat()} is outside {MIN_DATE.isoformat()}..{MAX_DATE.isoformat()}"
