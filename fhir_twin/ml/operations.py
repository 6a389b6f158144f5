"""``Patient/{id}/$predict`` and ``Patient/{id}/$whatif`` (R4 operations.html).

``$predict`` runs the models now and records every scored run as a new RiskAssessment (with its
Provenance); ``model`` (repeatable) chooses which, and a model asked for by name runs even outside
its usual use where its source allows a clinician to ask (qSOFA without a recorded suspicion of
infection), saying so. ``$whatif`` answers the same predictions for hypothetical readings of the
twin's Body fields (``systolic_bp=120``, ``smoking_status=never``: the names and values the twin
document shows): nothing is stored, and each RiskAssessment it returns is preliminary, tagged
``simulated``, and carries its hypothetical readings as contained Observations, beside the one the
patient's real readings give.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_twin.errors import Invalid
from fhir_twin.fhir.instant import now
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Parameter, parameters
from fhir_twin.ml import simulation
from fhir_twin.ml.catalog import LEARNED
from fhir_twin.ml.doctor import Doctor, Outcome
from fhir_twin.ml.runners import Run, Runner
from fhir_twin.twin.operation import twin_permission

PREDICT_DEFINITION = "urn:fhir-twin:OperationDefinition/Patient-predict"
WHATIF_DEFINITION = "urn:fhir-twin:OperationDefinition/Patient-whatif"
MODEL_PARAMETER = Parameter(
    "model",
    "in",
    "code",
    "A model to run, by its id as GET /twin/models lists it (repeatable); every model served when absent.",
    max="*",
)


def predict_operation(doctor: Doctor) -> Operation:
    def handle(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
        given = parameters(request)
        unknown = [name for name, _ in given if name != "model"]
        if unknown:
            raise Invalid.at(unknown[0], f"$predict takes only 'model', not {unknown[0]!r}")
        models = _models(doctor, [str(value) for _, value in given])
        outcomes = doctor.assess(str(res_id), models, only_changed=False, requested=models or ())
        return Response(200, {}, {"resourceType": "Parameters", "parameter": [_predicted(o) for o in outcomes]})

    return Operation(
        name="predict",
        levels=frozenset({"instance"}),
        methods=frozenset({"POST"}),
        handler=handle,
        definition=PREDICT_DEFINITION,
        types=frozenset({"Patient"}),
        permission=twin_permission(doctor.twins, creates=("RiskAssessment",)),
        affects_state=True,
        description="Runs the Digital Doctor's models on the patient's twin now and records each scored run as a "
        "new RiskAssessment with its Provenance; invoked with POST only.",
        parameters=(
            MODEL_PARAMETER,
            Parameter(
                "return",
                "out",
                "Parameters",
                "One `prediction` per model run, with parts `model` (code), `result` (`scored`, `insufficient-data` "
                "or `not-applicable`), `message` (string), `missing` (code, each input not observed) and, when "
                "scored, `riskAssessment` (the RiskAssessment recorded).",
                min=1,
            ),
        ),
    )


def whatif_operation(doctor: Doctor) -> Operation:
    def handle(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
        given = parameters(request)
        models = _models(doctor, [str(value) for name, value in given if name == "model"])
        changes = [(name, str(value)) for name, value in given if name != "model"]
        if not changes:
            raise Invalid("$whatif needs at least one hypothetical reading, e.g. systolic_bp=120")
        patient_id = str(res_id)
        occurred = now()
        out = []
        for runner, current, simulated in doctor.whatif(patient_id, models, changes):
            parts = [{"name": "model", "valueCode": runner.model.id}]
            parts += _scored("current", runner, current, patient_id, occurred)
            parts += _scored("simulated", runner, simulated, patient_id, occurred)
            out.append({"name": "prediction", "part": parts})
        return Response(200, {}, {"resourceType": "Parameters", "parameter": out})

    return Operation(
        name="whatif",
        levels=frozenset({"instance"}),
        methods=frozenset({"GET", "POST"}),
        handler=handle,
        definition=WHATIF_DEFINITION,
        types=frozenset({"Patient"}),
        permission=twin_permission(doctor.twins),
        affects_state=False,
        description="The models' predictions for hypothetical values, beside those the patient's own record gives. "
        "Each hypothetical value is a parameter named after the twin's Body field it replaces; R4 cannot declare "
        "an open list of names, so every Body field of the server's mapping is declared, and one that no chosen "
        "model reads is refused. Nothing is stored.",
        parameters=(
            MODEL_PARAMETER,
            *(simulation.parameter(field) for field in doctor.twins.mapping.fields.values()),
            Parameter(
                "return",
                "out",
                "Parameters",
                "One `prediction` per model, with parts `model` (code), `current` and `simulated`: each an unstored "
                "RiskAssessment (the simulated one `preliminary` and tagged `simulated`), or a string saying why "
                "there is none.",
                min=1,
            ),
        ),
    )


def _models(doctor: Doctor, names: list[str]) -> list[str] | None:
    if not names:
        return None
    served = {runner.model.id for runner in doctor.runners()}
    for name in names:
        if name in LEARNED and name not in served:
            reason = "runs on no patient" if LEARNED[name].runner is None else "is not trained on this server"
            raise Invalid.at("model", f"Model {name!r} {reason}; models served: {', '.join(sorted(served))}")
        if name not in served:
            raise Invalid.at("model", f"Unknown model {name!r}; models: {', '.join(sorted(served))}")
    return names


def _result(run: Run) -> str:
    if run.scored:
        return "scored"
    return "insufficient-data" if run.score.missing else "not-applicable"


def _predicted(outcome: Outcome) -> dict[str, Any]:
    run = outcome.run
    parts: list[dict[str, Any]] = [
        {"name": "model", "valueCode": outcome.runner.model.id},
        {"name": "result", "valueCode": _result(run)},
        {"name": "message", "valueString": run.score.rationale},
    ]
    parts += [{"name": "missing", "valueCode": name} for name in run.score.missing]
    if outcome.resource is not None:
        parts.append({"name": "riskAssessment", "resource": outcome.resource})
    return {"name": "prediction", "part": parts}


def _scored(name: str, runner: Runner, run: Run, patient_id: str, occurred: datetime) -> list[dict[str, Any]]:
    """A ``current`` or ``simulated`` part: the unstored RiskAssessment, or why there is none."""
    if not run.scored:
        return [{"name": name, "valueString": f"{_result(run)}: {run.score.rationale}"}]
    return [{"name": name, "resource": run.risk_assessment(runner.kind, patient_id, occurred)}]
