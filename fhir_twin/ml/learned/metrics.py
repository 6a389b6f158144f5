"""Evaluation metrics for the learned models, as plain floats (or None where a metric is undefined).

Regression: MSE, RMSE, MAE, R² and the skill score 1 − MSE_model / MSE_baseline (Murphy, Mon Weather
Rev 1988;116:2417), the baseline being the mean predictor or persistence. Classification: AUROC,
Brier score and scaled Brier (Steyerberg et al., Epidemiology 2010;21:128), log-loss, and logistic
calibration (Cox, Biometrika 1958;45:562; Van Calster et al., BMC Med 2019;17:230, "Calibration: the
Achilles heel of predictive analytics"), plus threshold metrics at the deployed threshold.
Computed with numpy (and scikit-learn's ``roc_auc_score``) so undefined cases give None with a
reason instead of a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

# Predicted probabilities are clipped to [EPS, 1 − EPS] before taking logs (log-loss, logit).
EPS = 1e-6

# Two-sided 95 % quantiles of Student's t, t(0.975, df), for df 1..30 (any statistics table);
# above 30 degrees of freedom the normal 1.96 is used.
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

Metrics = dict[str, Any]


def _float(value: float) -> float | None:
    """A plain float, or None for NaN and infinities (reports must be strict JSON)."""
    value = float(value)
    return value if math.isfinite(value) else None


def regression_metrics(y: ArrayLike, pred: ArrayLike, baseline_pred: ArrayLike | None = None) -> Metrics:
    """MSE, RMSE, MAE, R² (None when y is constant) and, given a baseline, skill = 1 − MSE / MSE_baseline."""
    truth = np.asarray(y, dtype=float)
    guess = np.asarray(pred, dtype=float)
    if truth.shape != guess.shape or truth.size == 0:
        raise ValueError(f"need equally long, non-empty y and pred, got {truth.size} and {guess.size}")
    errors = truth - guess
    mse = float(np.mean(errors**2))
    variance = float(np.mean((truth - truth.mean()) ** 2))
    found: Metrics = {
        "n": int(truth.size),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(errors))),
        "r2": 1.0 - mse / variance if variance > 0 else None,
    }
    if baseline_pred is not None:
        base = np.asarray(baseline_pred, dtype=float)
        base_mse = float(np.mean((truth - base) ** 2))
        found["baseline_mse"] = base_mse
        found["skill"] = 1.0 - mse / base_mse if base_mse > 0 else None
    return found


def _logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray, slope: bool) -> np.ndarray | None:
    """Maximum-likelihood logistic regression of y on [1, x] (or on 1 with ``offset``) by Newton-Raphson
    (IRLS); None when it does not converge in 100 steps. Two parameters at most, so no library is needed."""
    design = np.column_stack([np.ones_like(x), x]) if slope else np.ones((x.size, 1))
    beta = np.zeros(design.shape[1])
    for _ in range(100):
        eta = design @ beta + offset
        p = 1.0 / (1.0 + np.exp(-eta))
        weights = p * (1.0 - p)
        hessian = design.T @ (design * weights[:, None])
        gradient = design.T @ (y - p)
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            return beta
    return None


def calibration(y: ArrayLike, prob: ArrayLike) -> tuple[float | None, float | None]:
    """(slope, intercept) of logistic recalibration on the logit of ``prob`` (Van Calster et al. 2019).

    Slope: β in logit P(y) = α + β·logit(p); 1 is ideal, < 1 means predictions too extreme (overfitting).
    Intercept, "calibration-in-the-large": α in logit P(y) = α + logit(p), the slope fixed at 1 by an
    offset; 0 is ideal, < 0 means risks overestimated on average. Fitted by a small IRLS in numpy
    (no statsmodels; scikit-learn's LogisticRegression takes no offset). None when undefined: one class,
    or outcomes perfectly separated by the prediction (the slope is then infinite).
    """
    truth = np.asarray(y, dtype=float)
    logit = _logit(np.asarray(prob, dtype=float))
    if truth.size == 0 or truth.min() == truth.max():
        return None, None
    separated = logit[truth == 0].max() < logit[truth == 1].min()
    fitted_slope = None if separated else _logistic_fit(logit, truth, np.zeros_like(logit), slope=True)
    fitted_intercept = _logistic_fit(logit, truth, logit, slope=False)
    return (
        None if fitted_slope is None else _float(fitted_slope[1]),
        None if fitted_intercept is None else _float(fitted_intercept[0]),
    )


def _logit(prob: np.ndarray) -> np.ndarray:
    clipped = np.clip(prob, EPS, 1.0 - EPS)
    return np.log(clipped / (1.0 - clipped))


def classification_metrics(y: ArrayLike, prob: ArrayLike, threshold: float = 0.5) -> Metrics:
    """Discrimination, overall accuracy, calibration and threshold metrics of predicted probabilities.

    With one outcome class AUROC, scaled Brier and calibration are undefined: they are None and
    ``note`` says why. Sensitivity (PPV) is None without positives (predicted positives).
    """
    truth = np.asarray(y, dtype=int)
    p = np.asarray(prob, dtype=float)
    if truth.shape != p.shape or truth.size == 0:
        raise ValueError(f"need equally long, non-empty y and prob, got {truth.size} and {p.size}")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("probabilities must lie in 0..1")
    prevalence = float(truth.mean())
    brier = float(np.mean((p - truth) ** 2))
    clipped = np.clip(p, EPS, 1.0 - EPS)
    log_loss = float(-np.mean(truth * np.log(clipped) + (1 - truth) * np.log(1.0 - clipped)))
    both = 0.0 < prevalence < 1.0
    slope, intercept = calibration(truth, p)
    called = p >= threshold
    tp = int(np.sum(called & (truth == 1)))
    fp = int(np.sum(called & (truth == 0)))
    tn = int(np.sum(~called & (truth == 0)))
    fn = int(np.sum(~called & (truth == 1)))
    found: Metrics = {
        "n": int(truth.size),
        "prevalence": prevalence,
        "auroc": _float(roc_auc_score(truth, p)) if both else None,
        "brier": brier,
        # 1 − Brier / Brier of predicting the prevalence to everyone (Steyerberg et al. 2010)
        "scaled_brier": 1.0 - brier / (prevalence * (1.0 - prevalence)) if both else None,
        "log_loss": log_loss,
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "threshold": float(threshold),
        "accuracy": (tp + tn) / truth.size,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "ppv": tp / (tp + fp) if tp + fp else None,
    }
    if not both:
        found["note"] = "only one outcome class present: AUROC, scaled Brier and calibration are undefined"
    return found


def reliability(y: ArrayLike, prob: ArrayLike, bins: int = 10) -> list[dict[str, float | int]]:
    """Reliability diagram in quantile bins (as ``sklearn.calibration.calibration_curve(strategy="quantile")``):
    per bin of equal size, ordered by prediction, the mean predicted risk and the observed event rate."""
    truth = np.asarray(y, dtype=float)
    p = np.asarray(prob, dtype=float)
    order = np.argsort(p, kind="stable")
    rows = []
    for chunk in np.array_split(order, min(bins, p.size)):
        if chunk.size:
            rows.append(
                {"n": int(chunk.size), "predicted": float(p[chunk].mean()), "observed": float(truth[chunk].mean())}
            )
    return rows


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float | None],
    y: ArrayLike,
    pred: ArrayLike,
    resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``metric(y, pred)`` (Efron & Tibshirani 1993, ch. 13): ``resamples``
    resamples of the rows with replacement from a fixed seed; resamples where the metric is undefined
    (None, e.g. AUROC on one class) are skipped. None when fewer than half the resamples are usable."""
    truth = np.asarray(y)
    guess = np.asarray(pred)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        rows = rng.integers(0, truth.size, truth.size)
        value = metric(truth[rows], guess[rows])
        if value is not None and math.isfinite(value):
            values.append(value)
    if len(values) < resamples / 2:
        return None
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def auroc(y: np.ndarray, prob: np.ndarray) -> float | None:
    """AUROC, or None with one class (for ``bootstrap_ci``)."""
    return _float(roc_auc_score(y, prob)) if 0 < np.mean(y) < 1 else None


def brier(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean squared difference between the predicted probability and the 0/1 outcome (Brier 1950)."""
    return float(np.mean((np.asarray(prob, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, SD (n − 1) and 95 % confidence interval of per-fold values: mean ± t(0.975, k − 1)·SD/√k.

    The t interval over folds is approximate (folds share training rows, so it is somewhat narrow;
    Bengio & Grandvalet, JMLR 2004;5:1089); undefined folds (None) are left out and counted in ``k``.
    """
    usable = [float(v) for v in values if v is not None and math.isfinite(v)]
    k = len(usable)
    if k == 0:
        return {"k": 0, "mean": None, "sd": None, "ci_low": None, "ci_high": None}
    mean = float(np.mean(usable))
    if k == 1:
        return {"k": 1, "mean": mean, "sd": None, "ci_low": None, "ci_high": None}
    sd = float(np.std(usable, ddof=1))
    half = (T975[k - 2] if k - 1 <= len(T975) else 1.96) * sd / math.sqrt(k)
    return {"k": k, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}
