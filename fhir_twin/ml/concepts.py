"""Clinical concepts the models read from the Digital Case: which Condition and Procedure codes mean
diabetes, clinical ASCVD, an infection, pregnancy or hypercapnic respiratory failure.

Codes are matched on ``system|code`` as the twin stores them; ICD-10 codes by category prefix (a
prefix names the category and all its subcategories). SNOMED CT is matched by the listed codes
only: this server holds no SNOMED CT release, so a descendant that is not listed is not found.
That is why each concept also lists phrases, matched in an entry's display or text; for the
exclusions (ASCVD, diabetes, pregnancy) a missed code means a model runs where it should not,
which docs/clinical-safety.md records as a residual risk.
"""

from __future__ import annotations

from dataclasses import dataclass

SNOMED = "http://snomed.info/sct"
ICD10 = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")


@dataclass(frozen=True)
class Concept:
    """A clinical concept: SNOMED CT codes, ICD-10 category prefixes, and phrases its text may use."""

    name: str
    snomed: frozenset[str]
    icd10: tuple[str, ...]
    phrases: tuple[str, ...] = ()

    def matches(self, code: str | None, display: str | None) -> bool:
        if code:
            system, _, value = code.partition("|")
            if system == SNOMED and value in self.snomed:
                return True
            if system in ICD10 and value.upper().startswith(self.icd10):
                return True
        text = (display or "").lower()
        return any(phrase in text for phrase in self.phrases)


# SNOMED CT 73211009 diabetes mellitus, 44054006 type 2, 46635009 type 1; ICD-10 E10-E14.
DIABETES = Concept(
    "diabetes",
    frozenset({"73211009", "44054006", "46635009"}),
    ("E10", "E11", "E13", "E14"),
    # Not "diabetes mellitus" alone: gestational diabetes is not diabetes in these equations.
    ("type 2 diabetes", "type 1 diabetes", "diabetes mellitus type"),
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
# Hypercapnic respiratory failure: ICD-10-CM J96.x2 (respiratory failure with hypercapnia), or a
# condition whose text says hypercapnic. On its own it does not switch NEWS2 to SpO2 Scale 2 (the
# RCP reserves Scale 2 for a prescribed target of 88-92 %); it prompts a note suggesting a review.
HYPERCAPNIC_RESPIRATORY_FAILURE = Concept(
    "hypercapnic respiratory failure",
    frozenset(),
    ("J96.02", "J96.12", "J96.22", "J96.92"),
    ("hypercapni",),
)

# Clinical ASCVD as the 2018 AHA/ACC cholesterol guideline defines it (Grundy SM et al.,
# Circulation 2019;139:e1082, section 2): acute coronary syndromes, a history of myocardial
# infarction, stable or unstable angina, coronary or other arterial revascularisation, stroke,
# TIA, or peripheral artery disease including aortic aneurysm, of atherosclerotic origin. Such a
# patient is in secondary prevention: the Pooled Cohort Equations and ATP III do not apply.
# SNOMED CT: 22298006 myocardial infarction, 57054005 acute MI, 401303003 acute STEMI,
# 401314000 acute NSTEMI, 399211009 history of MI, 394659003 acute coronary syndrome,
# 194828000 angina, 233819005 stable angina, 4557003 preinfarction syndrome (unstable angina),
# 414545008 ischaemic heart disease, 53741008 coronary arteriosclerosis, 230690007 stroke,
# 422504002 ischaemic stroke, 432504007 cerebral infarction, 266257000 TIA, 399957001
# peripheral arterial occlusive disease, 840580004 peripheral arterial disease, 67362008 aortic
# aneurysm; procedures 232717009 CABG, 414088005 emergency CABG, 415070008 PCI, 36969009
# coronary stent, 11101003 PTCA. ICD-10: I20-I25 ischaemic heart disease, I63 cerebral
# infarction, I64 stroke NOS, G45 (but G45.4 transient global amnesia) TIA, I69.3 sequelae of
# cerebral infarction, I70 atherosclerosis, I71 aortic aneurysm, I73.9 peripheral vascular
# disease; ICD-10-CM Z95.1 bypass graft, Z95.5 coronary implant, Z98.61 angioplasty status,
# Z86.73 history of TIA or cerebral infarction.
CLINICAL_ASCVD = Concept(
    "clinical ASCVD",
    frozenset(
        {
            "22298006",
            "57054005",
            "401303003",
            "401314000",
            "399211009",
            "394659003",
            "194828000",
            "233819005",
            "4557003",
            "414545008",
            "53741008",
            "230690007",
            "422504002",
            "432504007",
            "266257000",
            "399957001",
            "840580004",
            "67362008",
            "232717009",
            "414088005",
            "415070008",
            "36969009",
            "11101003",
        }
    ),
    (
        "I20",
        "I21",
        "I22",
        "I23",
        "I24",
        "I25",
        "I63",
        "I64",
        "G45.0",
        "G45.1",
        "G45.2",
        "G45.3",
        "G45.8",
        "G45.9",
        "I69.3",
        "I70",
        "I71",
        "I73.9",
        "Z95.1",
        "Z95.5",
        "Z98.61",
        "Z86.73",
    ),
    (
        "myocardial infarction",
        "acute coronary syndrome",
        "angina pectoris",
        "stable angina",
        "unstable angina",
        "ischemic heart disease",
        "ischaemic heart disease",
        "coronary artery disease",
        "coronary heart disease",
        "coronary arteriosclerosis",
        "cerebral infarction",
        "cerebrovascular accident",
        "ischemic stroke",
        "ischaemic stroke",
        "transient ischemic attack",
        "transient ischaemic attack",
        "peripheral arterial disease",
        "peripheral artery disease",
        "peripheral arterial occlusive",
        "aortic aneurysm",
        "coronary artery bypass",
        "percutaneous coronary intervention",
        "coronary angioplasty",
        "coronary stent",
    ),
)

# An infection, for qSOFA's "suspected infection" (Singer et al., JAMA 2016;315:801; Seymour et
# al., JAMA 2016;315:762 took antibiotics with body-fluid cultures as its sign). This server
# reads an active infection diagnosis, or an antibacterial order (``medicines.ANTIBACTERIAL``).
# SNOMED CT: 40733004 infectious disease, 91302008 sepsis, 10001005 bacterial sepsis, 76571007
# septic shock, 233604007 pneumonia, 53084003 bacterial pneumonia, 312342009 infective
# pneumonia, 6142004 influenza, 840539006 COVID-19, 840544004 suspected COVID-19, 68566005
# urinary tract infection, 301011002 E. coli urinary tract infection, 45816000 pyelonephritis,
# 38822007 cystitis, 128045006 cellulitis, 44132006 abscess, 7180009 meningitis, 56819008
# endocarditis, 60168000 osteomyelitis, 195662009 acute viral pharyngitis, 43878008
# streptococcal sore throat, 10509002 acute bronchitis, 444814009 viral sinusitis, 36971009
# sinusitis, 75498004 acute bacterial sinusitis, 65363002 otitis media. ICD-10: A00-B99 certain
# infectious and parasitic diseases, G00-G07 CNS infections, I33 acute endocarditis, J00-J06
# acute upper respiratory infections, J09-J18 influenza and pneumonia, J20-J22 acute lower
# respiratory infections, J85-J86 lung abscess and empyema, K65 peritonitis, L00-L08 skin
# infections, M00 pyogenic arthritis, M86 osteomyelitis, N10 acute pyelonephritis, N30.0 acute
# cystitis, N39.0 urinary tract infection, U07.1 COVID-19.
INFECTION = Concept(
    "infection",
    frozenset(
        {
            "40733004",
            "91302008",
            "10001005",
            "76571007",
            "233604007",
            "53084003",
            "312342009",
            "6142004",
            "840539006",
            "840544004",
            "68566005",
            "301011002",
            "45816000",
            "38822007",
            "128045006",
            "44132006",
            "7180009",
            "56819008",
            "60168000",
            "195662009",
            "43878008",
            "10509002",
            "444814009",
            "36971009",
            "75498004",
            "65363002",
        }
    ),
    (
        "A",
        "B",
        "G00",
        "G01",
        "G02",
        "G03",
        "G04",
        "G05",
        "G06",
        "G07",
        "I33",
        "J00",
        "J01",
        "J02",
        "J03",
        "J04",
        "J05",
        "J06",
        "J09",
        "J10",
        "J11",
        "J12",
        "J13",
        "J14",
        "J15",
        "J16",
        "J17",
        "J18",
        "J20",
        "J21",
        "J22",
        "J85",
        "J86",
        "K65",
        "L00",
        "L01",
        "L02",
        "L03",
        "L04",
        "L05",
        "L08",
        "M00",
        "M86",
        "N10",
        "N30.0",
        "N39.0",
        "U07.1",
    ),
    (
        "infection",
        "infectious",
        "sepsis",
        "septic",
        "pneumonia",
        "cellulitis",
        "abscess",
        "pyelonephritis",
        "meningitis",
        "endocarditis",
        "osteomyelitis",
    ),
)

# Pregnancy: NEWS2 is not validated in pregnancy (RCP 2017, "Using NEWS2": an obstetric early
# warning score is used instead). SNOMED CT 77386006 pregnancy, 72892002 normal pregnancy,
# 47200007 high-risk pregnancy; ICD-10 chapter XV (O00-O9A pregnancy, childbirth and the
# puerperium), Z33 pregnant state, Z34 supervision of normal pregnancy, Z3A weeks of gestation.
PREGNANCY = Concept(
    "pregnancy",
    frozenset({"77386006", "72892002", "47200007"}),
    ("O", "Z33", "Z34", "Z3A"),
    ("pregnan",),
)
