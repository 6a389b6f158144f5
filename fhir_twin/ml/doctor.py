"""The Digital Doctor: runs every model on a patient's twin and records each prediction as a
RiskAssessment with its Provenance, written through the FHIR API like any client's resources.

A model's RiskAssessment is written only when what it says, or what it read, changed since its
last one for the patient; each is a new resource, never an update of an earlier one.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_twin.errors import Conflict, Gone, NotFound
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions import unrecorded
from fhir_twin.interactions.message import Request, Response
from fhir_twin.ml import assessment, simulation
from fhir_twin.ml.catalog import Catalog
from fhir_twin.ml.runners import Patient, Run, Runner
from fhir_twin.ml.scores.score import Score
from fhir_twin.store import doctor_state as store
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.twin.document import TwinDocument
from fhir_twin.twin.twins import Twins

log = logging.getLogger(__name__)


class _Outdated(Conflict):
    """A record's plan no longer holds under the lock: another record of its patients committed."""


@dataclass
class _Plan:
    """What one record writes, read before the write gate (``Doctor._plan``)."""

    only_changed: bool
    # Written in the same transaction (the queue's rows taken off), if anything.
    finish: Callable[[DatabaseTransaction], None] | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    # Each patient's last fingerprints (model id → fingerprint) the plan was made on.
    seen: dict[str, dict[str, str]] = field(default_factory=dict)
    # Model versions whose Device the plan reached, and those (Device, card) it writes.
    devices: set[str] = field(default_factory=set)
    described: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """One model's result for a patient: the run, and the RiskAssessment written for it, if any."""

    runner: Runner
    run: Run
    resource: dict[str, Any] | None


class Doctor:
    """Built on the loaded mapping: a model reading a Body field the mapping does not define as it
    expects stops construction (``Catalog.check``), and with it the server."""

    def __init__(
        self,
        repository: Repository,
        twins: Twins,
        route: Callable[[Request], Response],
        catalog: Catalog,
        base: str = "",
    ) -> None:
        catalog.check(twins.mapping)
        self.repository = repository
        self.twins = twins
        self.route = route
        self.catalog = catalog
        self.base = base

    def runners(self) -> Sequence[Runner]:
        """The models served now (the catalog's, with each learned model's active version)."""
        return self.catalog.runners()

    def runs(
        self, patient_id: str, model_ids: Sequence[str] | None = None, requested: Collection[str] = ()
    ) -> list[tuple[Runner, Run]]:
        """Every (chosen) model's run on the patient's twin as it is now; nothing is stored.
        ``requested`` models were asked for by name: one outside its usual use (qSOFA without a
        suspected infection) runs, and says so."""
        return self.runs_on(self.twins.document(patient_id), model_ids, requested)

    def runs_on(
        self, document: TwinDocument, model_ids: Sequence[str] | None = None, requested: Collection[str] = ()
    ) -> list[tuple[Runner, Run]]:
        """``runs`` on a twin document as given: the stored twin's, or one built in memory from
        resources this server does not hold (``twin.transient``); nothing is stored."""
        patient = Patient(document.patient.id, document, self.twins, now())
        chosen = self._chosen(model_ids)
        if document.patient.deceased:
            return [(runner, _deceased(runner, document)) for runner in chosen]
        return [(runner, runner.run(patient, None, runner.model.id in requested)) for runner in chosen]

    def whatif(
        self, patient_id: str, model_ids: Sequence[str] | None, changes: list[tuple[str, str]]
    ) -> list[tuple[Runner, Run, Run]]:
        """Each (chosen) model's current run and its run with ``changes`` (Body field → value) put in."""
        document = self.twins.document(patient_id)
        patient = Patient(patient_id, document, self.twins, now())
        chosen = self._chosen(model_ids)
        simulated = simulation.parse(changes, document, {name for runner in chosen for name in runner.fields})
        requested = set(model_ids or ())
        if document.patient.deceased:
            return [(runner, _deceased(runner, document), _deceased(runner, document)) for runner in chosen]
        return [
            (
                runner,
                runner.run(patient, None, runner.model.id in requested),
                runner.run(patient, simulated, runner.model.id in requested),
            )
            for runner in chosen
        ]

    def _chosen(self, model_ids: Sequence[str] | None) -> list[Runner]:
        return [runner for runner in self.runners() if model_ids is None or runner.model.id in model_ids]

    def assess(
        self,
        patient_id: str,
        model_ids: Sequence[str] | None = None,
        only_changed: bool = True,
        requested: Collection[str] = (),
    ) -> list[Outcome]:
        """Run the models and record a RiskAssessment for each that scored (and, with
        ``only_changed``, whose result or inputs differ from its last one)."""
        return self.record({patient_id: self.runs(patient_id, model_ids, requested)}, only_changed)[patient_id]

    def assess_many(
        self, patient_ids: Sequence[str], model_ids: Sequence[str] | None = None, only_changed: bool = True
    ) -> dict[str, list[Outcome]]:
        """``assess`` for several patients, recorded in one transaction (a batch costs one commit);
        patients unknown or deleted by now are left out."""
        runs = {}
        for patient_id in patient_ids:
            try:
                runs[patient_id] = self.runs(patient_id, model_ids)
            except (NotFound, Gone):
                continue
        return self.record(runs, only_changed)

    def record(
        self,
        runs: dict[str, list[tuple[Runner, Run]]],
        only_changed: bool,
        finish: Callable[[DatabaseTransaction], None] | None = None,
    ) -> dict[str, list[Outcome]]:
        """Write the scored runs as one transaction: RiskAssessment, Provenance, and the model's
        Device and model card the first time a model version is used; ``finish`` joins it (the
        queue's rows taken off with the assessments they asked for).

        What to write is read before the write gate and checked again under it, in the
        transaction the Bundle opens once it has validated the resources (``Repository.prelude``):
        the validation of a batch's hundreds of resources then holds no other writer back. If a
        record of one of the patients committed in between, the batch is planned again under the
        lock, as it is when called inside another transaction."""
        occurred = now()
        plan = self._record_before_gate(runs, only_changed, occurred, finish)
        if plan is None:
            with self.repository.transaction(write=True) as tx:
                plan = self._plan(tx, runs, only_changed, occurred, finish, locked=True)
                self._keep(tx, plan)
                self._write(plan)
        return {patient_id: plan.outcomes[patient_id] for patient_id in runs}

    def _record_before_gate(
        self,
        runs: dict[str, list[tuple[Runner, Run]]],
        only_changed: bool,
        occurred: datetime,
        finish: Callable[[DatabaseTransaction], None] | None,
    ) -> _Plan | None:
        """``record`` planned in a read transaction and checked under the lock; None when it
        cannot be (inside another transaction) or its plan no longer held (nothing was written)."""
        if self.repository.active_transaction() is not None:
            return None
        with self.repository.transaction() as tx:
            plan = self._plan(tx, runs, only_changed, occurred, finish, locked=False)
        try:
            with self.repository.prelude(lambda tx: self._confirm(tx, plan)):
                self._write(plan)
        except _Outdated:
            log.info("Assessments of %s changed while recording; recording again", ", ".join(sorted(runs)))
            return None
        return plan

    def _plan(
        self,
        tx: DatabaseTransaction,
        runs: dict[str, list[tuple[Runner, Run]]],
        only_changed: bool,
        occurred: datetime,
        finish: Callable[[DatabaseTransaction], None] | None,
        locked: bool,
    ) -> _Plan:
        """The entries to write and each patient's outcomes, from the last fingerprints read in
        ``tx``; ``locked``: each patient's lock is taken first (in one order, so two batches over
        the same patients cannot deadlock)."""
        plan = _Plan(only_changed, finish)
        for patient_id in sorted(runs):
            if locked:
                tx.lock(f"doctor:{patient_id}")
            last = store.last_fingerprints(tx, patient_id) if only_changed else {}
            plan.seen[patient_id] = last
            plan.outcomes[patient_id] = [
                self._entries(tx, patient_id, runner, run, occurred, plan, locked)
                if run.scored and not (only_changed and last.get(runner.model.id) == run.fingerprint())
                else Outcome(runner, run, None)
                for runner, run in runs[patient_id]
            ]
        return plan

    def _confirm(self, tx: DatabaseTransaction, plan: _Plan) -> None:
        """Under the lock, in the write's transaction: the plan still holds (no record of its
        patients and no Device it writes committed since it was read), else ``_Outdated``."""
        for patient_id in sorted(plan.seen):
            tx.lock(f"doctor:{patient_id}")
            if plan.only_changed and store.last_fingerprints(tx, patient_id) != plan.seen[patient_id]:
                raise _Outdated(f"Patient/{patient_id}'s assessments changed while they were being recorded")
        for device_id, card_id in plan.described:
            tx.lock(f"device:{device_id}")
            if self._described(tx, device_id, card_id):
                raise _Outdated(f"Device/{device_id} was written while the assessments were being recorded")
        self._keep(tx, plan)

    def _write(self, plan: _Plan) -> None:
        """Post the plan's entries as a transaction Bundle; with none, only ``finish`` is written
        (in a transaction of its own, unless one is open)."""
        if not plan.entries:
            if plan.finish is not None:
                with self.repository.transaction(write=True):
                    pass
            return
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": plan.entries}
        response = self.route(Request("POST", "", self.base, body=bundle, headers={"prefer": "return=minimal"}))
        if response.status >= 400:
            raise RuntimeError(f"recording assessments of {', '.join(sorted(plan.seen))} failed: {response.body}")

    @staticmethod
    def _keep(tx: DatabaseTransaction, plan: _Plan) -> None:
        """What each model assessed last, and ``finish``, in the write's transaction."""
        for patient_id, outcomes in plan.outcomes.items():
            for outcome in outcomes:
                if outcome.resource is not None:
                    fingerprint = outcome.run.fingerprint()
                    store.remember(tx, patient_id, outcome.runner.model.id, fingerprint, outcome.resource)
        if plan.finish is not None:
            plan.finish(tx)

    def _entries(
        self,
        tx: DatabaseTransaction,
        patient_id: str,
        runner: Runner,
        run: Run,
        occurred: datetime,
        plan: _Plan,
        locked: bool,
    ) -> Outcome:
        """Add one run's RiskAssessment and Provenance to the plan's entries, and the model
        version's model card and Device the first time it is used (a Device stored without its
        card is written again, to name it); ``locked``: under the Device's lock."""
        model = run.score.model
        device_id = assessment.device_id(model)
        card_id = assessment.card_id(model)
        needed = device_id not in plan.devices and not self._described(tx, device_id, card_id)
        if needed and locked:
            tx.lock(f"device:{device_id}")
            needed = not self._described(tx, device_id, card_id)
        if needed:
            plan.entries.append(_put(assessment.device(model, self.base)))
            if tx.current("DocumentReference", card_id) is None:
                plan.entries.append(_put(assessment.model_card(model, self.catalog.card(model), occurred)))
            plan.described.append((device_id, card_id))
        plan.devices.add(device_id)
        assessment_id = str(uuid.uuid4())
        resource = run.risk_assessment(runner.kind, patient_id, occurred, assessment_id)
        plan.entries.append(_put(resource))
        provenance = assessment.provenance(assessment_id, model, run.basis, occurred)
        plan.entries.append({"resource": provenance, "request": {"method": "POST", "url": "Provenance"}})
        return Outcome(runner, run, resource)

    @staticmethod
    def _described(tx: DatabaseTransaction, device_id: str, card_id: str) -> bool:
        """Whether the model version's Device and its model card are both stored."""
        return tx.current("Device", device_id) is not None and tx.current("DocumentReference", card_id) is not None

    def patients(self) -> list[str]:
        """Every live patient's id."""
        return store.patient_ids(self.repository)

    def latest(self, patient_id: str, at: datetime | None = None) -> list[dict[str, Any]]:
        """The newest RiskAssessment of each model for the patient (made before ``at``), newest first."""
        query = [("subject", f"Patient/{patient_id}"), ("_sort", "-date"), ("_count", "1000")]
        if at is not None:
            query.append(("date", f"lt{format_instant(at)}"))
        # A step of the twin's answer or the Doctor's assessment, recorded with it.
        with unrecorded():
            response = self.route(Request("GET", "RiskAssessment", self.base, query=query))
        bundle = json.loads(response.body) if isinstance(response.body, str) else response.body or {}
        newest: dict[str, dict[str, Any]] = {}
        for entry in bundle.get("entry", []):
            resource = entry.get("resource") or {}
            if not isinstance(resource, dict):
                # Search pages carry stored resources as their raw JSON text (simplejson RawJSON).
                resource = json.loads(resource.encoded_json)
            codings = (resource.get("method") or {}).get("coding") or [{}]
            newest.setdefault(codings[0].get("code", ""), resource)
        return list(newest.values())

    def work(self, owner: str, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Assess the queued patients; how many were."""
        count = 0
        while not should_stop():
            claimed = store.claim(self.repository, owner)
            if not claimed:
                break
            count += self._work_batch(owner, claimed, should_stop)
        return count

    def _work_batch(self, owner: str, claimed: list[str], should_stop: Callable[[], bool]) -> int:
        """Run the models for a claimed batch outside any write, then record what changed and take
        the batch off the queue in one transaction: one commit a pass, not two a patient, so
        under a stream of writes the Doctor's cost per patient falls as its queue grows. If that
        transaction fails, each patient is recorded on its own, so none holds back another."""
        runs: dict[str, list[tuple[Runner, Run]]] = {}
        finished: list[str] = []
        for patient_id in claimed:
            if should_stop():
                store.release(self.repository, owner, patient_id)
                continue
            finished.append(patient_id)
            try:
                runs[patient_id] = self.runs(patient_id)
            except (NotFound, Gone) as error:
                # The patient is gone or deleted: there is nothing to assess.
                log.info("Not assessing Patient/%s: %s", patient_id, error)
            except Exception:
                log.exception("Assessing Patient/%s failed; it is assessed again on its next change", patient_id)
        try:
            self.record(runs, only_changed=True, finish=lambda tx: store.finish(tx, owner, finished))
        except Exception:
            for patient_id in finished:
                try:
                    if patient_id in runs:
                        self.record({patient_id: runs[patient_id]}, only_changed=True)
                except Exception:
                    log.exception("Recording Patient/%s failed; it is assessed again on its next change", patient_id)
                    runs.pop(patient_id)
                store.done(self.repository, owner, patient_id)
        return len(runs)


def _deceased(runner: Runner, document: TwinDocument) -> Run:
    """Every model predicts for the living; none applies once the record says the patient died."""
    return Run(Score.not_applicable(runner.model, "the patient is deceased"), (document.patient.source,), (), False)


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}
