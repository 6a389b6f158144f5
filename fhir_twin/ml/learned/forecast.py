"""hr-forecast: the next heart-rate reading of one patient, from that patient's own recent readings.

An autoregressive regression (Box & Jenkins, Time Series Analysis, 1970; Hyndman & Athanasopoulos,
Forecasting: Principles and Practice, 3rd ed., 2021, ch. 9): the target reading is regressed on the
previous ``lags`` readings, the time of day of the target (sin/cos of the 24-hour cycle, once the
readings cover half a day) and the hours since the previous reading, by ``LinearRegression`` or by
``PolynomialFeatures(2)`` + ``LinearRegression`` in one scikit-learn ``Pipeline``. A heart rate is never
regressed on time alone: a trend in time extrapolates without bound (the tests show its negative R²).

Evaluation is by rolling origin (Tashman, Int J Forecast 2000;16:437): at each origin the model is fitted
only on readings before it and forecasts one step ahead; never shuffled. The baseline is persistence
(the last value), and skill = 1 − MSE_model / MSE_persistence. Training picks the candidate with the
lowest pooled MSE among linear, polynomial and persistence itself, so a model that does not beat the
last value is never shipped (on short series persistence usually wins).

The model is fitted per patient at prediction time, on that patient's last ``window`` readings. What
``train`` learns from a dataset is the configuration the evaluation chose (candidate, lags, history) and
the pooled distribution of its one-step-ahead errors, used for intervals when a patient's own errors
are too few.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import PolynomialFeatures

from fhir_twin.ml import codes, fields
from fhir_twin.ml.assessment import Kind
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.fields import BodyField
from fhir_twin.ml.learned import Bands, InsufficientData, metrics, risk_band
from fhir_twin.ml.learned.declared.forecast import GATES, MODEL, READS, WHATIF
from fhir_twin.ml.learned.heart_rate_series import (
    LAGS,
    MIN_HISTORY,
    WINDOW,
    Fit,
    RollingOrigin,
    Series,
    clean,
    fit,
    hour_of_day,
    median_gap,
    rolling_origin,
    utc,
)
from fhir_twin.ml.learned.report import Feature, TrainResult, build, data_section, efficiency, model_card
from fhir_twin.ml.learned.validation import inference_latency
from fhir_twin.ml.reader import Gathered, Reader
from fhir_twin.ml.runners import Patient, Run, completed
from fhir_twin.ml.scores.score import Contribution, Forecast, ModelInfo, Score
from fhir_twin.ml.simulation import Simulation

MAX_INTERVAL = timedelta(hours=24)  # longer median intervals are not a "regular series"
STALE_AFTER = timedelta(hours=24)  # as mappings/vital-signs.yaml heart_rate stale_after
MAX_ORIGINS = 200  # rolling origins evaluated per patient in training, evenly spread over the series
OWN_ORIGINS = 50  # the patient's latest origins evaluated at prediction time
MIN_OWN_RESIDUALS = 20  # fewer own one-step errors than this: use the pooled ones from training
TACHYCARDIA = 100.0  # /min, adult tachycardia
LEVEL = 0.9
QUANTILE_LEVELS = tuple(round(0.01 * i, 2) for i in range(1, 100))
CANDIDATES = {0: "persistence (last value)", 1: "linear", 2: "polynomial (degree 2)"}
# P(next HR > 100/min): below 0.01 negligible, below 0.1 low, below 0.5 moderate, else high (our choice).
BANDS: Bands = ((0.01, "negligible"), (0.1, "low"), (0.5, "moderate"))

FEATURES = (
    *(
        Feature(f"heart_rate_lag{k}", codes.HEART_RATE.token, "/min", f"heart rate {k} reading(s) before")
        for k in (1, 2, 3)
    ),
    Feature("hour_sin", None, "1", "sin(2π·h/24), h = hour (UTC) of the forecast reading; with ≥ 12 h of readings"),
    Feature("hour_cos", None, "1", "cos(2π·h/24), h = hour (UTC) of the forecast reading; with ≥ 12 h of readings"),
    Feature("hours_since_previous", None, "h", "hours between the previous and the forecast reading"),
)
NAMES = tuple(feature.name for feature in FEATURES)

Point = tuple[datetime, float, str]


@dataclass(frozen=True)
class ForecastConfig:
    """The trained artifact: the candidate the rolling-origin evaluation chose (``degree`` 0 persistence,
    1 linear, 2 polynomial) and its pooled one-step errors (observed − forecast, /min) at ``QUANTILE_LEVELS``."""

    degree: int
    residual_quantiles: tuple[float, ...]
    lags: int = LAGS
    min_history: int = MIN_HISTORY
    window: int = WINDOW
    code_version: str = field(default=MODEL.version)  # of the code that trained it; the registry numbers versions


def _spread(count: int, cap: int) -> np.ndarray:
    """``count`` origins from MIN_HISTORY on, thinned evenly to at most ``cap``."""
    return np.unique(np.linspace(MIN_HISTORY, MIN_HISTORY + count - 1, min(count, cap)).round().astype(int))


def _patients(dataset: Dataset) -> dict[str, Series]:
    """Patients whose heart rate is a regular series long enough to forecast."""
    frame = dataset.measurements
    heart_rates = (frame["field"] == fields.HEART_RATE.name) & frame["value"].notna()
    rates = frame[heart_rates].sort_values(["patient_id", "time"])
    found = {}
    for patient_id, group in rates.groupby("patient_id", sort=True):
        times, values, _ = clean(list(zip(group["time"].tolist(), group["value"].tolist(), strict=True)))
        if len(times) >= MIN_HISTORY and median_gap(times) <= MAX_INTERVAL:
            found[str(patient_id)] = Series.of(times, values)
    return found


def _pooled(results: Sequence[RollingOrigin]) -> dict[str, Any]:
    """Each candidate's metrics over every origin of every patient, with persistence as the skill baseline."""
    observed = np.concatenate([r.observed for r in results])
    persistence = np.concatenate([r.persistence for r in results])
    return {
        CANDIDATES[degree]: metrics.regression_metrics(
            observed, np.concatenate([r.forecasts[degree] for r in results]), persistence
        )
        for degree in CANDIDATES
    }


def _chosen(candidates: dict[str, Any]) -> int:
    """The candidate with the lowest pooled rolling-origin MSE, the simpler one on a tie: persistence is a
    candidate too, so a model that cannot beat the last value is not shipped."""
    return min(CANDIDATES, key=lambda degree: (candidates[CANDIDATES[degree]]["mse"], degree))


def _residuals(results: Sequence[RollingOrigin], degree: int) -> np.ndarray:
    return np.concatenate([r.observed - r.forecasts[degree] for r in results])


def _quantiles(residuals: np.ndarray) -> tuple[float, ...]:
    return tuple(float(q) for q in np.quantile(residuals, QUANTILE_LEVELS))


def _bounds(residuals: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(residuals, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def train(dataset: Dataset, seed: int = 0) -> TrainResult:
    """Choose among persistence, linear and polynomial by pooled rolling-origin MSE over every patient with a
    regular series (skill against persistence reported for each), repeat the choice on 80 % of the patients
    and evaluate it once on the other 20 % (seeded, at least 5 patients), and keep the pooled one-step errors
    for intervals. Raises ``InsufficientData`` when no patient has a regular series."""
    started = time.perf_counter()
    patients = _patients(dataset)
    if not patients:
        raise InsufficientData(
            f"hr-forecast needs a patient with at least {MIN_HISTORY} heart-rate readings at most "
            f"{MAX_INTERVAL.total_seconds() / 3600:g} h apart (median); {dataset.name} has none"
        )
    results = {
        pid: rolling_origin(s, origins=_spread(len(s) - MIN_HISTORY, MAX_ORIGINS)) for pid, s in patients.items()
    }
    candidates = _pooled(list(results.values()))
    degree = _chosen(candidates)
    config = ForecastConfig(degree, _quantiles(_residuals(list(results.values()), degree)))
    fit_seconds = time.perf_counter() - started

    per_patient = [metrics.regression_metrics(r.observed, r.forecasts[degree], r.persistence) for r in results.values()]
    holdout = _holdout(results, seed)
    sample = [_as_points(series) for series in list(patients.values())[:20]]
    latency = _latency(config, sample)
    report = build(
        MODEL,
        data=data_section(
            dataset,
            patients_with_series=len(patients),
            origins=int(sum(r.origins.size for r in results.values())),
        ),
        features=FEATURES,
        outcome={
            "definition": "the next heart-rate reading (/min) and whether it exceeds 100/min",
            "horizon": MODEL.horizon,
            "eligibility": f"at least {MIN_HISTORY} readings, median interval at most 24 h",
        },
        cross_validation={
            "method": (
                f"rolling origin, one step ahead, fitted on at most the {WINDOW} readings before each origin; "
                f"at most {MAX_ORIGINS} origins per patient from reading {MIN_HISTORY + 1} on; never shuffled"
            ),
            "ci_method": "mean ± t(0.975, k−1)·SD/√k over patients",
            "patients": len(results),
            "metrics": {
                name: metrics.summary([m.get(name) for m in per_patient]) for name in ("mae", "rmse", "r2", "skill")
            },
            "pooled": candidates[CANDIDATES[degree]],
        },
        holdout=holdout,
        calibration={
            "prediction_interval_level": LEVEL,
            "holdout_interval_coverage": holdout["interval_coverage"] if holdout else None,
            "note": "coverage of the 90 % interval built from the training patients' errors, on held-out patients",
        },
        efficiency=efficiency(fit_seconds, latency, config),
        comparison={
            "summary": "pooled one-step-ahead errors of each candidate and of persistence over every origin",
            "candidates": candidates,
            "chosen": CANDIDATES[degree],
        },
        limits=[
            "Per-patient models on short histories: the forecast is only as good as the patient's last readings.",
            "One step ahead only; the interval assumes future errors resemble past ones.",
            "Evaluation on a simulated stream shows the pipeline works, not clinical accuracy.",
        ],
        seed=seed,
        gates=GATES,
    )
    return TrainResult(MODEL, config, report, model_card(MODEL, report))


def _holdout(results: dict[str, RollingOrigin], seed: int) -> dict[str, Any] | None:
    """Choose the degree on 80 % of patients and evaluate that choice once on the other 20 %."""
    if len(results) < 5:
        return None
    ids = sorted(results)
    np.random.default_rng(seed).shuffle(ids)
    cut = max(1, round(len(ids) * 0.2))
    test, fit = [results[i] for i in ids[:cut]], [results[i] for i in ids[cut:]]
    degree = _chosen(_pooled(fit))
    low, high = _bounds(_residuals(fit, degree))
    errors = _residuals(test, degree)
    observed = np.concatenate([r.observed for r in test])
    return {
        "method": f"candidate chosen on {len(fit)} patients, evaluated once on {len(test)} others (seed {seed})",
        "n_train": len(fit),
        "n_test": len(test),
        "chosen": CANDIDATES[degree],
        "metrics": metrics.regression_metrics(
            observed, observed - errors, np.concatenate([r.persistence for r in test])
        ),
        "interval_coverage": float(np.mean((errors >= low) & (errors <= high))),
    }


def _as_points(series: Series) -> list[Point]:
    return [
        (datetime.fromtimestamp(h * 3600, UTC), float(v), f"reading/{i}")
        for i, (h, v) in enumerate(zip(series.hours, series.values, strict=True))
    ][-WINDOW:]


def _latency(config: ForecastConfig, sample: list[list[Point]]) -> dict[str, Any]:
    return inference_latency(lambda points: predict(config, points, points[-1][0]), sample)


def predict(artifact: ForecastConfig, points: Sequence[Point], now: datetime) -> tuple[Score, list[str]]:
    """The next reading of one patient from ``points`` (time UTC, /min, source reference), and the sources used.

    Readings after ``now`` are ignored. The 90 % interval and P(next > 100/min) come from this patient's own
    one-step-ahead errors at up to 50 recent origins when there are at least 20 of them, else from the
    pooled errors of training; P is (k + ½)/(n + 1) over the n errors, k of which would put the forecast above
    100/min, so it is never exactly 0 or 1.
    """
    now = utc(now)
    usable = [(utc(when), value, source) for when, value, source in points if utc(when) <= now]
    times, values, positions = clean([(t, v) for t, v, _ in usable])
    if len(times) < artifact.min_history:
        score = Score.insufficient(MODEL, (fields.HEART_RATE.name,))
        return replace(
            score, rationale=f"{score.rationale} ({artifact.min_history} readings needed, {len(times)} available)"
        ), []
    gap = median_gap(times)
    if gap > MAX_INTERVAL:
        return Score.not_applicable(
            MODEL,
            f"readings are a median {gap.total_seconds() / 3600:.0f} h apart; it forecasts regular series "
            "(at most 24 h apart)",
        ), []
    if now - times[-1] > STALE_AFTER:
        return Score.not_applicable(MODEL, f"the latest heart rate ({times[-1].isoformat()}) is older than 24 h"), []

    series = Series.of(times[-(artifact.window + OWN_ORIGINS) :], values[-(artifact.window + OWN_ORIGINS) :])
    sources = [usable[p][2] for p in positions][-(artifact.window + OWN_ORIGINS) :]
    model = fit(series, len(series), artifact.degree, artifact.lags, artifact.window)
    horizon = gap.total_seconds() / 3600
    target = times[-1] + gap
    row = series.row(len(series), artifact.lags, clock=hour_of_day(target), gap=horizon)
    value = model.predict(row)

    own_origins = np.arange(max(artifact.min_history, len(series) - OWN_ORIGINS), len(series))
    own = rolling_origin(series, (artifact.degree,), artifact.lags, artifact.min_history, artifact.window, own_origins)
    own_errors = own.observed - own.forecasts[artifact.degree]
    if own_errors.size >= MIN_OWN_RESIDUALS:
        errors, basis_of_interval = own_errors, f"this patient's own one-step errors (n={own_errors.size})"
    else:
        errors, basis_of_interval = np.array(artifact.residual_quantiles), "errors pooled over the training patients"
    low, high = _bounds(errors)
    above = int(np.sum(value + errors > TACHYCARDIA))
    probability = (above + 0.5) / (errors.size + 1)
    band = risk_band(probability, BANDS)

    skill = None
    if own_errors.size:
        persistence_mse = float(np.mean((own.observed - own.persistence) ** 2))
        skill = 1 - float(np.mean(own_errors**2)) / persistence_mse if persistence_mse > 0 else None

    contributions = _contributions(model, row)
    last = ", ".join(f"{v:.0f}" for v in values[-artifact.lags :])
    rationale = (
        f"Last {artifact.lags} heart rates {last} /min (the latest at {times[-1]:%H:%M on %Y-%m-%d}). "
        f"Forecast for the next reading in {horizon * 60:.0f} min: {value:.1f} /min, 90 % interval "
        f"{value + low:.1f} to {value + high:.1f} ({basis_of_interval}). "
        f"Chance of a heart rate above 100/min then: {probability:.1%} ({band}). "
    )
    if artifact.degree == 0:
        rationale += "The forecast is the last value: in training no regression forecast better than persistence. "
    elif skill is not None:
        rationale += (
            f"On this patient's last {own_errors.size} readings the model's squared error was "
            f"{abs(skill) * 100:.0f} % {'lower' if skill >= 0 else 'higher'} than repeating the last value "
            f"(skill {skill:+.2f}). "
        )
    rationale += "Largest terms: " + "; ".join(c.explanation for c in contributions[:3]) + "."
    score = Score.complete(
        MODEL,
        value=round(value, 1),
        probability=probability,
        band=band,
        contributions=contributions,
        rationale=rationale,
        mitigation=None,
        forecast=Forecast(value, value + low, value + high, LEVEL, "/min", horizon),
    )
    # Every reading the forecast and its interval were fitted on: the basis names them all.
    return score, sources


# A term of the regression in words, as the rationale lists the largest ones.
TERMS = {
    "heart_rate_lag1": "the last reading",
    "heart_rate_lag2": "the reading before it",
    "heart_rate_lag3": "the one before that",
    "hour_sin": "the time of day (sine)",
    "hour_cos": "the time of day (cosine)",
    "hours_since_previous": "the time since the previous reading",
}


def _contributions(model: Fit, row: np.ndarray) -> tuple[Contribution, ...]:
    """The fitted model's terms coefficient × feature for the forecast row, largest |term| first."""
    if model.pipeline is None:
        return (Contribution(NAMES[0], float(row[0]), float(row[0]), f"persistence: the last value {row[0]:.1f} /min"),)
    regression: LinearRegression = model.pipeline.named_steps["regression"]
    values = row[list(model.columns)]
    names = [NAMES[i] for i in model.columns]
    if "polynomial" in model.pipeline.named_steps:
        polynomial: PolynomialFeatures = model.pipeline.named_steps["polynomial"]
        values = polynomial.transform(values[None, :])[0]
        names = [name.replace(" ", "·") for name in polynomial.get_feature_names_out(names)]
    terms = [
        Contribution(name, float(x), float(beta * x) + 0.0, f"{TERMS.get(name, name)} {beta * x:+.1f} /min")
        for name, beta, x in zip(names, regression.coef_, values, strict=True)
    ]
    return tuple(sorted(terms, key=lambda c: -abs(c.points)))


@dataclass(frozen=True)
class ForecastRunner:
    """Next heart rate from the patient's own series."""

    model: ModelInfo
    artifact: Any
    kind: ClassVar[Kind] = Kind({"text": "Heart rate above 100/min at the next reading (forecast)"}, None)
    reads: ClassVar[tuple[BodyField, ...]] = READS
    fields: ClassVar[tuple[str, ...]] = WHATIF

    def run(self, patient: Patient, simulated: Simulation | None = None, requested: bool = False) -> Run:
        reader = Reader(patient.document)
        found = reader.points(fields.HEART_RATE.name)
        if found and found[-1].time is not None:
            reader.needs_verification(fields.HEART_RATE.name, "the forecast is made from the readings before it.")
        points = [(point.time.replace(tzinfo=UTC), point.value, point.source) for point in found if point.value]  # type: ignore[union-attr]
        score, sources = predict(self.artifact, points, patient.now.replace(tzinfo=UTC))
        for point in found:
            if point.source in sources:
                reader.read(point)
        gathered = Gathered(None, tuple(sources), tuple(reader.notes), False, reader.unverified, reader.as_of)
        return completed(gathered, replace(score, model=self.model))
