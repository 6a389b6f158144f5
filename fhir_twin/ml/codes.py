"""The clinical codes the Digital Doctor names, each once, with its display.

A model's inputs (``Input``), its model card, the learned models' feature tables and the synthetic
cohort's Observations all name the code from here. The mapping files (``mappings/*.yaml``) stay the
twin's source of which codes feed a field; ``fields.check`` stops the server at start-up when the two
disagree. Displays are the LOINC Long Common Names (LOINC 2.77, loinc.org) and SNOMED CT fully
specified names.
"""

from __future__ import annotations

from typing import NamedTuple

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


class Coding(NamedTuple):
    """One code of a code system, with its display."""

    system: str
    code: str
    display: str

    @property
    def token(self) -> str:
        """``system|code``: how the mapping files and a token search write a code."""
        return f"{self.system}|{self.code}"


def loinc(code: str, display: str) -> Coding:
    return Coding(LOINC, code, display)


# Vital signs and bedside observations
HEART_RATE = loinc("8867-4", "Heart rate")
RESPIRATORY_RATE = loinc("9279-1", "Respiratory rate")
SYSTOLIC_BP = loinc("8480-6", "Systolic blood pressure")
DIASTOLIC_BP = loinc("8462-4", "Diastolic blood pressure")
MEAN_BP = loinc("8478-0", "Mean blood pressure")
BLOOD_PRESSURE_PANEL = loinc("85354-9", "Blood pressure panel with all children optional")
BODY_TEMPERATURE = loinc("8310-5", "Body temperature")
SPO2 = loinc("2708-6", "Oxygen saturation in Arterial blood")
INHALED_OXYGEN_CONCENTRATION = loinc("3150-0", "Inhaled oxygen concentration")
INHALED_OXYGEN_FLOW = loinc("3151-8", "Inhaled oxygen flow rate")
RESPONSIVENESS = loinc("67775-7", "Level of responsiveness")
GCS_TOTAL = loinc("9269-2", "Glasgow coma score total")
BMI = loinc("39156-5", "Body mass index (BMI) [Ratio]")

# Laboratory
GLUCOSE = loinc("2339-0", "Glucose [Mass/volume] in Blood")
FASTING_GLUCOSE = loinc("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma")
HBA1C = loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood")
TOTAL_CHOLESTEROL = loinc("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma")
HDL_CHOLESTEROL = loinc("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma")
LDL_CHOLESTEROL = loinc("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay")
LDL_CHOLESTEROL_CALCULATED = loinc("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation")
CHOLESTEROL_HDL_RATIO = loinc("9830-1", "Cholesterol.total/Cholesterol in HDL [Mass Ratio] in Serum or Plasma")
TRIGLYCERIDES = loinc("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma")

# Social history
SMOKING_STATUS = loinc("72166-2", "Tobacco smoking status")

# What a RiskAssessment is about
ASCVD_10Y_RISK = loinc("79423-0", "Cardiovascular disease 10Y risk [Likelihood] ACC-AHA Pooled Cohort by Goff 2013")

# SNOMED CT findings a model reads as an input
PREDIABETES = Coding(SNOMED, "15777000", "Prediabetes (finding)")
