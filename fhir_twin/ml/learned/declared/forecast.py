"""hr-forecast as the catalog knows it without loading it (the model: ``learned.forecast``)."""

from __future__ import annotations

from fhir_twin.ml import fields
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.scores.score import ModelInfo

MODEL = ModelInfo(
    id="hr-forecast",
    version="1.0.0",
    kind="learned",
    inputs=(fields.HEART_RATE.input(),),
    outcome="Heart rate above 100/min at the next reading",
    horizon="the next reading: one median interval between the patient's readings, at most 24 hours",
    intended_use=(
        "Adults with a regular series of heart-rate readings (bedside or wearable monitoring, readings at most "
        "24 hours apart), to show the expected next value, its 90 % interval and the chance of tachycardia. "
        "Decision support only: it does not diagnose, and an alarm must not depend on it."
    ),
    reference=(
        "Autoregressive forecasting with rolling-origin evaluation against persistence: Hyndman RJ, "
        "Athanasopoulos G. Forecasting: Principles and Practice, 3rd ed., OTexts 2021, ch. 5 and 9; "
        "Tashman LJ. Int J Forecast 2000;16:437-450."
    ),
)

# The Body fields it reads on a patient, and those a ``$whatif`` may change: none, the forecast is of
# the patient's own series, which a hypothetical reading does not change.
READS = (fields.HEART_RATE,)
WHATIF: tuple[str, ...] = ()

# What a version must show on held-out patients before it may serve patients (``gates``).
GATES = (
    Gate(
        "hold-out skill over persistence",
        ("holdout", "metrics", "skill"),
        "1 − MSE / MSE of repeating the last value (Murphy, Mon Weather Rev 1988;116:2417): a forecast that "
        "is worse than the last reading must not be shown; 0 is persistence itself, which training may choose",
        low=0.0,
    ),
    Gate(
        "hold-out 90 % interval coverage",
        ("holdout", "interval_coverage"),
        "Share of held-out readings inside the 90 % interval; 0.80 to 0.98 is this server's choice: below, the "
        "interval misleads; above, it is too wide to inform (a few held-out patients measure it to about ±0.05)",
        low=0.80,
        high=0.98,
    ),
)
