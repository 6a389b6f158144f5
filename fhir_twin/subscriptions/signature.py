"""The signature of a notification: HMAC-SHA256 of its body, keyed by the Subscription's secret.

As Medplum signs its rest-hooks: the key is the ``valueString`` of the Subscription's
``https://www.medplum.com/fhir/StructureDefinition/subscription-secret`` extension, the hex digest
goes in the ``X-Signature`` header. A receiver recomputes it over the raw body it received (an
empty one when the Subscription has no payload) and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fhir_twin.interactions.subscription import SECRET_EXTENSION

HEADER = "X-Signature"


def secret(subscription: dict[str, Any]) -> str | None:
    """The Subscription's signing key, if it has one."""
    for extension in subscription.get("extension") or []:
        if extension.get("url") == SECRET_EXTENSION and extension.get("valueString"):
            return str(extension["valueString"])
    return None


def sign(key: str, body: bytes) -> str:
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()
