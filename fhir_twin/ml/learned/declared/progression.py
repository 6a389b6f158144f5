"""diabetes-progression as the catalog knows it without loading it (the model: ``learned.progression``)."""

from __future__ import annotations

from fhir_twin.ml import codes
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.learned.report import Feature
from fhir_twin.ml.scores.score import Input, ModelInfo

FEATURES = (
    Feature("age", None, "a", "age"),
    Feature("sex", None, "1", "sex as coded by the study (1 or 2)"),
    Feature("bmi", codes.BMI.token, "kg/m2", "body mass index"),
    Feature("bp", codes.MEAN_BP.token, "mm[Hg]", "average (mean arterial) blood pressure"),
    Feature("s1", codes.TOTAL_CHOLESTEROL.token, "mg/dL", "tc: total serum cholesterol"),
    Feature("s2", codes.LDL_CHOLESTEROL_CALCULATED.token, "mg/dL", "ldl: low-density lipoproteins"),
    Feature("s3", codes.HDL_CHOLESTEROL.token, "mg/dL", "hdl: high-density lipoproteins"),
    Feature("s4", codes.CHOLESTEROL_HDL_RATIO.token, "1", "tch: total cholesterol / HDL"),
    Feature("s5", codes.TRIGLYCERIDES.token, None, "ltg: log of serum triglycerides, the study's own scale"),
    Feature("s6", codes.GLUCOSE.token, "mg/dL", "glu: blood sugar level"),
)

MODEL = ModelInfo(
    id="diabetes-progression",
    version="1.0.0",
    kind="learned",
    inputs=tuple(Input(feature.name, feature.loinc) for feature in FEATURES),
    outcome="Quantitative measure of diabetes progression one year after baseline (Efron et al. 2004)",
    horizon="1 year",
    intended_use=(
        "Reproduction and demonstration of the linear against polynomial regression comparison, and a check of "
        "the evaluation code on real data. Not run on patients: the serum variables are the study's own."
    ),
    reference="Efron B, Hastie T, Johnstone I, Tibshirani R. Least angle regression. Ann Stat 2004;32(2):407-499.",
)

# What a version must show on its hold-out before it may be activated (``gates``).
GATES = (
    Gate(
        "hold-out skill over the mean predictor",
        ("holdout", "metrics", "skill"),
        "1 − MSE / MSE of predicting the training mean (Murphy, Mon Weather Rev 1988;116:2417): a regression "
        "must beat the mean",
        above=0.0,
    ),
)
