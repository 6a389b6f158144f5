"""The models the Digital Doctor runs on a twin: each reads its inputs and scores them.

A runner ties a model to the twin: which Body fields it reads (the names ``$whatif`` may
change), how it gathers its inputs (``ml.inputs``), and what its RiskAssessment is about
(``Kind``). A ``Run`` is one result with exactly what it read and what it must say.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from fhir_twin.errors import Invalid
from fhir_twin.ml import assessment, codes, simulation
from fhir_twin.ml import fields as body_fields
from fhir_twin.ml import inputs as gather
from fhir_twin.ml.assessment import Kind
from fhir_twin.ml.fields import BodyField
from fhir_twin.ml.reader import Gathered
from fhir_twin.ml.scores import atp3, news2, pooled_cohort, qsofa
from fhir_twin.ml.scores.score import InputError, ModelInfo, Score
from fhir_twin.ml.simulation import Simulation
from fhir_twin.twin.document import TwinDocument
from fhir_twin.twin.twins import Twins

# SNOMED CT 709510001 "Assessment of risk for disease (procedure)", as the official R4 examples code it.
RISK_OF_DISEASE = {"system": codes.SNOMED, "code": "709510001", "display": "Assessment of risk for disease (procedure)"}


@dataclass(frozen=True)
class Patient:
    """What a runner may read of one patient: the twin document and, for series, the twins; and
    what the runners of one assessment gathered already (``memo``), which they share."""

    id: str
    document: TwinDocument
    twins: Twins
    now: datetime
    memo: dict[tuple[str, int], Gathered[Any]] = field(default_factory=dict, compare=False, repr=False)

    def gathered(
        self,
        name: str,
        simulated: Simulation | None,
        gather: Callable[[TwinDocument, Simulation | None], Gathered[Any]],
    ) -> Gathered[Any]:
        """``gather`` of this patient's twin (and ``simulated`` readings), once per assessment."""
        key = (name, id(simulated))
        if key not in self.memo:
            self.memo[key] = gather(self.document, simulated)
        return self.memo[key]


@dataclass(frozen=True)
class Run:
    """One model run on one patient: the score, exactly what it read, and what it must say."""

    score: Score
    basis: tuple[str, ...]
    notes: tuple[str, ...]
    stale: bool
    unverified: bool = False
    as_of: datetime | None = None  # the clinical time the prediction is about: its newest input
    simulation: Simulation | None = None

    @property
    def scored(self) -> bool:
        return self.score.value is not None or self.score.probability is not None

    @property
    def preliminary(self) -> bool:
        """Partial, stale, unverified, assumed or simulated inputs make it preliminary (R4 ObservationStatus)."""
        return (
            self.score.partial
            or self.stale
            or self.unverified
            or bool(self.score.assumptions)
            or self.simulation is not None
        )

    def risk_assessment(
        self, kind: Kind, patient_id: str, occurred: datetime, assessment_id: str | None = None
    ) -> dict[str, Any]:
        """This run as a RiskAssessment (``assessment.risk_assessment``)."""
        contained = simulation.contained(self.simulation, patient_id) if self.simulation is not None else []
        return assessment.risk_assessment(
            self.score,
            kind,
            patient_id,
            self.basis,
            self.notes,
            occurred,
            assessment_id=assessment_id,
            preliminary=self.preliminary,
            simulated=self.simulation is not None,
            as_of=self.as_of,
            contained=contained,
        )

    def fingerprint(self) -> str:
        """What the assessment says, and from what: an unchanged fingerprint needs no new resource."""
        score = self.score
        data = [
            score.model.id,
            score.model.version,
            # A Patient's demographic inputs enter as values (age, sex, race); a new version of it
            # that leaves them alone (a new address) changes nothing the model said.
            sorted(
                reference.split("/_history/")[0] if reference.startswith("Patient/") else reference
                for reference in self.basis
            ),
            # As the resource shows them: a continuous input such as age moves the raw value a little
            # on every run without changing what the assessment says.
            None if score.value is None else round(float(score.value), 4),
            None if score.probability is None else round(score.probability, 4),
            score.band,
            self.preliminary,
            list(self.notes),
        ]
        return hashlib.sha256(json.dumps(data, default=str).encode()).hexdigest()


def completed(gathered: Gathered[Any], score: Score, simulated: Simulation | None = None) -> Run:
    """The run of ``score`` on ``gathered``: its notes and the score's assumptions, and for a run
    that could not score for want of data, why each input is missing in its rationale."""
    if score.missing and score.value is None and gathered.notes:
        score = replace(score, rationale=f"{score.rationale}. {' '.join(gathered.notes)}")
    return Run(
        score,
        gathered.basis,
        gathered.notes + score.assumptions,
        gathered.stale,
        gathered.unverified,
        gathered.as_of,
        simulated,
    )


class Runner(Protocol):
    @property
    def kind(self) -> Kind: ...

    @property
    def model(self) -> ModelInfo: ...

    @property
    def reads(self) -> tuple[BodyField, ...]:
        """Every Body field the model reads, checked against the mapping at start-up (``fields.check``)."""
        ...

    @property
    def fields(self) -> tuple[str, ...]:
        """The Body fields a ``$whatif`` may change for this model."""
        ...

    def run(self, patient: Patient, simulated: Simulation | None = None, requested: bool = False) -> Run: ...


Gather = Callable[[Patient, Simulation | None, bool], Gathered[Any]]


@dataclass(frozen=True)
class ScoreRunner:
    """A rule-based score: gather its inputs from the document (simulated ones put in), score."""

    model: ModelInfo
    kind: Kind
    reads: tuple[BodyField, ...]
    gather: Gather
    score: Callable[[Any], Score]

    @property
    def fields(self) -> tuple[str, ...]:
        return body_fields.names(self.reads)

    def run(self, patient: Patient, simulated: Simulation | None = None, requested: bool = False) -> Run:
        gathered = self.gather(patient, simulated, requested)
        try:
            score = self.score(gathered.inputs)
        except InputError as error:
            if simulated is None:
                # The twin holds a value the score cannot take: no score, and why.
                return Run(Score.not_applicable(self.model, str(error)), gathered.basis, gathered.notes, False)
            # A hypothetical reading the score cannot take (HDL 0 for a logarithm): the client's error,
            # named by the parameter of the Body field that feeds the input.
            fed = self._field_of(error.input)
            name = fed if fed in simulated.points else next(iter(simulated.points))
            raise Invalid.at(name, f"{self.model.id}: {error}") from None
        return completed(gathered, score, simulated)

    def _field_of(self, input_name: str) -> str | None:
        """The Body field read for the score's input ``input_name``: the one of the input's code."""
        code = next((item.loinc for item in self.model.inputs if item.name == input_name), None)
        return next((read.name for read in self.reads if code is not None and read.code.token == code), None)


def rule_based(window: timedelta) -> list[Runner]:
    """The validated scores, NEWS2 and qSOFA reading sets measured within ``window`` of each other."""
    return [
        ScoreRunner(
            news2.MODEL,
            Kind({"coding": [RISK_OF_DISEASE], "text": "National Early Warning Score 2 (NEWS2)"}, None),
            gather.NEWS2_READS,
            lambda patient, simulated, _: gather.news2_inputs(patient.document, window, simulated),
            news2.news2,
        ),
        ScoreRunner(
            qsofa.MODEL,
            Kind({"coding": [RISK_OF_DISEASE], "text": "quick Sequential Organ Failure Assessment (qSOFA)"}, None),
            gather.QSOFA_READS,
            lambda patient, simulated, requested: gather.qsofa_inputs(patient.document, window, simulated, requested),
            qsofa.qsofa,
        ),
        ScoreRunner(
            pooled_cohort.MODEL,
            Kind(
                {
                    "coding": [codes.ASCVD_10Y_RISK._asdict()],
                    "text": "10-year ASCVD risk (Pooled Cohort Equations)",
                },
                timedelta(days=3652),
            ),
            gather.CARDIOVASCULAR_READS,
            lambda patient, simulated, _: patient.gathered("cardiovascular", simulated, gather.pooled_cohort_inputs),
            pooled_cohort.pooled_cohort,
        ),
        ScoreRunner(
            atp3.MODEL,
            Kind({"coding": [RISK_OF_DISEASE], "text": "10-year hard CHD risk (NCEP ATP III)"}, timedelta(days=3652)),
            gather.CARDIOVASCULAR_READS,
            lambda patient, simulated, _: gather.atp3_inputs(
                patient.gathered("cardiovascular", simulated, gather.pooled_cohort_inputs)
            ),
            atp3.atp3,
        ),
    ]
