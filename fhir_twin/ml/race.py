"""US Core race → the Pooled Cohort Equations' race group.

The equations exist for white and for African American women and men; Goff et al. (2013) advise
the white equations for everyone else. US Core records race as up to five OMB categories and any
number of detailed codes from the CDC Race & Ethnicity code system
(``urn:oid:2.16.840.1.113883.6.238``), or a NullFlavor (UNK, ASKU) when it is unknown. The rule,
applied to every code recorded:

- any Black or African American code (OMB 2054-5 or one of its detailed codes) → the African
  American equation, the only one derived for a group other than white; with other categories
  too, the assessment says so and gives the other equation's result;
- otherwise only White codes (OMB 2106-3 or its detailed codes) → white;
- otherwise any other category → "other": the white equation, with Goff's caveat;
- no codes: the extension's text, read the same way; nothing usable → not recorded (the score
  assumes the white equation and says what the other would give).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Group = Literal["white", "african_american", "other"]

# OMB 2054-5 Black or African American and its detailed codes: 2056-0 Black, 2058-6 African
# American, 2060-2 African, 2061-0 Botswanan, 2062-8 Ethiopian, 2063-6 Liberian, 2064-4
# Namibian, 2065-1 Nigerian, 2066-9 Zairean, 2067-7 Bahamian, 2068-5 Barbadian, 2069-3
# Dominican, 2070-1 Dominica Islander, 2071-9 Haitian, 2072-7 Jamaican, 2073-5 Tobagoan,
# 2074-3 Trinidadian, 2075-0 West Indian.
BLACK = frozenset(
    {
        "2054-5",
        "2056-0",
        "2058-6",
        "2060-2",
        "2061-0",
        "2062-8",
        "2063-6",
        "2064-4",
        "2065-1",
        "2066-9",
        "2067-7",
        "2068-5",
        "2069-3",
        "2070-1",
        "2071-9",
        "2072-7",
        "2073-5",
        "2074-3",
        "2075-0",
    }
)
# OMB 2106-3 White and its detailed codes: 2108-9 European, 2109-7 Armenian, 2110-5 English,
# 2111-3 French, 2112-1 German, 2113-9 Irish, 2114-7 Italian, 2115-4 Polish, 2116-2 Scottish,
# 2118-8 Middle Eastern or North African, 2119-6 Assyrian, 2120-4 Egyptian, 2121-2 Iranian,
# 2122-0 Iraqi, 2123-8 Lebanese, 2124-6 Palestinian, 2125-3 Syrian, 2126-1 Afghanistani,
# 2127-9 Israeli, 2129-5 Arab.
WHITE = frozenset(
    {
        "2106-3",
        "2108-9",
        "2109-7",
        "2110-5",
        "2111-3",
        "2112-1",
        "2113-9",
        "2114-7",
        "2115-4",
        "2116-2",
        "2118-8",
        "2119-6",
        "2120-4",
        "2121-2",
        "2122-0",
        "2123-8",
        "2124-6",
        "2125-3",
        "2126-1",
        "2127-9",
        "2129-5",
    }
)


@dataclass(frozen=True)
class RaceGroup:
    """The equation's group (None: not recorded); ``several``: Black or African American with others."""

    group: Group | None
    several: bool


def pooled_cohort_group(codes: tuple[str, ...], text: str | None) -> RaceGroup:
    """The group of a patient's race codes (OMB and detailed, NullFlavors left out), or its text."""
    if codes:
        black = any(code in BLACK for code in codes)
        white = any(code in WHITE for code in codes)
        other = any(code not in BLACK and code not in WHITE for code in codes)
        if black:
            return RaceGroup("african_american", white or other)
        return RaceGroup("white" if white and not other else "other", False)
    words = (text or "").strip().lower()
    if not words:
        return RaceGroup(None, False)
    if "black" in words or "african" in words:
        return RaceGroup("african_american", False)
    return RaceGroup("white" if words == "white" else "other", False)
