"""What training returns: the fitted artifact, an evaluation report (strict JSON) and a Markdown model card.

The report has the same top-level keys for every learned model, so a reader (or a registry) can
compare them: model, data, features, outcome, cross_validation, holdout, external, internal,
calibration, efficiency, comparison, gates, limits, created, versions, seed. ``external`` holds only
an evaluation on data the model was not trained on; ``internal`` an apparent one on this server's
current twins, which may include the training data. Its content follows TRIPOD+AI (Collins et
al., BMJ 2024;385:e078378) and the model-card layout of Mitchell et al. (FAT* 2019, doi:10.1145/3287560.3287596).
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.fields import BodyField
from fhir_twin.ml.learned import gates as gating
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.scores.score import ModelInfo

TRIPOD = "Collins GS et al. TRIPOD+AI statement. BMJ 2024;385:e078378."
SYNTHETIC_WARNING = (
    "**Synthetic data.** Every figure below was measured on generated data whose outcomes follow the "
    "generator's own rules: it shows that the pipeline works, not how the model performs on patients. "
    "These metrics are not clinical performance."
)


@dataclass(frozen=True)
class Feature:
    """One model feature as the card lists it: twin field (or derived name), LOINC code, UCUM unit."""

    name: str
    loinc: str | None
    unit: str | None
    description: str

    @classmethod
    def of(cls, read: BodyField, description: str) -> Feature:
        """A Body field's value as a feature: its name, code and canonical unit."""
        return cls(read.name, read.code.token, read.unit, description)


def efficiency(fit_seconds: float, latency: dict[str, Any], artifact: Any) -> dict[str, Any]:
    """A report's efficiency section: seconds to fit, prediction latency and the artifact's size."""
    return {
        "fit_seconds": fit_seconds,
        "latency_p50_ms": latency["p50_ms"],
        "latency_p95_ms": latency["p95_ms"],
        "artifact_bytes": len(pickle.dumps(artifact)),
    }


@dataclass(frozen=True)
class TrainResult:
    """A trained model: its identity, the picklable ``artifact`` predictions need, the report and the card."""

    model: ModelInfo
    artifact: Any
    report: dict[str, Any]
    card: str


def clean(value: Any) -> Any:
    """``value`` as strict JSON data: plain floats and ints, lists for tuples and arrays, None for NaN/inf,
    ISO 8601 for times, so ``json.dumps(report, allow_nan=False)`` always works."""
    import numpy as np
    import pandas as pd

    if isinstance(value, Mapping):
        return {str(key): clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [clean(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    return str(value)


def data_section(dataset: Dataset, **extra: Any) -> dict[str, Any]:
    """Name, synthetic flag and why, patient count and SHA-256 of a dataset, plus model-specific counts."""
    return {
        "name": dataset.name,
        "synthetic": dataset.synthetic,
        "origin": dataset.origin.describe(),
        "patients": len(dataset.patients),
        "sha256": dataset.digest(),
        **extra,
    }


def versions() -> dict[str, str]:
    """Library versions the report was made with (results can change with them)."""
    import numpy as np
    import pandas as pd
    import sklearn

    return {"scikit-learn": sklearn.__version__, "pandas": pd.__version__, "numpy": np.__version__}


def build(
    model: ModelInfo,
    *,
    data: dict[str, Any],
    features: Sequence[Feature],
    outcome: dict[str, Any],
    cross_validation: dict[str, Any],
    holdout: dict[str, Any] | None,
    calibration: dict[str, Any] | None,
    efficiency: dict[str, Any],
    comparison: dict[str, Any] | None,
    limits: Sequence[str],
    seed: int,
    gates: Sequence[Gate] = (),
    external: dict[str, Any] | None = None,
    created: datetime | None = None,
) -> dict[str, Any]:
    """The report of one training run, JSON-ready, with each of the model's ``gates`` checked on it."""
    report = clean(
        {
            "model": {
                "id": model.id,
                "version": model.version,
                "kind": model.kind,
                "outcome": model.outcome,
                "horizon": model.horizon,
                "intended_use": model.intended_use,
                "reference": model.reference,
            },
            "data": data,
            "features": [vars(feature) for feature in features],
            "outcome": outcome,
            "cross_validation": cross_validation,
            "holdout": holdout,
            "external": external,
            "internal": None,
            "calibration": calibration,
            "efficiency": efficiency,
            "comparison": comparison,
            "limits": [*limits, f"Reported following TRIPOD+AI ({TRIPOD})"],
            "created": (created or datetime.now(UTC)).isoformat(),
            "versions": versions(),
            "seed": seed,
        }
    )
    report["gates"] = clean(gating.check(gates, report))
    return report


def external_report(report: dict[str, Any], metrics: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    """A copy of ``report`` with an external validation section: ``metrics`` (from ``evaluate``) on ``dataset``,
    which the caller has checked shares neither its digest nor any patient with the training data."""
    updated = copy.deepcopy(report)
    updated["external"] = clean({"dataset": data_section(dataset), **metrics})
    return updated


INTERNAL = "Apparent validation on this server's current twins, which may include the training data"


def internal_report(report: dict[str, Any], metrics: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    """A copy of ``report`` with an internal (apparent) validation section: ``metrics`` on this server's own
    twins. Never external: the training data may be among them, which makes the figures optimistic."""
    updated = copy.deepcopy(report)
    updated["internal"] = clean({"description": INTERNAL, "dataset": data_section(dataset), **metrics})
    return updated


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_number(item)}" for key, item in value.items()) or "none"
    return str(value)


LABELS = {"sha256": "SHA-256", "sd": "SD", "n": "n", "ci": "CI"}


def _label(key: str) -> str:
    """A report key as a card label: ``fit_seconds`` → ``Fit seconds``."""
    words = [LABELS.get(word, word) for word in key.split("_")]
    text = " ".join(words)
    return text if text[:1].isupper() else text[:1].upper() + text[1:]


def _code(code: str | None) -> str:
    """A ``system|code`` for a Markdown table cell: LOINC codes bare, other systems with the bar escaped."""
    if not code:
        return "–"
    system, _, value = code.partition("|")
    return value if system == "http://loinc.org" else code.replace("|", "\\|")


def _ci(low: Any, high: Any) -> str:
    return "–" if low is None or high is None else f"{_number(low)} to {_number(high)}"


def _summary_table(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["| metric | mean ± SD | 95 % CI |", "|---|---|---|"]
    for name, row in summaries.items():
        if row.get("mean") is None:
            continue
        lines.append(
            f"| {name} | {_number(row['mean'])} ± {_number(row.get('sd'))} | {_ci(row['ci_low'], row['ci_high'])} |"
        )
    return lines


def _value_table(values: Mapping[str, Any], intervals: Mapping[str, Any] | None) -> list[str]:
    lines = ["| metric | value | 95 % CI |", "|---|---|---|"]
    for name, value in values.items():
        if isinstance(value, dict | list) or name in ("note", "n"):
            continue
        interval = (intervals or {}).get(name)
        lines.append(f"| {name} | {_number(value)} | {_ci(*interval) if interval else '–'} |")
    return lines


def _reliability(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| bin | n | mean predicted | observed |", "|---|---|---|---|"]
    lines += [
        f"| {i} | {row['n']} | {_number(row['predicted'])} | {_number(row['observed'])} |"
        for i, row in enumerate(rows, 1)
    ]
    return lines


def _evaluation(section: Mapping[str, Any]) -> list[str]:
    lines = [f"Method: {section.get('method', '–')}."]
    keys = ("n_train", "n_test") if "n_test" in section else ("n",)
    counts = [f"{key.replace('_', ' ')} {section[key]}" for key in keys if key in section]
    if counts:
        lines.append(f"Examples: {', '.join(counts)}.")
    if section.get("note"):
        lines.append(str(section["note"]))
    lines.append("")
    return lines + _value_table(section.get("metrics", {}), section.get("ci"))


def _dataset(dataset: Mapping[str, Any]) -> list[str]:
    origin = dataset.get("origin") or {}
    return [
        f"Dataset: {dataset['name']} (synthetic: {'yes' if dataset['synthetic'] else 'no'}, "
        f"{dataset['patients']} patients, SHA-256 {dataset['sha256']}).",
        *([f"Origin: {origin['summary']}"] if origin.get("summary") else []),
        "",
    ]


def _gates(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each gate, its value and whether it passed: a version is activated only when all pass."""
    if not results:
        return ["None declared."]
    passed = all(result["passed"] for result in results)
    lines = [
        f"A version serves patients only once activated, and only when every gate passes: "
        f"{'all pass' if passed else 'not all pass, so this version cannot be activated'}.",
        "",
        "| gate | metric | allowed | value | result | why |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['metric']} | {r['allowed']} | {_number(r['value'])} | "
        f"{'pass' if r['passed'] else 'FAIL'} | {r['reason']} |"
        for r in results
    ]
    return lines


def model_card(model: ModelInfo, report: Mapping[str, Any]) -> str:
    """The report as a Markdown model card, one section per TRIPOD+AI item a reader checks first."""
    data = report["data"]
    lines = [f"# Model card: {model.id} {model.version}", "", f"Kind: {model.kind}. Reference: {model.reference}", ""]
    lines += ["## Data", ""]
    if data.get("synthetic"):
        lines += [f"> {SYNTHETIC_WARNING}", ""]
    lines += [f"- Name: {data['name']}", f"- Synthetic: {'yes' if data.get('synthetic') else 'no'}"]
    if (data.get("origin") or {}).get("summary"):
        lines.append(f"- Origin: {data['origin']['summary']}")
    shown = ("name", "synthetic", "origin")
    lines += [f"- {_label(key)}: {_number(value)}" for key, value in data.items() if key not in shown]
    lines += [
        "",
        "## Features",
        "",
        "| feature | code (LOINC unless a system is named) | unit | description |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {f['name']} | {_code(f['loinc'])} | {f['unit'] or '–'} | {f['description']} |" for f in report["features"]
    ]
    outcome = report["outcome"]
    lines += ["", "## Outcome and horizon", ""]
    lines += [f"- {_label(key)}: {_number(value)}" for key, value in outcome.items()]
    cv = report["cross_validation"]
    lines += ["", "## Cross-validation", "", f"Method: {cv['method']}; interval: {cv.get('ci_method', '–')}.", ""]
    lines += _summary_table(cv["metrics"])
    lines += ["", "## Hold-out", ""]
    lines += _evaluation(report["holdout"]) if report.get("holdout") else ["Not performed: too few examples."]
    lines += ["", "## External validation", ""]
    external = report.get("external")
    if external:
        lines += _dataset(external["dataset"]) + _evaluation(external)
    else:
        lines += [
            "Not performed: no independent cohort was evaluated. Validation on the data a model was developed on, "
            "however split, is internal; `evaluate --data` applies the fitted model unchanged to other data."
        ]
    internal = report.get("internal")
    if internal:
        lines += ["", "## Internal validation (apparent)", "", f"{internal['description']}.", ""]
        lines += _dataset(internal["dataset"]) + _evaluation(internal)
    lines += ["", "## Calibration", ""]
    calibration = report.get("calibration")
    if calibration:
        for key, value in calibration.items():
            if key != "reliability":
                lines.append(f"- {_label(key)}: {_number(value)}")
        if calibration.get("reliability"):
            lines += ["", "Reliability diagram (out-of-fold predictions, quantile bins):", ""]
            lines += _reliability(calibration["reliability"])
    else:
        lines.append("Not applicable: the model predicts a quantity, not a probability.")
    comparison = report.get("comparison")
    if comparison:
        lines += ["", "## Comparison", "", str(comparison.get("summary", "")), ""]
        candidates = comparison["candidates"]
        first = next(iter(candidates.values()))
        names = [name for name, value in first.items() if not isinstance(value, dict | list)]
        lines += [f"| candidate | {' | '.join(names)} |", f"|---|{'---|' * len(names)}"]
        lines += [f"| {c} | {' | '.join(_number(row.get(n)) for n in names)} |" for c, row in candidates.items()]
        lines.append(f"\nChosen: {comparison['chosen']}.")
    lines += ["", "## Gates", "", *_gates(report.get("gates") or [])]
    efficiency = report["efficiency"]
    lines += ["", "## Efficiency", ""]
    lines += [f"- {_label(key)}: {_number(value)}" for key, value in efficiency.items()]
    lines += ["", "## Intended use", "", model.intended_use, "", "## Limits", ""]
    lines += [f"- {limit}" for limit in report["limits"]]
    lines += ["", "## Reproducibility", ""]
    lines += [f"- Seed: {report['seed']}", f"- Created: {report['created']}"]
    lines += [f"- {name} {version}" for name, version in report["versions"].items()]
    return "\n".join(lines) + "\n"
