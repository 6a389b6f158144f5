"""The models this server runs: the validated scores, and the active version of each learned model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from fhir_twin.ml.runners import Runner, rule_based
from fhir_twin.store.repository import Repository


class Catalog:
    def __init__(self, repository: Repository, window: timedelta) -> None:
        self.repository = repository
        self._rule_based = rule_based(window)

    def runners(self) -> Sequence[Runner]:
        return self._rule_based
