"""Where the elements a FHIRPath Patch path selects sit in the resource's JSON, and the changes
to lists that keep a repeating primitive's ``_`` extensions aligned (R4 json.html#primitive).

fhirpathpy gives each selected element's ``propName`` (``Patient.contact[0].name``); ``locate``
follows it down the resource with the element table, resolving choice elements to the JSON name
they are held under (``Observation.value`` as ``valueQuantity``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhirpathpy.engine.nodes import ResourceNode

from fhir_twin.fhir.definitions import table
from fhir_twin.fhir.elements import Element, elements
from fhir_twin.interactions.fhirpath_patch.parameters import Operation
from fhir_twin.search.fhirpath import engine_nodes

_STEP = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?$")


@dataclass
class Place:
    """Where a selected element sits: ``holder[key]`` (``[index]`` when it repeats), with the
    holders above it for pruning what a delete leaves empty."""

    chain: list[tuple[dict[str, Any], str, int | None]]
    holder: dict[str, Any]
    holder_type: str
    key: str
    index: int | None

    @property
    def element(self) -> Element:
        found = (elements(self.holder_type) or {}).get(self.key)
        assert found is not None  # _locate only stops on known elements
        return found

    @property
    def items(self) -> list[Any]:
        return self.holder[self.key]


def select(operation: Operation, resource: dict[str, Any]) -> list[ResourceNode]:
    """The elements the path selects, each once (fhirpathpy gives a primitive and its ``_``
    extension as two nodes of one element)."""
    try:
        found = engine_nodes(operation.path, resource)
    except Exception as error:  # fhirpathpy raises plain Exceptions for arity and type errors
        raise operation.refuse(f"the path cannot be evaluated: {str(error)[:200]}") from None
    nodes: dict[str | None, ResourceNode] = {}
    for node in found:
        if not isinstance(node, ResourceNode) or (node.propName is None and node.data is not resource):
            raise operation.refuse("the path selects a computed value, not an element of the resource")
        nodes.setdefault(node.propName, node)
    return list(nodes.values())


def single(operation: Operation, resource: dict[str, Any], nodes: list[ResourceNode]) -> Place | None:
    """The place of the one selected element; None for the resource itself."""
    if not nodes:
        raise operation.refuse("the path selects nothing")
    if len(nodes) > 1:
        raise operation.refuse(f"the path selects {len(nodes)} elements; it must select one")
    return _locate(operation, resource, nodes[0])


def whole_list(operation: Operation, resource: dict[str, Any]) -> Place:
    """The place of the list an insert or move names: the path selects all of its items."""
    nodes = select(operation, resource)
    if not nodes:
        raise operation.refuse("the path selects nothing (add creates a list)")
    places = [_locate(operation, resource, node) for node in nodes]
    first = places[0]
    if first is None or first.index is None:
        raise operation.refuse("the path selects an element that does not repeat; it must select a list")
    for place in places:
        if place is None or place.holder is not first.holder or place.key != first.key:
            raise operation.refuse("the path selects items of more than one list")
    if len(places) != len(first.items):
        raise operation.refuse(
            f"the path selects {len(places)} of the list's {len(first.items)} items; it must select the list"
        )
    return first


def _locate(operation: Operation, resource: dict[str, Any], node: ResourceNode) -> Place | None:
    """Follow the node's ``propName`` (``Patient.contact[0].name``) down ``resource``."""
    if node.propName is None:
        return None
    lost = operation.refuse("the path selects an element this server cannot locate in the resource")
    steps = node.propName.split(".")[1:]
    holder, holder_type = resource, str(resource["resourceType"])
    chain: list[tuple[dict[str, Any], str, int | None]] = []
    for number, step in enumerate(steps):
        match = _STEP.match(step)
        known = elements(holder_type) or {}
        key = _held_key(holder, holder_type, match.group(1)) if match else None
        if match is None or key is None or key not in known:
            raise lost
        index = int(match.group(2)) if match.group(2) is not None else None
        place = Place(chain, holder, holder_type, key, index)
        if number == len(steps) - 1:
            if not _is_selected(place, node.data):
                raise lost
            return place
        if known[key].primitive:
            raise operation.refuse("the path goes inside a primitive's extensions, which this server does not patch")
        value = value_at(place)
        if not isinstance(value, dict):
            raise lost
        chain = [*chain, (holder, key, index)]
        holder, holder_type = value, type_of(known[key], value)
    raise lost


def _held_key(holder: dict[str, Any], holder_type: str, name: str) -> str | None:
    """The JSON name under which ``holder`` has the element FHIRPath calls ``name``."""
    if name in holder or f"_{name}" in holder:
        return name
    for key in table()["choices"].get(holder_type, {}).get(f"{name}[x]", ()):
        if key in holder or f"_{key}" in holder:
            return str(key)
    return None


def value_at(place: Place) -> Any:
    value = place.holder.get(place.key)
    if place.index is None:
        return value
    return value[place.index] if isinstance(value, list) and place.index < len(value) else None


def _is_selected(place: Place, data: Any) -> bool:
    """Whether the place holds what fhirpathpy selected: the element, or a primitive's extension."""
    extensions = place.holder.get(f"_{place.key}")
    if place.index is not None and isinstance(extensions, list):
        extensions = extensions[place.index] if place.index < len(extensions) else None
    held = value_at(place)
    return any(value is data or (not isinstance(data, dict | list) and value == data) for value in (held, extensions))


def type_of(element: Element, value: Any) -> str:
    return str(value.get("resourceType")) if element.type == "Resource" and isinstance(value, dict) else element.type


def insert_item(holder: dict[str, Any], key: str, index: int, data: Any, extension: Any) -> None:
    holder.setdefault(key, []).insert(index, data)
    extensions = holder.get(f"_{key}")
    if isinstance(extensions, list):
        extensions.insert(index, None)
    set_extension(holder, key, index, extension)


def set_extension(holder: dict[str, Any], key: str, index: int, extension: Any) -> None:
    """Set (or clear, with None) the ``_key`` entry of a repeating primitive's item ``index``."""
    extensions = holder.get(f"_{key}")
    if extension is None and not isinstance(extensions, list):
        return
    if not isinstance(extensions, list):
        extensions = holder[f"_{key}"] = [None] * len(holder[key])
    extensions[index] = extension
    if all(item is None for item in extensions):
        del holder[f"_{key}"]


def remove(holder: dict[str, Any], key: str, index: int | None) -> None:
    if index is None:
        holder.pop(key, None)
        holder.pop(f"_{key}", None)
        return
    del holder[key][index]
    extensions = holder.get(f"_{key}")
    if isinstance(extensions, list):
        del extensions[index]
        if all(item is None for item in extensions):
            del holder[f"_{key}"]
    if not holder[key]:
        del holder[key]


def prune(place: Place) -> None:
    """A delete that empties an element removes it, upwards: FHIR has no empty elements (json.html)."""
    holder = place.holder
    for parent, key, index in reversed(place.chain):
        if holder:
            return
        remove(parent, key, index)
        holder = parent
