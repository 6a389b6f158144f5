"""ValueSet expansion (R4 valueset.html#expansion) from ``compose``: includes and excludes with
concept lists, filters (``is-a``, ``descendent-of``, ``is-not-a``, ``generalizes``, ``=``, ``in``,
``regex``), whole held code systems and imported value sets.

A component that needs a whole code system (no concept list) needs that system held complete;
otherwise the expansion stops with ``not-supported`` naming it, rather than answer part of it.

``active_only`` leaves inactive concepts out (``activeOnly``); ``languages`` chooses each display
(``displayLanguage``, see ``language``). The expansion is flat; ``nest`` arranges it by the code
systems' hierarchies (``excludeNested=false``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fhir_twin.errors import Invalid, Issue
from fhir_twin.terminology.code_system import CodeSystem
from fhir_twin.terminology.definitions import Definitions
from fhir_twin.terminology.errors import not_held, too_costly
from fhir_twin.terminology.language import display

# The codes a search or an ``$expand`` may expand to; beyond them the answer is too-costly.
MAX_EXPANSION = 10_000


@dataclass(frozen=True)
class Code:
    """One ``expansion.contains``, with its ``designation`` list (the value set's, then the code
    system's), and whether the code system marks it ``inactive`` or ``abstract``."""

    system: str
    code: str
    display: str | None = None
    version: str | None = None
    inactive: bool = False
    abstract: bool = False
    designations: tuple[dict[str, Any], ...] = field(default=(), compare=False)


@dataclass
class Branch:
    """A code of a nested expansion and the codes below it (``contains.contains``)."""

    code: Code
    below: list[Branch] = field(default_factory=list)


def expand(
    value_set: dict[str, Any],
    definitions: Definitions,
    limit: int = MAX_EXPANSION,
    *,
    active_only: bool = False,
    languages: tuple[str, ...] = (),
) -> list[Code]:
    """Every code of ``value_set``, in compose order, each once."""
    return _Expander(definitions, limit, active_only, list(languages)).value_set(value_set, ())


def nest(codes: list[Code], definitions: Definitions) -> list[Branch]:
    """``codes`` as a forest: a code sits under its first parent in its code system that the
    expansion holds, else at the top; order is the flat order. A code system whose hierarchy loops
    (stored data may) has the code that closes the loop at the top, so no code is lost."""
    branches = {(code.system, code.code): Branch(code) for code in codes}
    systems: dict[tuple[str, str | None], CodeSystem | None] = {}
    above: dict[tuple[str, str], tuple[str, str]] = {}
    for code in codes:
        key = (code.system, code.version)
        if key not in systems:
            systems[key] = definitions.code_system(code.system, code.version)
        held = systems[key]
        concept = held.get(code.code) if held is not None else None
        parents = concept.parents if concept is not None else []
        parent = next((p for p in parents if (code.system, p) in branches and p != code.code), None)
        if parent is not None and not _loops(above, (code.system, code.code), (code.system, parent)):
            above[(code.system, code.code)] = (code.system, parent)
    top: list[Branch] = []
    for key, branch in branches.items():
        if key in above:
            branches[above[key]].below.append(branch)
        else:
            top.append(branch)
    return top


def _loops(above: dict[tuple[str, str], tuple[str, str]], child: tuple[str, str], parent: tuple[str, str]) -> bool:
    current: tuple[str, str] | None = parent
    while current is not None:
        if current == child:
            return True
        current = above.get(current)
    return False


def code_system_held(definitions: Definitions, system: str, version: str | None = None) -> CodeSystem:
    """The complete CodeSystem ``system``, or 400 ``not-supported`` saying it is not held."""
    found = definitions.code_system(system, version)
    if found is None:
        raise not_held(system)
    if not found.complete:
        raise not_held(system, f"only its {found.content} content is")
    return found


class _Expander:
    def __init__(self, definitions: Definitions, limit: int, active_only: bool, languages: list[str]) -> None:
        self.definitions = definitions
        self.limit = limit
        self.active_only = active_only
        self.languages = languages

    def value_set(self, value_set: dict[str, Any], importing: tuple[str, ...]) -> list[Code]:
        url = value_set.get("url", "")
        compose = value_set.get("compose")
        if not isinstance(compose, dict):
            raise Invalid(f"The value set {url or value_set.get('id')} has no compose to expand")
        included: dict[tuple[str, str], Code] = {}
        for component in compose.get("include", []):
            for code in self._component(component, (*importing, url)):
                included.setdefault((code.system, code.code), code)
                if len(included) > self.limit:
                    raise too_costly(f"The value set {url}", self.limit)
        excluded = {
            (code.system, code.code)
            for component in compose.get("exclude", [])
            for code in self._component(component, (*importing, url))
        }
        return [code for key, code in included.items() if key not in excluded]

    def _component(self, component: dict[str, Any], importing: tuple[str, ...]) -> list[Code]:
        """One include or exclude: its system part intersected with each imported value set."""
        parts: list[list[Code]] = []
        system = component.get("system")
        if system:
            parts.append(self._system_part(system, component))
        for canonical in component.get("valueSet", []):
            if canonical.partition("|")[0] in importing:
                raise Invalid(f"The value set {canonical} imports itself")
            imported = self.definitions.value_set(canonical)
            if imported is None:
                message = f"The value set {canonical} is not known to this server"
                raise Invalid(message, issues=[Issue("not-found", message)])
            parts.append(self.value_set(imported, importing))
        if not parts:
            return []
        first, *others = parts
        keep = set.intersection(*({(c.system, c.code) for c in part} for part in others)) if others else None
        return [code for code in first if keep is None or (code.system, code.code) in keep]

    def _system_part(self, system: str, component: dict[str, Any]) -> list[Code]:
        version = component.get("version")
        if "concept" in component and "filter" not in component:
            held = self.definitions.code_system(system, version)
            codes = []
            for listed in component["concept"]:
                concept = held.get(listed["code"]) if held is not None else None
                default = listed.get("display") or (concept.display if concept else None)
                designations = (*listed.get("designation", []), *(concept.designations if concept else []))
                if self.active_only and concept is not None and concept.inactive:
                    continue
                codes.append(
                    Code(
                        system,
                        listed["code"],
                        display(designations, default, held.language if held else None, self.languages),
                        version,
                        concept.inactive if concept else False,
                        concept.abstract if concept else False,
                        designations,
                    )
                )
            return codes
        held = code_system_held(self.definitions, system, version)
        chosen: list[str] = list(held.concepts)
        for filter_ in component.get("filter", []):
            matched = filtered(held, filter_)
            chosen = [code for code in chosen if code in matched]
        if "concept" in component:
            listed_codes = {listed["code"] for listed in component["concept"]}
            chosen = [code for code in chosen if code in listed_codes]
        codes = []
        for code in chosen:
            concept = held.concepts[code]
            if self.active_only and concept.inactive:
                continue
            shown = display(concept.designations, concept.display, held.language, self.languages)
            designations = tuple(concept.designations)
            codes.append(Code(system, code, shown, held.version, concept.inactive, concept.abstract, designations))
        return codes


def filtered(system: CodeSystem, filter_: dict[str, Any]) -> set[str]:
    """The codes of ``system`` a compose filter selects (R4 valueset.html#filters)."""
    prop, op, value = filter_.get("property"), filter_.get("op"), str(filter_.get("value", ""))
    if prop in ("concept", "code") and op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
        if op == "generalizes":
            return {value, *system.ancestors(value)} if value in system.concepts else set()
        below = {value, *system.descendants(value)} if value in system.concepts else set()
        if op == "descendent-of":
            return below - {value}
        return below if op == "is-a" else set(system.concepts) - below
    if op == "=" or op == "in":
        wanted = {value} if op == "=" else set(value.split(","))
        return {code for code, concept in system.concepts.items() if _property(code, concept, prop) & wanted}
    if op == "regex":
        try:
            pattern = re.compile(value)
        except re.error:
            raise Invalid(f"The filter regex {value!r} is not a valid regular expression") from None
        return {
            code
            for code, concept in system.concepts.items()
            if any(pattern.fullmatch(text) for text in _property(code, concept, prop))
        }
    message = f"The value set filter {prop} {op} {value} is not supported by this server"
    raise Invalid(message, issues=[Issue("not-supported", message)])


def _property(code: str, concept: Any, prop: str | None) -> set[str]:
    """The values ``prop`` has on a concept: its code, display, or concept property values."""
    if prop in ("concept", "code"):
        return {code}
    if prop == "display":
        return {concept.display} if concept.display else set()
    values = set()
    for given in concept.properties:
        if given.get("code") == prop:
            values |= {
                str(v).lower() if isinstance(v, bool) else str(v) for k, v in given.items() if k.startswith("value")
            }
    return values
