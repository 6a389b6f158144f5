"""What one model run reads of a twin, and what it must say about what it read.

A ``Reader`` hands a model the values it asks for and keeps, as it goes, the exact version
references read (the RiskAssessment's ``basis``), the notes a clinician needs (a reading too old,
a newer reading that needs verification) and whether either makes the assessment preliminary.
Nothing is filled in for a value the twin does not hold: the model says what is missing.

Two rules of docs/clinical-safety.md live here. A newer flagged reading is never passed over in
silence (H1): ``needs_verification`` names it, and the model leaves the field out (a bedside
score) or says which earlier reading it used (a long-term risk). And staleness is judged per
model: a systolic BP from last month is stale for NEWS2, not for a 10-year risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from fhir_twin.ml import words
from fhir_twin.ml.concepts import Concept
from fhir_twin.ml.simulation import Simulation
from fhir_twin.twin.body import FieldState, Point
from fhir_twin.twin.document import CaseItem, TwinDocument

T = TypeVar("T")

ACTIVE = ("active", "recurrence", "relapse")
# A procedure with one of these statuses did not happen (R4 event-status).
NOT_DONE = ("not-done", "entered-in-error")
FLAG_WORDS = {
    "implausible": "implausible (outside what a living body can have, or an entry error)",
    "unit": "in a unit the twin cannot convert",
    "status": "not final",
    "comparator": "a bound, not a value",
    "unknown-answer": "an answer the twin does not know",
}


@dataclass(frozen=True)
class Gathered(Generic[T]):
    """A model's inputs, the version references they came from, and what to say about them."""

    inputs: T
    basis: tuple[str, ...]
    notes: tuple[str, ...]
    stale: bool
    unverified: bool = False
    as_of: datetime | None = None  # the clinical time of the newest input: what the prediction is about


class Reader:
    def __init__(
        self,
        document: TwinDocument,
        simulation: Simulation | None = None,
        stale_after: dict[str, timedelta] | None = None,
    ) -> None:
        self.document = document
        self.simulation = simulation or Simulation()
        self.stale_after = stale_after or {}
        self.basis: list[str] = []
        self.notes: list[str] = []
        self.stale = False
        self.unverified = False
        self.times: list[datetime] = []
        # limit → field label → the newest reading's time, for one note per limit
        self.old: dict[timedelta, dict[str, datetime]] = {}

    def state(self, name: str) -> FieldState | None:
        return self.document.body.get(name)

    def label(self, name: str) -> str:
        """The field's label as it reads inside a sentence: "heart rate", "HDL cholesterol"."""
        state = self.state(name)
        return words.in_sentence(state.field.label) if state is not None else name.replace("_", " ")

    def latest(self, name: str) -> Point | None:
        """The field's latest usable reading, or its simulated one."""
        if name in self.simulation.points:
            return self.simulation.points[name]
        state = self.state(name)
        return state.latest if state is not None else None

    def points(self, name: str) -> list[Point]:
        """The field's usable readings, oldest first (only the simulated one, when simulated)."""
        if name in self.simulation.points:
            return [self.simulation.points[name]]
        return [point for point in self.document.series.get(name, []) if point.used and point.time is not None]

    def needs_verification(self, name: str, consequence: str) -> bool:
        """Whether the field's newest reading is flagged; if so, say which and what the model does
        about it (``consequence``), and make the assessment preliminary."""
        state = self.state(name)
        if name in self.simulation.points or state is None or state.unverified is None:
            return False
        point = state.unverified
        shown = f"{point.original_value} {point.original_unit}" if point.original_unit else str(point.original_value)
        when = words.moment(point.time) if point.time is not None else "an unknown time"
        flag = FLAG_WORDS.get(point.flag or "", point.flag)
        self.notes.append(
            f"The newest {self.label(name)} reading, {shown.strip()} at {when}, is {flag} and needs "
            f"verification ({point.source}): {consequence}"
        )
        self.unverified = True
        return True

    def use(self, name: str, point: Point | None) -> Point | None:
        """Record ``point`` as read: its source joins the basis, an old one is noted as stale."""
        if point is None:
            return None
        self.read(point)
        state = self.state(name)
        limit = self.stale_after.get(name, state.field.stale_after if state is not None else None)
        if limit is not None and point.time is not None and point.time < self.document.reference_time - limit:
            self.stale = True
            found = self.old.setdefault(limit, {})
            label = self.label(name)
            found[label] = max(found.get(label, point.time), point.time)
        return point

    def read(self, point: Point) -> None:
        """Record ``point`` as read, whatever its age (a diagnosis-defining result stays one)."""
        if point.source not in self.basis:
            self.basis.append(point.source)
        if point.time is not None:
            self.times.append(point.time)

    def value(self, name: str) -> float | None:
        point = self.use(name, self.latest(name))
        return point.value if point is not None else None

    def patient(self) -> None:
        if self.document.patient.source not in self.basis:
            self.basis.append(self.document.patient.source)

    def age(self) -> float | None:
        """The patient's age in years at the document's time; the Patient joins the basis."""
        self.patient()
        age = self.document.patient.age
        return float(age) if age is not None else None

    def found(self, concept: Concept, kinds: tuple[str, ...], active_only: bool = True) -> list[CaseItem]:
        """Case entries of ``kinds`` that are the concept (active ones unless told, never a procedure
        that was not done); they join the basis."""
        items = [
            item
            for kind in kinds
            for item in self.document.case.get(kind, [])
            if (not active_only or active(item))
            and not (item.kind == "procedures" and item.status in NOT_DONE)
            and concept.matches(item.code, item.display)
        ]
        for item in items:
            self.cite(item)
        return items

    def cite(self, item: CaseItem) -> None:
        if item.source not in self.basis:
            self.basis.append(item.source)

    @property
    def as_of(self) -> datetime | None:
        """The clinical time of the newest reading read: what the prediction is about."""
        return max(self.times) if self.times else None

    def gathered(self, inputs: T) -> Gathered[T]:
        notes = [
            f"Measured more than {words.duration(limit)} before this assessment: "
            + ", ".join(f"{label} ({when:%Y-%m-%d})" for label, when in found.items())
            + "."
            for limit, found in sorted(self.old.items())
        ]
        return Gathered(inputs, tuple(self.basis), (*self.notes, *notes), self.stale, self.unverified, self.as_of)


def active(item: CaseItem) -> bool:
    return item.status is None or item.status in ACTIVE


def described(item: CaseItem) -> str:
    """A case entry as a clinician reads it: "Myocardial infarction, since 2019-04-01 (Condition/mi)"."""
    name = item.display or item.code or item.kind
    since = f", since {item.start:%Y-%m-%d}" if item.start is not None else ""
    return f"{name}{since} ({item.source.split('/_history/')[0]})"
