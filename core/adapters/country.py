"""Country names and codes -> ISO 3166-1 alpha-2 (upper case), from Babel's CLDR territory names.

Babel (already a dependency, for the review page) knows every territory's name in every locale; the index below
reads the names in the languages leadflow's tools send (English, Portuguese, Spanish, French, German, Italian),
plus a few common names CLDR spells differently. A value nothing matches gives None: the caller keeps it as a
custom attribute instead of producing an invalid `country`.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from babel import Locale

LANGUAGES = ("en", "pt", "es", "fr", "de", "it")
# CLDR codes that are not ISO 3166-1 countries (groupings, private use, unknown).
NOT_COUNTRIES = frozenset({"EU", "EZ", "QO", "UN", "XA", "XB", "XK", "ZZ"})
# Everyday names CLDR spells otherwise (its "Czechia", "United Kingdom", "United States").
ALIASES = {
    "usa": "US",
    "us": "US",
    "u s a": "US",
    "united states of america": "US",
    "uk": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "czech republic": "CZ",
    "republica checa": "CZ",
    "holland": "NL",
    "russian federation": "RU",
    "korea republic of": "KR",
    "republic of korea": "KR",
    "viet nam": "VN",
}


def _key(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", " ", letters).strip()


@cache
def _index() -> tuple[frozenset[str], dict[str, str]]:
    codes = frozenset(
        code
        for code in Locale.parse("en").territories
        if isinstance(code, str) and len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES
    )
    names: dict[str, str] = {}
    for language in LANGUAGES:
        for code, name in Locale.parse(language).territories.items():
            if code in codes:
                names.setdefault(_key(name), code)
    for alias, code in ALIASES.items():
        names[alias] = code
    return codes, names


def country_code(value: object) -> str | None:
    """ISO alpha-2 for a code ("br", "BR") or a name ("Brasil", "Czech Republic"); None when unknown."""
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        return None
    codes, names = _index()
    text = value.strip()
    if len(text) == 2 and text.upper() in codes:
        return text.upper()
    return names.get(_key(text))
