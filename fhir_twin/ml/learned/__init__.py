"""Learned models of the Digital Doctor: trained on the server's own data (or on published data they
bring), evaluated, and shipped with a report.

One module per model (``forecast``, ``incidence``, ``progression``, ``pima``), each with a ``train``
that returns a ``report.TrainResult``, and its ``MODEL`` and ``GATES`` in ``declared``, which is all
the server loads of a model until one is trained or run; ``metrics`` and ``validation`` hold the
evaluation shared by all, ``gates`` what a version must show before it is activated.
Reporting follows TRIPOD+AI (Collins et al., BMJ 2024;385:e078378).
"""

from __future__ import annotations

from fhir_twin.errors import Unprocessable

# Upper bounds of the qualitative bands, named as the codes of the HL7 risk-probability code system
# (http://terminology.hl7.org/CodeSystem/risk-probability) so that mapping a band to a code is the identity.
Bands = tuple[tuple[float, str], ...]


class InsufficientData(Unprocessable):
    """Too few examples (or only one outcome class) to train or evaluate a model; says how many were found."""


def risk_band(probability: float, bands: Bands, top: str = "high") -> str:
    """The first band whose exclusive upper bound exceeds ``probability``; ``top`` above the last bound."""
    for bound, name in bands:
        if probability < bound:
            return name
    return top
