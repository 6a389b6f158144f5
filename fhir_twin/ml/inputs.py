"""Model inputs read from a patient's twin, with the exact source versions each came from.

Only usable twin values are read (the Body has already dropped flagged ones). A value the twin
does not hold stays None, so the score says what is missing instead of assuming a default; an
input older than its field's ``stale_after`` is used but makes the assessment preliminary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar, get_args

from fhir_twin.errors import Invalid
from fhir_twin.ml.concepts import (
    DIABETES,
    HYPERCAPNIC_RESPIRATORY_FAILURE,
    Concept,
    is_antihypertensive,
)
from fhir_twin.ml.scores.atp3 import Atp3Inputs
from fhir_twin.ml.scores.model import Consciousness
from fhir_twin.ml.scores.news2 import News2Inputs
from fhir_twin.ml.scores.pooled_cohort import PooledCohortInputs
from fhir_twin.ml.scores.qsofa import QsofaInputs
from fhir_twin.twin.body import Point
from fhir_twin.twin.document import CaseItem, TwinDocument
from fhir_twin.twin.mapping_file import iso_duration

T = TypeVar("T")

# ADA Standards of Care, "Diagnosis and Classification of Diabetes": HbA1c ≥ 6.5 % is diabetes.
HBA1C_DIABETES = 6.5
ACTIVE = ("active", "recurrence", "relapse")


@dataclass(frozen=True)
class Gathered(Generic[T]):
    """A model's inputs, the version references they came from, and what to say about them."""

    inputs: T
    basis: tuple[str, ...]
    notes: tuple[str, ...]
    stale: bool


class _Reader:
    """Collects the sources and notes of the values read for one model."""

    def __init__(self, document: TwinDocument) -> None:
        self.document = document
        self.basis: list[str] = []
        self.notes: list[str] = []
        self.stale = False

    def latest(self, name: str) -> Point | None:
        state = self.document.body.get(name)
        return state.latest if state is not None else None

    def use(self, name: str, point: Point | None) -> Point | None:
        if point is None:
            return None
        if point.source not in self.basis:
            self.basis.append(point.source)
        state = self.document.body.get(name)
        if state is not None and state.stale:
            self.stale = True
            age = iso_duration(state.field.stale_after) if state.field.stale_after else "its staleness limit"
            self.notes.append(f"{state.field.label} is older than {age} ({point.time:%Y-%m-%d})")
        return point

    def value(self, name: str) -> float | None:
        point = self.use(name, self.latest(name))
        return point.value if point is not None else None

    def patient(self) -> None:
        if self.document.patient.source not in self.basis:
            self.basis.append(self.document.patient.source)

    def has(self, concept: Concept, kind: str = "conditions") -> bool:
        """Whether an active case entry of ``kind`` is the concept; its sources join the basis."""
        found = [
            item
            for item in self.document.case.get(kind, [])
            if _active(item) and concept.matches(item.code, item.display)
        ]
        for item in found:
            if item.source not in self.basis:
                self.basis.append(item.source)
        return bool(found)

    def gathered(self, inputs: T) -> Gathered[T]:
        return Gathered(inputs, tuple(self.basis), tuple(self.notes), self.stale)


def _active(item: CaseItem) -> bool:
    return item.status is None or item.status in ACTIVE


def news2_inputs(document: TwinDocument, window: timedelta) -> Gathered[News2Inputs]:
    """The latest of each NEWS2 parameter, as one contemporaneous set: every value within
    ``window`` of the newest, or it counts as not observed (RCP 2017 scores a complete set)."""
    reader = _Reader(document)
    names = ("respiratory_rate", "oxygen_saturation", "systolic_bp", "heart_rate", "body_temperature", "consciousness")
    latest = {name: reader.latest(name) for name in (*names, "inspired_oxygen", "oxygen_flow")}
    times = [point.time for point in latest.values() if point is not None and point.time is not None]
    newest = max(times) if times else None

    def recent(name: str) -> Point | None:
        point = latest[name]
        if point is None or point.time is None or newest is None:
            return None
        if point.time < newest - window:
            reader.notes.append(
                f"{name} ({point.time:%Y-%m-%d %H:%M}) is outside the {iso_duration(window)} window of the set"
            )
            return None
        return reader.use(name, point)

    def number(name: str) -> float | None:
        point = recent(name)
        return point.value if point is not None else None

    fio2, flow = recent("inspired_oxygen"), recent("oxygen_flow")
    oxygen: bool | None = None
    if fio2 is not None and fio2.value is not None:
        oxygen = fio2.value > 21
    if flow is not None and flow.value is not None:
        oxygen = bool(oxygen) or flow.value > 0
    consciousness = recent("consciousness")
    scale_2 = reader.has(HYPERCAPNIC_RESPIRATORY_FAILURE)
    if scale_2:
        reader.notes.append("SpO2 scale 2: the patient has hypercapnic respiratory failure on record")
    inputs = News2Inputs(
        respiratory_rate=number("respiratory_rate"),
        spo2=number("oxygen_saturation"),
        supplemental_oxygen=oxygen,
        systolic_bp=number("systolic_bp"),
        pulse=number("heart_rate"),
        consciousness=_consciousness(consciousness),
        temperature=number("body_temperature"),
        hypercapnic_respiratory_failure=scale_2,
    )
    return reader.gathered(inputs)


def qsofa_inputs(document: TwinDocument, window: timedelta) -> Gathered[QsofaInputs]:
    """Respiratory rate, systolic BP and mentation (ACVPU, or a Glasgow Coma Scale total below 15,
    Seymour et al. 2016), the latest within ``window`` of each other."""
    news2 = news2_inputs(document, window)
    # qSOFA reads a subset of NEWS2's parameters; only their sources form its basis.
    reader = _Reader(document)
    used = []
    for name in ("respiratory_rate", "systolic_bp", "consciousness"):
        point = reader.latest(name)
        if point is not None and point.source in news2.basis:
            used.append(reader.use(name, point))
    gcs = reader.latest("gcs")
    newest = max((point.time for point in used if point is not None and point.time is not None), default=None)
    if gcs is not None and gcs.time is not None and newest is not None and abs(gcs.time - newest) > window:
        reader.notes.append(f"gcs ({gcs.time:%Y-%m-%d %H:%M}) is outside the {iso_duration(window)} window of the set")
        gcs = None
    if gcs is not None:
        reader.use("gcs", gcs)
    inputs = QsofaInputs(
        respiratory_rate=news2.inputs.respiratory_rate,
        systolic_bp=news2.inputs.systolic_bp,
        consciousness=news2.inputs.consciousness,
        gcs=round(gcs.value) if gcs is not None and gcs.value is not None else None,
    )
    return reader.gathered(inputs)


def pooled_cohort_inputs(document: TwinDocument) -> Gathered[PooledCohortInputs]:
    """Age, sex and race from Patient; cholesterol, HDL, systolic BP and smoking from the Body;
    treatment and diabetes from the Case (no record of either counts as none, as EHR-based
    calculators read it)."""
    reader = _Reader(document)
    age, sex = _age_sex(reader)
    race = document.patient.race
    inputs = PooledCohortInputs(
        age=age,
        sex=sex,
        race=_race(race) if race else None,
        total_cholesterol=reader.value("total_cholesterol"),
        hdl=reader.value("hdl_cholesterol"),
        systolic_bp=reader.value("systolic_bp"),
        bp_treated=_treated(reader),
        smoker=_smoker(reader),
        diabetes=_diabetes(reader),
    )
    return reader.gathered(inputs)


def atp3_inputs(document: TwinDocument) -> Gathered[Atp3Inputs]:
    """The ATP III hard-CHD inputs, read as for the Pooled Cohort Equations (which add race)."""
    pooled = pooled_cohort_inputs(document)
    shared = {field.name: getattr(pooled.inputs, field.name) for field in dataclasses.fields(Atp3Inputs)}
    return Gathered(Atp3Inputs(**shared), pooled.basis, pooled.notes, pooled.stale)


def _age_sex(reader: _Reader) -> tuple[float | None, Any]:
    patient = reader.document.patient
    reader.patient()
    sex = patient.gender if patient.gender in ("female", "male") else None
    return (float(patient.age) if patient.age is not None else None), sex


def _race(display: str) -> str:
    text = display.lower()
    if "black" in text or "african" in text:
        return "african_american"
    return "white" if text == "white" else "other"


def _consciousness(point: Point | None) -> Consciousness | None:
    if point is None or point.category not in get_args(Consciousness):
        return None
    return point.category  # type: ignore[return-value]


def _smoker(reader: _Reader) -> bool | None:
    point = reader.latest("smoking_status")
    if point is None or point.category in (None, "unknown"):
        return None
    reader.use("smoking_status", point)
    return point.category == "current"


def _treated(reader: _Reader) -> bool:
    found = [
        item
        for item in reader.document.case.get("medications", [])
        if _active(item) and is_antihypertensive(item.display, item.details.get("reason", []))
    ]
    for item in found:
        reader.basis.append(item.source)
    return bool(found)


def _diabetes(reader: _Reader) -> bool:
    if reader.has(DIABETES):
        return True
    point = reader.latest("hba1c")
    if point is not None and point.value is not None and point.value >= HBA1C_DIABETES:
        reader.use("hba1c", point)
        reader.notes.append(f"diabetes from HbA1c {point.value:g} % ≥ {HBA1C_DIABETES} % (ADA)")
        return True
    return False


def simulate(gathered: Gathered[T], changes: dict[str, str]) -> Gathered[T]:
    """The inputs with hypothetical values put in (``$whatif``): each name is an input of the
    model, each value parsed to that input's type. Unknown names or bad values are ``Invalid``."""
    inputs = gathered.inputs
    known = {f.name: f for f in dataclasses.fields(inputs)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, raw in changes.items():
        if name not in known:
            continue
        values[name] = _parse(name, str(known[name].type), raw)
    notes = tuple(f"simulated: {name} = {raw}" for name, raw in changes.items() if name in known)
    return Gathered(dataclasses.replace(inputs, **values), gathered.basis, gathered.notes + notes, gathered.stale)  # type: ignore[type-var]


def _parse(name: str, type_text: str, raw: str) -> Any:
    if "bool" in type_text:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise Invalid.at(name, f"{name} must be true or false, not {raw!r}")
    if "float" in type_text or "int" in type_text:
        try:
            number = float(raw)
        except ValueError:
            raise Invalid.at(name, f"{name} must be a number, not {raw!r}") from None
        if number != number or number in (float("inf"), float("-inf")) or number < 0:
            raise Invalid.at(name, f"{name} must be a finite, non-negative number, not {raw!r}")
        return number
    choices = {
        "consciousness": get_args(Consciousness),
        "sex": ("female", "male"),
        "race": ("white", "african_american", "other"),
    }.get(name)
    if choices is not None and raw not in choices:
        raise Invalid.at(name, f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def input_names(inputs_type: type) -> tuple[str, ...]:
    """The names ``$whatif`` accepts for a model whose inputs are ``inputs_type``."""
    return tuple(f.name for f in dataclasses.fields(inputs_type))
