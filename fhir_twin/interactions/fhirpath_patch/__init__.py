"""FHIRPath Patch (R4 fhirpatch.html): a ``Parameters`` resource whose ``operation`` parameters
add, insert, delete, replace and move the elements a FHIRPath ``path`` names.

fhirpathpy evaluates each path. Every element it selects carries ``propName``, where it sits in the
JSON (``Patient.contact[0].name``); ``_locate`` follows that down the resource with the element
table to the object and key that hold it, so the operation changes the very element the path
named, choice elements (``Observation.value`` held as ``valueQuantity``) included.

The rules of fhirpatch.html: the path selects a single element (for insert and move, the whole of
one list); selecting nothing is an error except for delete; the value's type must fit the element
it goes to. A malformed Parameters is a 400 naming the parameter; an operation that cannot be
applied a 422 naming the operation and why. Nothing is applied unless every operation is.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.fhir.definitions import table
from fhir_twin.fhir.elements import Element, elements
from fhir_twin.interactions.fhirpath_patch.parameters import Operation, Value, operations, parameter_at, value_of
from fhir_twin.interactions.fhirpath_patch.place import (
    Place,
    insert_item,
    prune,
    remove,
    select,
    set_extension,
    single,
    type_of,
    value_at,
    whole_list,
)
from fhir_twin.search.fhirpath.results import PARENT

__all__ = ["Operation", "apply", "operations"]


def apply(patch: list[Operation], resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` with every operation applied in order (changed in place and returned)."""
    for operation in patch:
        _APPLY[operation.type](operation, resource)
    return resource


def _add(operation: Operation, resource: dict[str, Any]) -> None:
    """Add the named child to the one element the path selects; a repeating one is appended to."""
    place = single(operation, resource, select(operation, resource))
    target = resource if place is None else value_at(place)
    if not isinstance(target, dict):
        raise operation.refuse("the path selects a primitive value, which has no named children to add")
    target_type = resource["resourceType"] if place is None else type_of(place.element, target)
    assert operation.name is not None and operation.value is not None
    key, element = _child(operation, target_type, operation.name, operation.value)
    data = _data(operation, operation.value, element)
    if element.repeats:
        insert_item(target, key, len(target.get(key, [])), data, operation.value.extension)
        return
    taken = [name for name in _choice_keys(target_type, key) if name in target or f"_{name}" in target]
    if taken:
        raise operation.refuse(f"{target_type}.{taken[0]} already exists; add does not overwrite, replace does")
    target[key] = data
    if operation.value.extension is not None:
        target[f"_{key}"] = operation.value.extension


def _insert(operation: Operation, resource: dict[str, Any]) -> None:
    """Insert the value into the list the path selects, at ``index`` (0 to the list's length)."""
    place = whole_list(operation, resource)
    assert operation.index is not None and operation.value is not None
    if operation.index > len(place.items):
        raise operation.refuse(f"index {operation.index} is past the end of the list of {len(place.items)}")
    key, element = _fit(operation, place)
    insert_item(
        place.holder, key, operation.index, _data(operation, operation.value, element), operation.value.extension
    )


def _delete(operation: Operation, resource: dict[str, Any]) -> None:
    """Delete the one element the path selects; a path selecting nothing deletes nothing."""
    nodes = select(operation, resource)
    if not nodes:
        return
    place = single(operation, resource, nodes)
    if place is None:
        raise operation.refuse("the path selects the resource itself, which a patch cannot delete")
    remove(place.holder, place.key, place.index)
    prune(place)


def _replace(operation: Operation, resource: dict[str, Any]) -> None:
    """Replace the one element the path selects with the value (for a choice element, of any of its types)."""
    place = single(operation, resource, select(operation, resource))
    if place is None:
        raise operation.refuse("the path selects the resource itself, which a patch cannot replace")
    assert operation.value is not None
    key, element = _fit(operation, place)
    data, extension = _data(operation, operation.value, element), operation.value.extension
    if place.index is not None:
        place.items[place.index] = data
        set_extension(place.holder, key, place.index, extension)
        return
    # Rebuilt in order, so the stored JSON keeps its element order when a choice changes type.
    rebuilt: dict[str, Any] = {}
    for name, held in place.holder.items():
        if name not in (place.key, f"_{place.key}"):
            rebuilt[name] = held
        elif key not in rebuilt:
            rebuilt[key] = data
            if extension is not None:
                rebuilt[f"_{key}"] = extension
    place.holder.clear()
    place.holder.update(rebuilt)


def _move(operation: Operation, resource: dict[str, Any]) -> None:
    """Move an item of the list the path selects from ``source`` to ``destination``."""
    place = whole_list(operation, resource)
    assert operation.source is not None and operation.destination is not None
    for name, index in (("source", operation.source), ("destination", operation.destination)):
        if index >= len(place.items):
            raise operation.refuse(f"{name} {index} is past the end of the list of {len(place.items)}")
    extensions = place.holder.get(f"_{place.key}")
    for items in (place.items, extensions if isinstance(extensions, list) else None):
        if items is not None:
            items.insert(operation.destination, items.pop(operation.source))


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}


def _choice_keys(holder_type: str, key: str) -> list[str]:
    """The JSON names of the element ``key`` is one of: all of a choice element's, else itself."""
    for keys in table()["choices"].get(holder_type, {}).values():
        if key in keys:
            return [str(name) for name in keys]
    return [key]


def _child(operation: Operation, holder_type: str, name: str, value: Value) -> tuple[str, Element]:
    """The JSON name and element of ``holder_type``'s child ``name`` that ``value`` fits."""
    known = elements(holder_type) or {}
    choices = table()["choices"].get(holder_type, {}).get(f"{name}[x]")
    candidates = [str(key) for key in choices] if choices else [name] if name in known else []
    if not candidates:
        raise operation.refuse(f"{holder_type} has no element {name!r}")
    for key in sorted(candidates, key=lambda key: known[key].type != value.type):
        if _fits(value, known[key]):
            return key, known[key]
    types = ", ".join(known[key].type for key in candidates)
    raise operation.refuse(f"a {value.type or 'set of parts'} does not fit {holder_type}.{name} ({types})")


def _fit(operation: Operation, place: Place) -> tuple[str, Element]:
    """The JSON name and element the value goes to at ``place``: a choice element may change type."""
    assert operation.value is not None
    base = place.key
    choices = table()["choices"].get(place.holder_type, {})
    for choice, keys in choices.items():
        if place.key in keys:
            base = choice.removesuffix("[x]")
    return _child(operation, place.holder_type, base, operation.value)


def _fits(value: Value, element: Element) -> bool:
    """The value's type is the element's, a specialisation of it (``code`` for ``string``), or the
    general type of a specialised element (``string`` for ``code``: validation then judges the text).
    Parts fit any complex element, a resource an element of type Resource."""
    if value.type is None:
        return not element.primitive and element.type != "Resource"
    if element.type == "Resource":
        return isinstance(value.data, dict) and "resourceType" in value.data
    return element.type in (value.type, PARENT.get(value.type)) or PARENT.get(element.type) == value.type


def _data(operation: Operation, value: Value, element: Element) -> Any:
    """The JSON the value stands for; parts are assembled into an object of the element's type."""
    if value.type is not None:
        return value.data
    built: dict[str, Any] = {}
    for number, part in enumerate(value.data):
        name = part.get("name")
        inner = value_of(part, f"{parameter_at(operation.number)}.part(value).part[{number}]")
        key, child = _child(operation, element.type, name, inner)
        data = _data(operation, inner, child)
        if child.repeats:
            insert_item(built, key, len(built.get(key, [])), data, inner.extension)
        elif key in built:
            raise operation.refuse(
                f"the value has more than one {name!r} part, and {element.type}.{name} does not repeat"
            )
        else:
            built[key] = data
            if inner.extension is not None:
                built[f"_{key}"] = inner.extension
    if not built:
        raise operation.refuse("the value has no parts")
    return built
