"""pima-diabetes as the catalog knows it without loading it (the model: ``learned.pima``)."""

from __future__ import annotations

from fhir_twin.ml import codes
from fhir_twin.ml.learned.gates import classifier_gates
from fhir_twin.ml.learned.report import Feature
from fhir_twin.ml.scores.score import Input, ModelInfo

FEATURES = (
    Feature("npreg", None, "1", "number of pregnancies"),
    Feature("glu", None, "mg/dL", "plasma glucose two hours into an oral glucose tolerance test"),
    Feature("bp", codes.DIASTOLIC_BP.token, "mm[Hg]", "diastolic blood pressure"),
    Feature("skin", None, "mm", "triceps skinfold thickness"),
    Feature("bmi", codes.BMI.token, "kg/m2", "body mass index"),
    Feature("ped", None, "1", "diabetes pedigree function, a score of the family history computed by the study"),
    Feature("age", None, "a", "age in years"),
)
POPULATION = (
    "Women at least 21 years old, of Pima Indian heritage, living near Phoenix, Arizona, tested for diabetes "
    "by WHO criteria (NIDDK; Smith et al. 1988)"
)

MODEL = ModelInfo(
    id="pima-diabetes",
    version="1.0.0",
    kind="learned",
    inputs=tuple(Input(feature.name, feature.loinc) for feature in FEATURES),
    outcome="Diabetes according to WHO criteria (MASS Pima data, type Yes)",
    horizon="as the study defines it: diabetes by WHO criteria",
    intended_use=(
        f"Intended population: {POPULATION}. A logistic regression fitted and evaluated on real published "
        "patient data, to show the evaluation on data that no generator made. It does NOT run on this server's "
        "patients: its population is one community, and its features (2-hour OGTT glucose, triceps skinfold, "
        "the study's pedigree function) are not what twins hold, so it is not transportable to them without "
        "validation in their population."
    ),
    reference=(
        "Smith JW, Everhart JE, Dickson WC, Knowler WC, Johannes RS. Using the ADAP learning algorithm to forecast "
        "the onset of diabetes mellitus. Proc Annu Symp Comput Appl Med Care 1988:261-265; training/test split of "
        "Ripley BD, Pattern Recognition and Neural Networks, 1996 (R package MASS: Pima.tr, Pima.te)."
    ),
)

GATES = classifier_gates("holdout")
