"""The models the Digital Doctor runs on a twin: each reads its inputs and scores them.

A runner ties a model to the twin: which inputs it reads (``ml.inputs``), what its
RiskAssessment is about (``Kind``), and which names ``$whatif`` may change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from fhir_twin.errors import Invalid
from fhir_twin.ml import assessment
from fhir_twin.ml import inputs as gather
from fhir_twin.ml.assessment import Kind
from fhir_twin.ml.scores import atp3, news2, pooled_cohort, qsofa
from fhir_twin.ml.scores.model import ModelInfo, Score
from fhir_twin.twin.document import TwinDocument
from fhir_twin.twin.twins import Twins

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
# SNOMED CT 709510001 "Assessment of risk for disease (procedure)", as the official R4 examples code it.
RISK_OF_DISEASE = {"system": SNOMED, "code": "709510001", "display": "Assessment of risk for disease (procedure)"}


@dataclass(frozen=True)
class Patient:
    """What a runner may read of one patient: the twin document and, for series, the twins."""

    id: str
    document: TwinDocument
    twins: Twins
    now: datetime


@dataclass(frozen=True)
class Run:
    """One model run on one patient: the score and exactly what it read."""

    score: Score
    basis: tuple[str, ...]
    notes: tuple[str, ...]
    stale: bool

    @property
    def scored(self) -> bool:
        return self.score.value is not None or self.score.probability is not None

    @property
    def preliminary(self) -> bool:
        """Partial or stale inputs make the assessment preliminary (R4 ObservationStatus)."""
        return self.score.partial or self.stale

    def risk_assessment(
        self,
        kind: Kind,
        patient_id: str,
        occurred: datetime,
        assessment_id: str | None = None,
        simulated: bool = False,
    ) -> dict[str, Any]:
        """This run as a RiskAssessment (``assessment.risk_assessment``)."""
        return assessment.risk_assessment(
            self.score,
            kind,
            patient_id,
            self.basis,
            self.notes,
            occurred,
            assessment_id=assessment_id,
            preliminary=self.preliminary,
            simulated=simulated,
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
        ]
        return hashlib.sha256(json.dumps(data, default=str).encode()).hexdigest()


class Runner(Protocol):
    kind: Kind

    @property
    def model(self) -> ModelInfo: ...

    @property
    def input_names(self) -> tuple[str, ...]: ...

    def run(self, patient: Patient, changes: dict[str, str] | None = None) -> Run: ...


@dataclass(frozen=True)
class ScoreRunner:
    """A rule-based score: gather its inputs from the document, optionally change some, score."""

    model: ModelInfo
    kind: Kind
    input_names: tuple[str, ...]
    gather: Callable[[TwinDocument], gather.Gathered[Any]]
    score: Callable[[Any], Score]

    def run(self, patient: Patient, changes: dict[str, str] | None = None) -> Run:
        gathered = self.gather(patient.document)
        if changes:
            gathered = gather.simulate(gathered, changes)
        try:
            score = self.score(gathered.inputs)
        except ValueError as error:
            if not changes:
                # The twin holds a value the score cannot take: no score, and why.
                return Run(Score.not_applicable(self.model, str(error)), gathered.basis, gathered.notes, False)
            # A hypothetical value the score cannot take (SpO2 150 %, HDL 0): the client's error.
            name = next((name for name in changes if str(error).startswith(name)), next(iter(changes)))
            raise Invalid.at(name, f"{self.model.id}: {error}") from None
        return Run(score, gathered.basis, gathered.notes, gathered.stale)


def rule_based(window: timedelta) -> list[Runner]:
    """The validated scores, NEWS2 and qSOFA reading sets measured within ``window`` of each other."""
    return [
        ScoreRunner(
            news2.MODEL,
            Kind({"coding": [RISK_OF_DISEASE], "text": "National Early Warning Score 2 (NEWS2)"}, None),
            gather.input_names(news2.News2Inputs),
            lambda document: gather.news2_inputs(document, window),
            news2.news2,
        ),
        ScoreRunner(
            qsofa.MODEL,
            Kind({"coding": [RISK_OF_DISEASE], "text": "quick Sequential Organ Failure Assessment (qSOFA)"}, None),
            gather.input_names(qsofa.QsofaInputs),
            lambda document: gather.qsofa_inputs(document, window),
            qsofa.qsofa,
        ),
        ScoreRunner(
            pooled_cohort.MODEL,
            Kind(
                {
                    "coding": [
                        {
                            "system": LOINC,
                            "code": "79423-0",
                            "display": (
                                "Cardiovascular disease 10Y risk [Likelihood] ACC-AHA Pooled Cohort by Goff 2013"
                            ),
                        }
                    ],
                    "text": "10-year ASCVD risk (Pooled Cohort Equations)",
                },
                timedelta(days=3652),
            ),
            gather.input_names(pooled_cohort.PooledCohortInputs),
            gather.pooled_cohort_inputs,
            pooled_cohort.pooled_cohort,
        ),
        ScoreRunner(
            atp3.MODEL,
            Kind({"coding": [RISK_OF_DISEASE], "text": "10-year hard CHD risk (NCEP ATP III)"}, timedelta(days=3652)),
            gather.input_names(atp3.Atp3Inputs),
            gather.atp3_inputs,
            atp3.atp3,
        ),
    ]
