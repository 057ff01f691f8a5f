"""Spanish, English and Portuguese labels for edX codes, country names and number/date formats.

One table per code family (gender, education, enrolment mode, certificate status, age band), used by
the dashboard and by ``apply_labels`` for labelled reports, so a code is never shown raw. Country
names come from pycountry's ISO 3166 translations.
"""

from __future__ import annotations

import datetime as dt
import gettext
import math
from functools import lru_cache

import pyarrow as pa

LANGS = ("es", "en", "pt")
DEFAULT_LANG = "es"
LANG_NAMES = {"es": "Español", "en": "English", "pt": "Português"}
OTHER = "other"  # privacy.suppress.OTHER: small categories merged in public sites
UNKNOWN = "unknown"

CODES: dict[str, dict[str, tuple[str, str, str]]] = {  # code -> (es, en, pt)
    "gender": {
        "f": ("Mujer", "Female", "Feminino"),
        "m": ("Hombre", "Male", "Masculino"),
        "o": ("Otro", "Other", "Outro"),
    },
    "level_of_education": {
        "p": ("Doctorado", "Doctorate", "Doutorado"),
        "p_se": ("Doctorado en ciencias o ingeniería", "Doctorate in science or engineering",
                 "Doutorado em ciências ou engenharia"),
        "p_oth": ("Doctorado en otra área", "Doctorate in another field", "Doutorado em outra área"),
        "m": ("Maestría", "Master's degree", "Mestrado"),
        "b": ("Licenciatura o grado", "Bachelor's degree", "Graduação"),
        "a": ("Técnico superior", "Associate degree", "Tecnólogo"),
        "hs": ("Secundaria superior", "Secondary / high school", "Ensino médio"),
        "jhs": ("Secundaria inferior", "Junior secondary / middle school", "Ensino fundamental II"),
        "el": ("Primaria", "Elementary / primary school", "Ensino fundamental I"),
        "none": ("Sin educación formal", "No formal education", "Sem educação formal"),
        "other": ("Otra formación", "Other education", "Outra formação"),
    },
    "mode": {
        "audit": ("Oyente (audit)", "Audit", "Ouvinte (audit)"),
        "honor": ("Código de honor", "Honor code", "Código de honra"),
        "verified": ("Verificado", "Verified", "Verificado"),
        "professional": ("Profesional", "Professional", "Profissional"),
        "no-id-professional": ("Profesional sin verificación", "Professional (no ID)", "Profissional sem verificação"),
        "credit": ("Crédito", "Credit", "Crédito"),
        "masters": ("Maestría", "Master's", "Mestrado"),
        "executive-education": ("Educación ejecutiva", "Executive education", "Educação executiva"),
    },
    "cert_status": {
        "downloadable": ("Certificado emitido", "Certificate issued", "Certificado emitido"),
        "notpassing": ("No aprobado", "Not passing", "Não aprovado"),
        "audit_passing": ("Aprobado (oyente, sin certificado)", "Passing (audit, no certificate)",
                          "Aprovado (ouvinte, sem certificado)"),
        "audit_notpassing": ("No aprobado (oyente)", "Not passing (audit)", "Não aprovado (ouvinte)"),
        "honor_passing": ("Aprobado (código de honor)", "Passing (honor code)", "Aprovado (código de honra)"),
        "generating": ("En generación", "Being generated", "Em geração"),
        "regenerating": ("En regeneración", "Being regenerated", "Em regeneração"),
        "requesting": ("Solicitado", "Requested", "Solicitado"),
        "deleting": ("En eliminación", "Being deleted", "Em exclusão"),
        "deleted": ("Eliminado", "Deleted", "Excluído"),
        "error": ("Error", "Error", "Erro"),
        "unavailable": ("No disponible", "Unavailable", "Indisponível"),
        "unverified": ("Sin verificar", "Unverified", "Não verificado"),
        "restricted": ("Restringido", "Restricted", "Restrito"),
        "invalidated": ("Invalidado", "Invalidated", "Invalidado"),
        "auditing": ("Oyente", "Auditing", "Ouvinte"),
        "none": ("Sin certificado", "No certificate", "Sem certificado"),
    },
    "age_band": {
        "<20": ("Menos de 20", "Under 20", "Menos de 20"),
        "20-29": ("20 a 29", "20 to 29", "20 a 29"),
        "30-39": ("30 a 39", "30 to 39", "30 a 39"),
        "40-49": ("40 a 49", "40 to 49", "40 a 49"),
        "50-59": ("50 a 59", "50 to 59", "50 a 59"),
        "60+": ("60 o más", "60 or more", "60 ou mais"),
    },
}
# "other" of a public site's programme-wide demographics: the code's own learners and the small groups
# merged with them (privacy.suppress.merge_small), named alike for gender and education
OTHER_MERGED = ("Otro o grupos pequeños", "Other or small groups", "Outro ou grupos pequenos")
COMMON = {
    UNKNOWN: ("No indicado", "Not stated", "Não informado"),
    OTHER: ("Otros (grupos pequeños)", "Other (small groups)", "Outros (grupos pequenos)"),
}
REPORT_COLUMNS = {"gender": "gender", "level_of_education": "level_of_education", "mode": "mode",
                  "cert_status": "cert_status", "country": "country", "ip_country": "country"}


def _pick(t: tuple[str, str, str], lang: str) -> str:
    return t[LANGS.index(lang)]


def label(kind: str, code: str | None, lang: str = DEFAULT_LANG, merged: bool = False) -> str:
    """The label of an edX code in ``lang`` (unknown codes are shown as delivered, never dropped);
    ``merged``: small categories were merged into "other" (education's "other" is an edX code too, so
    it says "or small groups" only where merging happened: "Other education" held several groups)."""
    if kind == "country":
        return country_name(code, lang)
    c = UNKNOWN if code is None or str(code).strip() == "" else str(code)
    if c == OTHER and (kind == "gender" or merged):  # (edX's gender code is "o": "other" is always merged)
        return _pick(OTHER_MERGED, lang)
    table = CODES.get(kind, {})
    if c in table:
        return _pick(table[c], lang)
    if c in COMMON:
        return _pick(COMMON[c], lang)
    return c


@lru_cache(maxsize=None)
def _country_translator(lang: str) -> gettext.NullTranslations:
    import pycountry

    return gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang], fallback=True)


@lru_cache(maxsize=4096)
def country_name(code: str | None, lang: str = DEFAULT_LANG) -> str:
    """Country name in ``lang`` from an ISO 3166-1 alpha-2 code ('unknown' and odd codes handled)."""
    import pycountry

    if code is None or code in (UNKNOWN, "") or code == OTHER:
        return label("", code or UNKNOWN, lang)
    c = pycountry.countries.get(alpha_2=str(code).upper())
    if c is None:
        return str(code)
    name = getattr(c, "common_name", None) or c.name
    return _country_translator(lang).gettext(c.name) if lang != "en" else name


@lru_cache(maxsize=4096)
def country_numeric(code: str) -> str | None:
    """ISO 3166-1 numeric code (the map file's feature ids), or None."""
    import pycountry

    c = pycountry.countries.get(alpha_2=str(code).upper()) if code else None
    return c.numeric if c else None


# -- numbers and dates ------------------------------------------------------------------------------

D3_FORMAT = {
    "es": {"decimal": ",", "thousands": ".", "grouping": [3], "currency": ["", " €"]},
    "en": {"decimal": ".", "thousands": ",", "grouping": [3], "currency": ["$", ""]},
    "pt": {"decimal": ",", "thousands": ".", "grouping": [3], "currency": ["R$", ""]},
}
_MONTHS = {
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
           "noviembre", "diciembre"],
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"],
    "pt": ["janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro",
           "novembro", "dezembro"],
}
_DAYS = {
    "es": ["domingo", "lunes", "martes", "miércoles", "jueves", "viernes", "sábado"],
    "en": ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
    "pt": ["domingo", "segunda", "terça", "quarta", "quinta", "sexta", "sábado"],
}
DATE_FMT = {"es": "%d/%m/%Y", "en": "%d %b %Y", "pt": "%d/%m/%Y"}


def d3_time_locale(lang: str) -> dict:
    """A d3-time-format locale (vega-embed's ``timeFormatLocale``)."""
    return {"dateTime": "%x, %X", "date": DATE_FMT[lang], "time": "%H:%M:%S", "periods": ["AM", "PM"],
            "days": _DAYS[lang], "shortDays": [d[:3] for d in _DAYS[lang]],
            "months": _MONTHS[lang], "shortMonths": [m[:3] for m in _MONTHS[lang]]}


def fmt_int(n: int | float | None, lang: str = DEFAULT_LANG) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    s = f"{int(round(n)):,}"
    return s.replace(",", D3_FORMAT[lang]["thousands"])


def fmt_num(x: float | None, lang: str = DEFAULT_LANG, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    s = f"{x:,.{digits}f}"
    return s.replace(",", "\0").replace(".", D3_FORMAT[lang]["decimal"]).replace("\0", D3_FORMAT[lang]["thousands"])


def fmt_pct(x: float | None, lang: str = DEFAULT_LANG, digits: int = 1) -> str:
    """A share (0..1) as a percentage: 0.125 -> '12,5 %' (es, pt) / '12.5%' (en)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return fmt_num(100 * x, lang, digits) + ("%" if lang == "en" else " %")


def fmt_date(d: dt.date | dt.datetime | str | None, lang: str = DEFAULT_LANG) -> str:
    if d is None or d == "":
        return "–"
    if isinstance(d, str):
        d = dt.date.fromisoformat(d[:10])
    f = DATE_FMT[lang]
    if "%b" in f:
        f = f.replace("%b", _MONTHS[lang][d.month - 1][:3])
    return d.strftime(f)


def fmt_datetime(d: dt.datetime | None, lang: str = DEFAULT_LANG) -> str:
    if d is None:
        return "–"
    return f"{fmt_date(d, lang)} {d:%H:%M} UTC"


# -- labelled reports -------------------------------------------------------------------------------

def apply_labels(table: pa.Table, lang: str = DEFAULT_LANG) -> pa.Table:
    """Replace edX code columns (gender, level_of_education, mode, cert_status, country, ip_country)
    with their labels in ``lang``: the tables behind ``report --labels``."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (use {', '.join(LANGS)})")
    for col, kind in REPORT_COLUMNS.items():
        if col in table.column_names and pa.types.is_string(table.schema.field(col).type):
            i = table.column_names.index(col)
            vals = [None if v is None else label(kind, v, lang) for v in table.column(col).to_pylist()]
            table = table.set_column(i, col, pa.array(vals, pa.string()))
    return table
