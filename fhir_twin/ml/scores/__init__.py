"""Validated, explainable clinical scores: one module per score, each with a ``MODEL`` and one function.

Every score takes a typed inputs dataclass of plain values (no FHIR, no I/O) and returns a
``Score``; a missing required input gives no value and names what is missing, never a default
(a score computed on a silently defaulted systolic BP of 120 is a known failure of risk apps).
"""

from fhir_twin.ml.scores.score import Contribution, Input, ModelInfo, Score

__all__ = ["Contribution", "Input", "ModelInfo", "Score"]
