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
# The element types of R4B resources R4 lacks (SubscriptionTopic, SubscriptionStatus), built from
# the fhir.resources R4B models by ``scripts/build_r4b_elements.py``.
DATA_R4B = Path(__file__).with_name("data") / "elements-r4b.json"


@cache
def table() -> dict[str, Any]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    extra = json.loads(DATA_R4B.read_text(encoding="utf-8"))
    return {**data, "types": {**data["types"], **extra["types"]}}
