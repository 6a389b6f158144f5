"""FHIR XML (R4 xml.html) in and out; the store keeps JSON, so XML is converted at the edge.

* In: the XML is turned into its JSON form (R4 json.html) with the element table
  (``definitions``): which elements repeat, which are resources, which primitives are numbers
  or booleans. Nothing is validated here, so an XML body goes through the validation a JSON
  body does and is told every issue at once; each primitive keeps its text (``1.50`` stays
  ``1.50``). A DTD is refused outright (R4 xml.html: "XML ... SHALL NOT contain a DOCTYPE"), so
  no entity can be expanded.
* Out: fhir.resources gives the element order and structure, then every primitive's ``value``
  is put back from the stored JSON, because fhir.resources writes decimals through ``float``
  (``1.50`` became ``1.5``) and rewrites date-times; R4 datatypes.html#decimal: "the original
  precision should be preserved". The two trees are walked side by side: each FHIR XML element
  is the JSON property of its name, repeated elements the items of its array.
* Elements may nest as deep as JSON may (``json.MAX_DEPTH``): the reading is recursive, and
  libxml2's own limit (256) is past what a deeper body is for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from lxml import etree

from fhir_twin.errors import Invalid
from fhir_twin.fhir.definitions import table
from fhir_twin.fhir.json import MAX_DEPTH, too_deep
from fhir_twin.fhir.resource_types import is_resource_type, model_class

FHIR_NAMESPACE = "http://hl7.org/fhir"
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
# True when some element lies deeper than the limit; evaluated by libxml2, not in Python.
_TOO_DEEP = etree.XPath(f"boolean({'/*' * (MAX_DEPTH + 1)})")


def xml_to_resource(body: bytes) -> dict[str, Any]:
    """Parse a FHIR XML resource into its JSON form; 400 on anything that is not one.

    The JSON is built from the element table (which elements repeat, which are primitives of
    what type), not validated here: it goes through the same validation as a JSON body, so an
    XML body is told every issue too. Decimals keep the digits of their ``value`` attribute.
    """
    try:
        root = etree.fromstring(body, _SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        if exc.code == etree.ErrorTypes.ERR_RESOURCE_LIMIT and "depth" in exc.msg.lower():
            raise too_deep(MAX_DEPTH, "elements") from None
        raise Invalid(f"The body is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise Invalid("FHIR XML must not contain a DOCTYPE declaration")
    if _TOO_DEEP(root):
        raise too_deep(MAX_DEPTH, "elements")
    qname = etree.QName(root)
    if qname.namespace != FHIR_NAMESPACE:
        raise Invalid(f"The root element must be in the FHIR namespace {FHIR_NAMESPACE}")
    if not is_resource_type(qname.localname):
        raise Invalid(f"Unknown resource type {qname.localname!r}")
    return _resource(root)


def _resource(element: Any) -> dict[str, Any]:
    resource_type = element.tag[len(_TAG_PREFIX) :] if element.tag.startswith(_TAG_PREFIX) else element.tag
    return {"resourceType": resource_type, **_complex(element, table()["types"].get(resource_type, {}))}


def _complex(element: Any, elements: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of a complex element (R4 xml.html: ``id`` and an extension's ``url`` are
    attributes; each child element is a property, repeated for arrays)."""
    out: dict[str, Any] = {}
    for attribute in ("id", "url"):
        if element.get(attribute) is not None:
            out[attribute] = element.get(attribute)
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions carry no data
        if child.tag == _XHTML_DIV:
            out["div"] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        name = child.tag[len(_TAG_PREFIX) :] if child.tag.startswith(_TAG_PREFIX) else child.tag
        kind, _, repeats = elements.get(name, (None, None, False))
        if kind == "Resource" or (kind is not None and is_resource_type(kind)):  # <contained><Patient>
            inner = [c for c in child if isinstance(c.tag, str)]
            value, extension = (_resource(inner[0]) if inner else {}), None
        elif kind in table()["types"] or (kind is None and child.get("value") is None):
            # A complex element; an unknown one keeps its content, for validation to name it.
            value, extension = _complex(child, table()["types"].get(kind or "", {})), None
        else:
            value, extension = _primitive(child, kind)
        if repeats:
            values: list[Any] = out.setdefault(name, [])
            if extension is not None:
                extensions: list[Any] = out.setdefault(f"_{name}", [])
                extensions.extend([None] * (len(values) - len(extensions)))
                extensions.append(extension)
            values.append(value)
        else:
            if value is not None:
                out[name] = value
            if extension is not None:
                out[f"_{name}"] = extension
    for name in [key for key in out if key.startswith("_")]:
        extensions = out[name]
        if isinstance(extensions, list):
            extensions.extend([None] * (len(out.get(name[1:], [])) - len(extensions)))
    for name, values in list(out.items()):
        if isinstance(values, list) and f"_{name}" not in out and all(v is None for v in values):
            del out[name]
    return out


def _primitive(element: Any, kind: str | None) -> tuple[Any, dict[str, Any] | None]:
    """A primitive's JSON value and its ``_name`` object (id and extensions), if it has one."""
    text = element.get("value")
    extension = _complex(element, _PRIMITIVE_ELEMENTS) if (element.get("id") is not None or len(element)) else None
    if text is None:
        return None, extension
    if kind == "boolean" and text in ("true", "false"):
        return text == "true", extension
    if kind in ("integer", "unsignedInt", "positiveInt") and _INTEGER.fullmatch(text):
        return int(text), extension
    if kind == "decimal" and _DECIMAL.fullmatch(text):
        return Decimal(text), extension
    return text, extension


# R4 datatypes.html: the lexical forms of integer and decimal (others stay text for validation).
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_XHTML_DIV = "{http://www.w3.org/1999/xhtml}div"
# What a primitive element holds besides its value (R4 json.html#primitive: ``_name``).
_PRIMITIVE_ELEMENTS = {"extension": ("Extension", None, True)}


def resource_to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """Serialise a stored (already valid) resource as FHIR XML."""
    model = model_class(resource["resourceType"]).model_validate(resource)
    text = model.model_dump_xml(pretty_print=pretty)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    root = etree.fromstring(data, _SAFE_PARSER)
    for element, container, key in _primitives(root, resource):
        value = container[key]
        if isinstance(value, bool):
            element.set("value", "true" if value else "false")
        elif isinstance(value, (str, int, Decimal)):
            element.set("value", str(value))
    return etree.tostring(root, encoding="utf-8", xml_declaration=data.startswith(b"<?xml"), pretty_print=pretty)


_TAG_PREFIX = f"{{{FHIR_NAMESPACE}}}"


def _primitives(element: Any, node: dict[str, Any]) -> Iterator[tuple[Any, Any, str | int]]:
    """Each FHIR element with a ``value`` attribute under ``element``, with the JSON container
    and key (or index) of the same value under ``node``, the JSON form of ``element``."""
    seen: dict[str, int] = {}
    for child in element:
        if not isinstance(child.tag, str) or not child.tag.startswith(_TAG_PREFIX):
            continue  # comments, and the XHTML of a narrative
        name = child.tag[len(_TAG_PREFIX) :]
        position = seen.get(name, 0)
        seen[name] = position + 1
        container: Any = node
        key: str | int = name
        value = node.get(name)
        extension = node.get(f"_{name}")
        if isinstance(value, list) or isinstance(extension, list):
            value = _item(value, position)
            extension = _item(extension, position)
            container, key = node.get(name), position
        elif position:
            continue
        if isinstance(value, dict):
            if "resourceType" in value:  # <contained><Patient>...</Patient></contained>
                inner = [c for c in child if isinstance(c.tag, str)]
                if inner:
                    yield from _primitives(inner[0], value)
            else:
                yield from _primitives(child, value)
            continue
        if value is not None and child.get("value") is not None:
            yield child, container, key
        if isinstance(extension, dict):
            yield from _primitives(child, extension)


def _item(value: Any, position: int) -> Any:
    return value[position] if isinstance(value, list) and position < len(value) else None
