"""Gates: the minimum a trained version must show in its own report before it may serve patients.

Each learned model declares its gates in code, next to the model: a metric found at a path in the
report, the range it must lie in, and why (the source of the threshold, or why it is this server's
choice). A version is activated only when every gate passes; a metric the report does not hold
(None: undefined, or not measured) fails its gate, because what was not measured was not shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gate:
    """``path`` is the metric's keys in the report, e.g. ``("holdout", "metrics", "auroc")``; ``low`` and
    ``high`` its inclusive bounds (None: unbounded), ``above`` a strict lower bound instead."""

    name: str
    path: tuple[str, ...]
    reason: str
    low: float | None = None
    high: float | None = None
    above: float | None = None

    @property
    def allowed(self) -> str:
        """The range in words, e.g. ``≥ 0.7``, ``0.7 to 1.3``, ``> 0``."""
        if self.above is not None:
            return f"> {self.above:g}"
        if self.low is not None and self.high is not None:
            return f"{self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"≥ {self.low:g}"
        return f"≤ {self.high:g}"

    def value(self, report: Mapping[str, Any]) -> float | None:
        found: Any = report
        for key in self.path:
            if not isinstance(found, Mapping):
                return None
            found = found.get(key)
        if isinstance(found, bool) or not isinstance(found, int | float) or not math.isfinite(found):
            return None
        return float(found)

    def passes(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.above is not None and not value > self.above:
            return False
        if self.low is not None and value < self.low:
            return False
        return not (self.high is not None and value > self.high)


def check(gates: Sequence[Gate], report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each gate with the report's value and whether it passes, in the report's JSON shape."""
    results = []
    for gate in gates:
        value = gate.value(report)
        results.append(
            {
                "name": gate.name,
                "metric": ".".join(gate.path),
                "allowed": gate.allowed,
                "value": value,
                "passed": gate.passes(value),
                "reason": gate.reason,
            }
        )
    return results


def failures(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The failed gates in words, e.g. ``hold-out AUROC 0.62, needs ≥ 0.7``."""
    return [
        f"{result['name']} {'not measured' if result['value'] is None else format(result['value'], '.3f')}, "
        f"needs {result['allowed']}"
        for result in results
        if not result["passed"]
    ]


# Shared by the classifiers. Hosmer DW, Lemeshow S, Sturdivant RX. Applied Logistic Regression,
# 3rd ed. Wiley 2013, section 5.2.4: an area under the ROC curve from 0.7 to 0.8 is "acceptable
# discrimination", below 0.7 it is not.
ACCEPTABLE_AUROC = 0.7
# Van Calster B et al., BMC Med 2019;17:230: the ideal calibration slope is 1; below 1 predictions are
# too extreme (overfitting), above 1 too modest. The band 0.7-1.3 is this server's choice: a hold-out of
# one or a few hundred patients measures the slope only to about ±0.3, so a narrower band would turn
# sampling error into refusals.
SLOPE_LOW, SLOPE_HIGH = 0.7, 1.3


def classifier_gates(section: str) -> tuple[Gate, ...]:
    """Discrimination, calibration and skill gates on the ``section`` (``holdout``) metrics of a classifier."""
    where = "hold-out" if section == "holdout" else section
    return (
        Gate(
            f"{where} AUROC",
            (section, "metrics", "auroc"),
            "Acceptable discrimination (0.7 to 0.8): Hosmer, Lemeshow & Sturdivant, Applied Logistic Regression, "
            "3rd ed. 2013, section 5.2.4",
            low=ACCEPTABLE_AUROC,
        ),
        Gate(
            f"{where} calibration slope",
            (section, "metrics", "calibration_slope"),
            "Ideal 1 (Van Calster et al., BMC Med 2019;17:230); the band 0.7 to 1.3 is this server's allowance "
            "for the sampling error of a hold-out of a few hundred patients",
            low=SLOPE_LOW,
            high=SLOPE_HIGH,
        ),
        Gate(
            f"{where} Brier skill over the prevalence-only predictor",
            (section, "metrics", "scaled_brier"),
            "Scaled Brier score 1 − Brier / Brier of predicting the prevalence to everyone (Steyerberg et al., "
            "Epidemiology 2010;21:128): a model must beat that baseline",
            above=0.0,
        ),
    )
