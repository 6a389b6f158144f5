"""Where a dataset's patients come from: generated (synthetic) or not, and the evidence for it.

A patient is synthetic when its Patient resource carries a mark of generated data:

- the security label HTEST "test health data" (``http://terminology.hl7.org/CodeSystem/v3-ActReason``),
  which ``fhir-twin cohort`` and carebundle put on every resource;
- an identifier with system ``https://github.com/synthetichealth/synthea``, or an extension under
  ``http://synthetichealth.github.io/synthea/``, as Synthea writes on every Patient;
- an identifier with system ``https://github.com/TIET-AI/tietai-synthea``, as tietai-synthea writes.

A dataset is synthetic when ANY patient is: one generated patient already makes its figures something
other than clinical performance. The evidence (how many patients of how many, by which mark) goes into
every report; a user may add the synthetic label to data (``--synthetic``) but never remove it against
the evidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhir_twin.errors import Unprocessable

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SYNTHEA_IDENTIFIER = "https://github.com/synthetichealth/synthea"
SYNTHEA_EXTENSIONS = "http://synthetichealth.github.io/synthea/"
TIETAI_IDENTIFIER = "https://github.com/TIET-AI/tietai-synthea"

Resource = Mapping[str, Any]


def _labelled(resource: Resource) -> bool:
    labels = (resource.get("meta") or {}).get("security") or []
    return any(label.get("system") == ACT_REASON and label.get("code") == "HTEST" for label in labels)


def _identified_by(system: str) -> Callable[[Resource], bool]:
    return lambda resource: any(i.get("system") == system for i in resource.get("identifier") or [])


def _synthea_extension(resource: Resource) -> bool:
    return any(str(e.get("url", "")).startswith(SYNTHEA_EXTENSIONS) for e in resource.get("extension") or [])


# Each mark of generated data, by the name reports give it.
MARKS: dict[str, Callable[[Resource], bool]] = {
    "HTEST security label": _labelled,
    "Synthea identifier": _identified_by(SYNTHEA_IDENTIFIER),
    "Synthea extension": _synthea_extension,
    "tietai-synthea identifier": _identified_by(TIETAI_IDENTIFIER),
}


def marks_of(patient: Resource) -> list[str]:
    """The names of the marks of generated data ``patient`` carries (none: no evidence it is synthetic)."""
    return [name for name, test in MARKS.items() if test(patient)]


@dataclass(frozen=True)
class Origin:
    """The evidence of a dataset's origin: ``marked`` of ``patients`` carry a mark, ``marks`` counts the
    patients per mark; ``declared`` is what a user or the code that built the data said (None: nothing)."""

    patients: int
    marked: int = 0
    marks: tuple[tuple[str, int], ...] = ()
    declared: bool | None = None
    # False for data built in code (the synthetic cohort's frames): no Patient resource was looked at.
    examined: bool = True

    @property
    def synthetic(self) -> bool:
        return self.marked > 0 or self.declared is True

    def summary(self) -> str:
        if not self.examined:
            said = "synthetic" if self.declared else "real"
            return f"declared {said} by the code that built the data; no Patient resource was examined"
        if self.marked:
            marks = ", ".join(f"{name} on {count}" for name, count in self.marks)
            found = f"{self.marked} of {self.patients} patients carry a mark of generated data ({marks})"
        else:
            found = f"none of {self.patients} patients carries a mark of generated data"
        if self.declared is True:
            return f"declared synthetic; {found}"
        if self.declared is False:
            return f"declared real; {found}"
        return found

    def describe(self) -> dict[str, Any]:
        """The evidence as the report's ``data.origin``."""
        return {
            "patients": self.patients,
            "synthetic_patients": self.marked,
            "marks": dict(self.marks),
            "declared": self.declared,
            "summary": self.summary(),
        }


class RealOverridesEvidence(Unprocessable):
    """``--real`` asked for data that carries marks of generated data."""


def of_patients(patients: Iterable[Resource], declared: bool | None = None) -> Origin:
    """The origin of the data of these Patient resources. ``declared`` True adds the synthetic label;
    False (real) is refused with ``RealOverridesEvidence`` when any patient carries a mark."""
    count = 0
    marked = 0
    per_mark: Counter[str] = Counter()
    for patient in patients:
        count += 1
        found = marks_of(patient)
        marked += bool(found)
        per_mark.update(found)
    origin = Origin(count, marked, tuple((name, per_mark[name]) for name in MARKS if per_mark[name]), declared)
    if declared is False and marked:
        raise RealOverridesEvidence(
            f"the data cannot be declared real: {origin.summary().removeprefix('declared real; ')}"
        )
    return origin
