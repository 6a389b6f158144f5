"""incident-diabetes as the catalog knows it without loading it (the model: ``learned.incidence``)."""

from __future__ import annotations

from fhir_twin.ml import codes, fields
from fhir_twin.ml.learned.gates import classifier_gates
from fhir_twin.ml.scores.score import Input, ModelInfo

# The measured features, each a Body field's latest value; smoking status gives ``current_smoker``.
MEASURED_FIELDS = (fields.BMI, fields.SYSTOLIC_BP, fields.GLUCOSE, fields.HBA1C, fields.HDL_CHOLESTEROL)

MODEL = ModelInfo(
    id="incident-diabetes",
    version="1.0.0",
    kind="learned",
    inputs=(
        Input("age"),
        Input("sex"),
        *(measured.input() for measured in MEASURED_FIELDS),
        fields.SMOKING_STATUS.input(),
        Input("prediabetes", codes.PREDIABETES.token),
    ),
    outcome="Diagnosis of type 2 diabetes (SNOMED CT 44054006 or 73211009; ICD-10 E11 or E14) within 5 years",
    horizon="5 years",
    intended_use=(
        "Adults (18 and over) without diabetes, to flag who may benefit from diabetes screening. Decision "
        "support only. Trained on this server's own data and not validated clinically; results on synthetic "
        "data are not clinical performance."
    ),
    reference=(
        "Logistic regression with internal, hold-out and external validation reported per TRIPOD+AI (Collins GS "
        "et al., BMJ 2024;385:e078378); features as in FINDRISC (Lindström J, Tuomilehto J, Diabetes Care "
        "2003;26:725-731)."
    ),
)

# Every Body field the model reads on a patient: the measured features, fasting glucose (diabetes by
# the ADA criteria) and smoking status.
READS = (
    fields.BMI,
    fields.SYSTOLIC_BP,
    fields.GLUCOSE,
    fields.FASTING_GLUCOSE,
    fields.HBA1C,
    fields.HDL_CHOLESTEROL,
    fields.SMOKING_STATUS,
)
# The Body fields a ``$whatif`` may change for it: every one it reads.
WHATIF = fields.names(READS)

# What a version must show on its hold-out before it may serve patients (``gates``).
GATES = classifier_gates("holdout")
