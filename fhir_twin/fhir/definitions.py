"""The element table distilled from the R4 StructureDefinitions by ``scripts/build_spec_data.py``.

Loaded once per process; ``elements`` walks resources with it, ``subsetting`` shapes
``_summary`` answers with it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("data") / "elements.json"


@cache
def table() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))
