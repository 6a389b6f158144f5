"""Internal, hold-out and external validation of scikit-learn pipelines, and per-patient inference latency.

Every fit starts from a fresh pipeline made by ``pipeline_factory`` with all preprocessing inside it, so no
fold sees statistics of its test rows (scikit-learn user guide, "Common pitfalls: data leakage").
Splits are seeded. Cross-validated metrics are reported per fold, as mean ± SD and as a t interval over
folds (``metrics.summary``); single evaluations (hold-out, external) get percentile bootstrap intervals.
Time series are not validated here: ``forecast`` evaluates by rolling origin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from fhir_twin.ml.learned import metrics

T = TypeVar("T")

# Metrics summarised over folds (mean, SD, t interval).
CLASSIFICATION = (
    "auroc",
    "brier",
    "scaled_brier",
    "log_loss",
    "calibration_slope",
    "calibration_intercept",
    "accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "prevalence",
)
REGRESSION = ("mse", "rmse", "mae", "r2", "skill")


Factory = Callable[[], Any]


def _fit(pipeline_factory: Factory, X: pd.DataFrame, y: pd.Series) -> tuple[Any, float]:
    model = pipeline_factory()
    started = time.perf_counter()
    model.fit(X, y)
    return model, time.perf_counter() - started


def _folds(per_fold: list[dict[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {name: metrics.summary([fold.get(name) for fold in per_fold]) for name in names}


def cross_validate_classifier(
    pipeline_factory: Factory, X: pd.DataFrame, y: pd.Series, folds: int = 5, seed: int = 0, threshold: float = 0.5
) -> dict[str, Any]:
    """Stratified k-fold cross-validation (shuffled, seeded): metrics per fold, their mean, SD and 95 % CI,
    the mean fit time, and the out-of-fold predictions pooled into one reliability diagram."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold = []
    fit_seconds = []
    pooled = np.zeros(len(y))
    target = np.asarray(y, dtype=int)
    for train, test in splitter.split(X, target):
        model, seconds = _fit(pipeline_factory, X.iloc[train], y.iloc[train])
        prob = model.predict_proba(X.iloc[test])[:, 1]
        pooled[test] = prob
        per_fold.append(metrics.classification_metrics(target[test], prob, threshold))
        fit_seconds.append(seconds)
    return {
        "method": f"stratified {folds}-fold cross-validation, shuffled with seed {seed}",
        "ci_method": "mean ± t(0.975, k−1)·SD/√k over folds",
        "folds": folds,
        "n": len(target),
        "metrics": _folds(per_fold, CLASSIFICATION),
        "per_fold": per_fold,
        "out_of_fold": metrics.classification_metrics(target, pooled, threshold),
        "reliability": metrics.reliability(target, pooled),
        "fit_seconds": float(np.mean(fit_seconds)),
    }


def _classifier_evaluation(model: Any, X: pd.DataFrame, y: pd.Series, threshold: float, seed: int) -> dict[str, Any]:
    target = np.asarray(y, dtype=int)
    prob = model.predict_proba(X)[:, 1]
    auroc_ci = metrics.bootstrap_ci(metrics.auroc, target, prob, seed=seed)
    brier_ci = metrics.bootstrap_ci(metrics.brier, target, prob, seed=seed)
    return {
        "n": len(target),
        "metrics": metrics.classification_metrics(target, prob, threshold),
        "ci": {"auroc": auroc_ci and list(auroc_ci), "brier": brier_ci and list(brier_ci)},
        "ci_method": "percentile bootstrap, 200 resamples, seeded",
        "reliability": metrics.reliability(target, prob),
    }


def holdout_classifier(
    pipeline_factory: Factory,
    X: pd.DataFrame,
    y: pd.Series,
    test_size: float = 0.2,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """One stratified split (80/20 by default, seeded), fitted on the larger part and evaluated once."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=np.asarray(y, dtype=int), random_state=seed
    )
    model, seconds = _fit(pipeline_factory, X_train, y_train)
    found = _classifier_evaluation(model, X_test, y_test, threshold, seed)
    return {
        "method": f"stratified {round((1 - test_size) * 100)}/{round(test_size * 100)} split with seed {seed}, "
        "evaluated once",
        "n_train": len(y_train),
        "n_test": len(y_test),
        "fit_seconds": seconds,
        **found,
    }


def predefined_holdout_classifier(
    pipeline_factory: Factory,
    train: tuple[pd.DataFrame, pd.Series],
    test: tuple[pd.DataFrame, pd.Series],
    method: str,
    threshold: float = 0.5,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """A split the data came with (e.g. MASS ``Pima.tr``/``Pima.te``): fitted on ``train``, evaluated once on
    ``test``; the fitted model, and the evaluation in ``holdout_classifier``'s shape."""
    model, seconds = _fit(pipeline_factory, *train)
    found = _classifier_evaluation(model, *test, threshold, seed)
    return model, {"method": method, "n_train": len(train[1]), "n_test": len(test[1]), "fit_seconds": seconds, **found}


def external_classifier(
    fitted: Any, X_ext: pd.DataFrame, y_ext: pd.Series, threshold: float = 0.5, seed: int = 0
) -> dict[str, Any]:
    """A fitted classifier evaluated as it is (no refitting, no recalibration) on another dataset."""
    return {"method": "fitted model applied unchanged", **_classifier_evaluation(fitted, X_ext, y_ext, threshold, seed)}


def cross_validate_regressor(
    pipeline_factory: Factory, X: pd.DataFrame, y: pd.Series, folds: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Shuffled k-fold cross-validation (seeded) for cross-sectional data, with the training folds' mean
    as the baseline of the skill score. Not for time series: see ``forecast`` (rolling origin)."""
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold = []
    fit_seconds = []
    target = np.asarray(y, dtype=float)
    for train, test in splitter.split(X):
        model, seconds = _fit(pipeline_factory, X.iloc[train], y.iloc[train])
        baseline = np.full(test.size, target[train].mean())
        per_fold.append(metrics.regression_metrics(target[test], model.predict(X.iloc[test]), baseline))
        fit_seconds.append(seconds)
    return {
        "method": f"{folds}-fold cross-validation, shuffled with seed {seed}",
        "ci_method": "mean ± t(0.975, k−1)·SD/√k over folds",
        "folds": folds,
        "n": len(target),
        "metrics": _folds(per_fold, REGRESSION),
        "per_fold": per_fold,
        "fit_seconds": float(np.mean(fit_seconds)),
    }


def holdout_regressor(
    pipeline_factory: Factory, X: pd.DataFrame, y: pd.Series, test_size: float = 0.2, seed: int = 42
) -> dict[str, Any]:
    """One seeded split, evaluated once, against the mean of the training targets as baseline."""
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)
    model, seconds = _fit(pipeline_factory, X_train, y_train)
    target = np.asarray(y_test, dtype=float)
    prediction = model.predict(X_test)
    baseline = np.full(target.size, float(np.mean(y_train)))
    mse_ci = metrics.bootstrap_ci(lambda t, p: float(np.mean((t - p) ** 2)), target, prediction, seed=seed)
    return {
        "method": f"{round((1 - test_size) * 100)}/{round(test_size * 100)} split with seed {seed}, evaluated once",
        "n_train": len(y_train),
        "n_test": len(y_test),
        "fit_seconds": seconds,
        "metrics": metrics.regression_metrics(target, prediction, baseline),
        "ci": {"mse": mse_ci and list(mse_ci)},
        "ci_method": "percentile bootstrap, 200 resamples, seeded",
        "baseline": "mean of the training targets",
    }


def inference_latency(predict_one: Callable[[T], object], rows: Sequence[T]) -> dict[str, float | int | None]:
    """Wall-clock time of ``predict_one`` per row, as p50 and p95 in milliseconds (one warm-up call first)."""
    if not rows:
        return {"n": 0, "p50_ms": None, "p95_ms": None}
    predict_one(rows[0])
    times = []
    for row in rows:
        started = time.perf_counter()
        predict_one(row)
        times.append((time.perf_counter() - started) * 1000.0)
    p50, p95 = np.percentile(times, [50, 95])
    return {"n": len(rows), "p50_ms": float(p50), "p95_ms": float(p95)}
