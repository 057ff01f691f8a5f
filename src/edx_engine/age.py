"""Age bands: the one definition, in SQL (the dashboard's charts) and in Python (the public
``course_breakdown``, whose suppression protects the bands and the years of birth together).

A learner's age is the reference year (this year, UTC) minus the profile's year of birth; ages
under 10 or over 100 are taken as wrong and counted as unknown."""

from __future__ import annotations

from .clock import now

AGE_BANDS = ("<20", "20-29", "30-39", "40-49", "50-59", "60+")  # then "unknown"
UNKNOWN = "unknown"
_UPPER = ((20, "<20"), (30, "20-29"), (40, "30-39"), (50, "40-49"), (60, "50-59"))  # age < bound -> band


def reference_year() -> int:
    return now().year


def age_band(year_of_birth: int | str | None, year: int | None = None) -> str:
    """The band of a year of birth (an int, its text as ``course_breakdown`` spells it, or None)."""
    try:
        yob = int(str(year_of_birth).strip())
    except ValueError:
        return UNKNOWN
    age = (year or reference_year()) - yob
    if age < 10 or age > 100:
        return UNKNOWN
    return next((band for bound, band in _UPPER if age < bound), "60+")


def age_band_sql(col: str, year: int | None = None) -> str:
    """SQL: the band of the year of birth in ``col`` (as :func:`age_band`)."""
    age = f"({year or reference_year()} - {col})"
    whens = " ".join(f"WHEN {age} < {bound} THEN '{band}'" for bound, band in _UPPER)
    return f"CASE WHEN {col} IS NULL OR {age} < 10 OR {age} > 100 THEN '{UNKNOWN}' {whens} ELSE '60+' END"
