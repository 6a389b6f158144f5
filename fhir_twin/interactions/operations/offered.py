"""Every operation the server offers, by name."""

from __future__ import annotations

from fhir_twin.interactions.operations import Operation
from fhir_twin.interactions.operations.everything import EVERYTHING
from fhir_twin.interactions.operations.expand import EXPAND
from fhir_twin.interactions.operations.export import EXPORT, EXPORT_FILE, EXPORT_POLL_STATUS
from fhir_twin.interactions.operations.lastn import LASTN
from fhir_twin.interactions.operations.lookup import LOOKUP
from fhir_twin.interactions.operations.subscription_status import SUBSCRIPTION_STATUS
from fhir_twin.interactions.operations.subsumes import SUBSUMES
from fhir_twin.interactions.operations.validate import VALIDATE
from fhir_twin.interactions.operations.validate_code import VALIDATE_CODE

OPERATIONS: dict[str, Operation] = {
    operation.name: operation
    for operation in (
        VALIDATE,
        EVERYTHING,
        LASTN,
        EXPORT,
        EXPORT_POLL_STATUS,
        EXPORT_FILE,
        LOOKUP,
        EXPAND,
        VALIDATE_CODE,
        SUBSUMES,
        SUBSCRIPTION_STATUS,
    )
}
