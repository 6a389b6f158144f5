"""Clinical concepts the models read from the Digital Case: which codes mean diabetes, hypertension,
hypercapnic respiratory failure, and which medicines lower blood pressure.

Codes are matched on ``system|code`` as the twin stores them; ICD-10 codes by category prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

SNOMED = "http://snomed.info/sct"
ICD10 = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True)
class Concept:
    """A condition concept: SNOMED CT codes, ICD-10 category prefixes, and words its text may use."""

    name: str
    snomed: frozenset[str]
    icd10: tuple[str, ...]
    words: tuple[str, ...] = ()

    def matches(self, code: str | None, display: str | None) -> bool:
        if code:
            system, _, value = code.partition("|")
            if system == SNOMED and value in self.snomed:
                return True
            if system in ICD10 and value.upper().startswith(self.icd10):
                return True
        text = (display or "").lower()
        return bool(self.words) and any(word in text for word in self.words)


# SNOMED CT 73211009 diabetes mellitus, 44054006 type 2, 46635009 type 1; ICD-10 E10-E14.
DIABETES = Concept(
    "diabetes",
    frozenset({"73211009", "44054006", "46635009"}),
    ("E10", "E11", "E13", "E14"),
)
# The outcome of incident-diabetes: SNOMED CT 44054006 type 2, 73211009 diabetes mellitus
# (unspecified); ICD-10 E11 type 2, E14 unspecified.
TYPE_2_DIABETES = Concept("type 2 diabetes", frozenset({"44054006", "73211009"}), ("E11", "E14"))
# SNOMED CT 15777000 prediabetes; ICD-10-CM R73.03.
PREDIABETES = Concept("prediabetes", frozenset({"15777000"}), ("R73.03",))
# SNOMED CT 38341003 hypertensive disorder, 59621000 essential hypertension; ICD-10 I10-I15.
HYPERTENSION = Concept(
    "hypertension",
    frozenset({"38341003", "59621000"}),
    ("I10", "I11", "I12", "I13", "I15"),
)
# NEWS2 SpO2 Scale 2 is for "hypercapnic respiratory failure" (RCP 2017, Chart 1): ICD-10-CM J96.x2
# (respiratory failure with hypercapnia), or a condition whose text says hypercapnic.
HYPERCAPNIC_RESPIRATORY_FAILURE = Concept(
    "hypercapnic respiratory failure",
    frozenset(),
    ("J96.02", "J96.12", "J96.22", "J96.92"),
    ("hypercapni",),
)

# Ingredients of the antihypertensive classes of the 2017 ACC/AHA guideline (Whelton et al.,
# Hypertension 2018;71:e13, Table 18): thiazides, ACE inhibitors, ARBs, calcium-channel blockers,
# beta blockers. RxNorm clinical-drug names start with the ingredient, so a name is matched by it.
ANTIHYPERTENSIVE_INGREDIENTS = (
    "hydrochlorothiazide",
    "chlorthalidone",
    "indapamide",
    "lisinopril",
    "enalapril",
    "ramipril",
    "benazepril",
    "captopril",
    "perindopril",
    "quinapril",
    "losartan",
    "valsartan",
    "irbesartan",
    "candesartan",
    "olmesartan",
    "telmisartan",
    "amlodipine",
    "nifedipine",
    "felodipine",
    "diltiazem",
    "verapamil",
    "metoprolol",
    "atenolol",
    "bisoprolol",
    "carvedilol",
    "nebivolol",
)


def is_antihypertensive(display: str | None, reasons: list[str]) -> bool:
    """A medicine lowers blood pressure: its name holds an antihypertensive ingredient, or it was
    prescribed for hypertension."""
    text = (display or "").lower()
    if any(ingredient in text for ingredient in ANTIHYPERTENSIVE_INGREDIENTS):
        return True
    return any(HYPERTENSION.matches(reason, reason) for reason in reasons)
