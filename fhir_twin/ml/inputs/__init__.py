"""Model inputs read from a patient's twin, with the exact source versions each came from.

Each function gathers one score's inputs through a ``reader.Reader``: only usable twin values, a
value the twin does not hold stays None (the score says what is missing, never a default), and
what the record shows about the score's applicability travels with its inputs. The Body fields
each score reads are declared beside its gatherer (``*_READS``, ``ml.fields``).
``observation_set`` reads the bedside scores' set of observations (NEWS2, qSOFA);
``cardiovascular`` the long-term picture of the cardiovascular equations.
"""

from fhir_twin.ml.inputs.cardiovascular import CARDIOVASCULAR_READS, atp3_inputs, pooled_cohort_inputs
from fhir_twin.ml.inputs.observation_set import NEWS2_READS, QSOFA_READS, news2_inputs, qsofa_inputs

__all__ = [
    "CARDIOVASCULAR_READS",
    "NEWS2_READS",
    "QSOFA_READS",
    "atp3_inputs",
    "news2_inputs",
    "pooled_cohort_inputs",
    "qsofa_inputs",
]
