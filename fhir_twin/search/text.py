"""Folding text for string search: case- and accent-insensitive (R4 search.html#string).

"name=mul" finds "Müller": both sides are compared after folding case and dropping the
combining marks that NFKD decomposition separates from their letters.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))
