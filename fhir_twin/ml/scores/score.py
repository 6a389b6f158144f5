"""What every model says about itself (``ModelInfo``) and what one run of it returns (``Score``).

``ModelInfo`` becomes the RiskAssessment's ``method``/``performer`` Device and the model card;
``Score`` becomes one ``prediction`` with ``rationale`` and the resource's ``mitigation``
(R4 riskassessment.html). ``probability`` is a
0..1 fraction, as in every official RiskAssessment example (§1.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

# ACVPU level of responsiveness (LOINC 67775-7); "confusion" means new confusion (RCP NEWS2 2017)
Consciousness = Literal["alert", "confusion", "voice", "pain", "unresponsive"]


class InputError(ValueError):
    """An input value a score cannot take (a type check, not plausibility): the input's name and the
    reason as data, so a caller can name the parameter that gave it."""

    def __init__(self, input: str, reason: str) -> None:
        super().__init__(f"{input} {reason}")
        self.input = input
        self.reason = reason


class Input(NamedTuple):
    """One input a model reads: its name in the inputs dataclass and, for a measurement, its LOINC code."""

    name: str
    loinc: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A model's identity, version and intended use, fixed at import time."""

    id: str
    version: str  # semver of this implementation, not of the published score
    kind: Literal["rule-based", "learned"]
    inputs: tuple[Input, ...]
    outcome: str
    horizon: str | None
    intended_use: str
    reference: str


class Contribution(NamedTuple):
    """How one input moved the result: the value used, its points (or β·x term) and why."""

    input: str
    value: float | int | str | bool
    points: float | int
    explanation: str


@dataclass(frozen=True)
class Forecast:
    """A predicted value of a measurement for a time ahead, with its prediction interval.

    R4 RiskAssessment has no element for a predicted value, so it travels in the
    ``prediction`` extension documented in the README (not as a future-dated Observation).
    """

    value: float
    low: float
    high: float
    level: float  # coverage of [low, high], e.g. 0.9
    unit: str  # UCUM
    horizon_hours: float


@dataclass(frozen=True)
class Score:
    """One run of a model. ``value`` is None when the model could not or may not be applied.

    ``partial``: inputs were missing and ``value`` is a bound (NEWS2's lower bound, qSOFA's decided
    result); ``assumptions``: what the score took for a yes/no or a category the record does not
    give, each in words with what the other answer would give. Either makes the assessment
    preliminary: the record does not support a final statement.
    """

    model: ModelInfo
    value: float | int | None
    probability: float | None  # 0..1
    band: str | None  # the model's qualitative risk
    partial: bool
    missing: tuple[str, ...]
    contributions: tuple[Contribution, ...]
    rationale: str
    mitigation: str | None
    forecast: Forecast | None = None
    assumptions: tuple[str, ...] = ()
    bound: bool = False  # value and band are lower bounds ("at least"), from a partial set

    @classmethod
    def complete(
        cls,
        model: ModelInfo,
        value: float | int,
        probability: float | None,
        band: str,
        contributions: tuple[Contribution, ...],
        rationale: str,
        mitigation: str | None,
        **more: Any,
    ) -> Score:
        """A result from every input the model needs: nothing missing, no bound."""
        return cls(model, value, probability, band, False, (), contributions, rationale, mitigation, **more)

    @classmethod
    def insufficient(cls, model: ModelInfo, missing: tuple[str, ...], why: str | None = None) -> Score:
        """No score because required inputs are missing; nothing is filled in for them."""
        rationale = f"{model.id}: insufficient data, missing {', '.join(missing)}"
        return cls._without_value(model, missing, f"{rationale}: {why}" if why else rationale)

    @classmethod
    def not_applicable(cls, model: ModelInfo, reason: str) -> Score:
        """No score because the inputs lie outside the population the model was validated on."""
        return cls._without_value(model, (), f"{model.id}: not applicable, {reason}")

    @classmethod
    def _without_value(cls, model: ModelInfo, missing: tuple[str, ...], rationale: str) -> Score:
        return cls(model, None, None, None, False, missing, (), rationale, None)


def linear_term(name: str, beta: float, x: float, label: str) -> Contribution:
    """One β·X term of a regression's linear predictor; ``label`` says how X was formed from the inputs."""
    term = beta * x + 0.0  # + 0.0 turns -0.0 into 0.0
    return Contribution(name, x, term, f"{beta:+} × {label} [{x:.4f}] = {term:+.3f}")


def missing_inputs(inputs: object, names: tuple[str, ...]) -> tuple[str, ...]:
    """The ``names`` whose attribute on ``inputs`` is None, in the order given."""
    return tuple(name for name in names if getattr(inputs, name) is None)
