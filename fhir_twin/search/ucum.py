"""Canonical UCUM units, so ``value-quantity=0.1|http://unitsofmeasure.org|g/L`` finds ``10 mg/dL``.

R4 search.html#quantity lets a server compare quantities in canonical units. This converts the
common laboratory subset of UCUM (unitsofmeasure.org/ucum): metric prefixes on g, L (l), mol,
m and s, integer exponents, ``10*n`` (or ``10^n``) factors, annotations such as ``{cells}``
(which stand for 1), joined by ``.`` and ``/`` read left to right as UCUM does
(``mg/kg.d`` is ``(mg/kg).d``). A few units that have no metric reduction here (``%``, ``/min``,
``mm[Hg]``) are their own canonical form; anything else has none.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import cache

_PREFIXES = {"Y": 24, "Z": 21, "E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "h": 2, "da": 1,
             "d": -1, "c": -2, "m": -3, "u": -6, "n": -9, "p": -12, "f": -15, "a": -18, "z": -21, "y": -24}  # fmt: skip
# Base atoms in the order canonical codes list them; ``l`` is UCUM's other symbol for the litre.
_ATOMS = ("g", "mol", "L", "m", "s")
_ALIASES = {"l": "L"}
_SELF_CANONICAL = frozenset({"%", "/min", "mm[Hg]"})

_TERM = re.compile(r"(?:10[*^](?P<power>[+-]?\d+)|(?P<integer>\d+)|(?P<unit>[A-Za-z]+)(?P<exponent>[+-]?\d+)?)")
# An annotation after a unit is a comment; standing alone it is the unit 1 (``{cells}/uL``).
_ATTACHED_ANNOTATION = re.compile(r"(?<=[^./])\{[^{}]*\}")
_ANNOTATION = re.compile(r"\{[^{}]*\}")

# The power of ten and integer factor that take a value to the canonical unit, and that unit.
Reduction = tuple[int, int, str]


def canonical(value: Decimal, code: str) -> tuple[Decimal, str] | None:
    """``value`` ``code`` in canonical units, or None when ``code`` is outside the subset."""
    if code in _SELF_CANONICAL:
        return value, code
    reduced = _reduce(code)
    if reduced is None:
        return None
    power, factor, unit = reduced
    try:
        return Decimal(value).scaleb(power) * factor, unit
    except InvalidOperation:
        return None


@cache
def _reduce(code: str) -> Reduction | None:
    """``code`` as a power of ten and an integer factor of its canonical unit; None if not understood."""
    text = _ANNOTATION.sub("1", _ATTACHED_ANNOTATION.sub("", code)) if "{" in code else code
    if not text or "(" in text:
        return None
    power, factor, exponents = 0, 1, [0] * len(_ATOMS)
    sign = 1
    position = 0
    if text.startswith("/"):
        sign, position = -1, 1
    while True:
        match = _TERM.match(text, position)
        if not match:
            return None
        term = _term(match)
        if term is None:
            return None
        term_power, term_factor, atom, exponent = term
        power += sign * term_power
        if sign < 0 and term_factor != 1:
            return None
        factor *= term_factor
        if atom is not None:
            exponents[_ATOMS.index(atom)] += sign * exponent
        position = match.end()
        if position == len(text):
            return power, factor, _format(exponents)
        if text[position] not in "./":
            return None
        sign = 1 if text[position] == "." else -1
        position += 1


def _term(match: re.Match[str]) -> tuple[int, int, str | None, int] | None:
    """One term as (power of ten, integer factor, atom, exponent of that atom)."""
    if match.group("power") is not None:
        return int(match.group("power")), 1, None, 0
    if match.group("integer") is not None:
        return 0, int(match.group("integer")), None, 0
    exponent = int(match.group("exponent") or 1)
    unit = match.group("unit")
    unit = _ALIASES.get(unit, unit)
    if unit in _ATOMS:
        return 0, 1, unit, exponent
    for prefix, power in _PREFIXES.items():
        atom = _ALIASES.get(unit[len(prefix) :], unit[len(prefix) :])
        if unit.startswith(prefix) and atom in _ATOMS:
            return power * exponent, 1, atom, exponent
    return None


def _format(exponents: list[int]) -> str:
    """``g/L``, ``/L``, ``g/m2``, ``mol/L/s``; ``1`` when nothing is left."""
    upper = [_power(atom, n) for atom, n in zip(_ATOMS, exponents, strict=True) if n > 0]
    lower = [_power(atom, -n) for atom, n in zip(_ATOMS, exponents, strict=True) if n < 0]
    if not upper and not lower:
        return "1"
    return ".".join(upper) + "".join("/" + part for part in lower)


def _power(atom: str, exponent: int) -> str:
    return atom if exponent == 1 else f"{atom}{exponent}"
