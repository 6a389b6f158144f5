"""FHIR XML (R4 xml.html) read and written through fhir.resources' XML support.

The store keeps JSON; XML is converted at the edge. A DTD is refused outright (R4 xml.html:
"XML ... SHALL NOT contain a DOCTYPE") so no entity can be expanded.

Decimals keep their digits both ways (R4 datatypes.html#decimal: "the original precision should
be preserved"), as in JSON: fhir.resources passes them through ``float`` (``1.50`` becomes
``1.5``), so each decimal's text is put back from the other side. XML is written with the
digits of the JSON the store serves, and JSON is made from XML with the digits the XML gave.
The two trees are walked side by side: each FHIR XML element is the JSON property of its name,
repeated elements are the items of its array (R4 json.html, xml.html).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import simplejson
from lxml import etree
from pydantic import ValidationError

from fhir_twin.errors import Invalid
from fhir_twin.fhir.model import is_resource_type, model_class

FHIR_NAMESPACE = "http://hl7.org/fhir"
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def xml_to_resource(body: bytes) -> dict[str, Any]:
    """Parse a FHIR XML resource into its JSON form; 400 on anything that is not one."""
    try:
        root = etree.fromstring(body, _SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise Invalid(f"The body is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise Invalid("FHIR XML must not contain a DOCTYPE declaration")
    qname = etree.QName(root)
    if qname.namespace != FHIR_NAMESPACE:
        raise Invalid(f"The root element must be in the FHIR namespace {FHIR_NAMESPACE}")
    if not is_resource_type(qname.localname):
        raise Invalid(f"Unknown resource type {qname.localname!r}")
    try:
        model = model_class(qname.localname).model_validate_xml(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Invalid(f"{qname.localname}.{where}: {first.get('msg')}") from None
    except KeyError as exc:
        raise Invalid(f"Unknown element {exc.args[0]!r} in {qname.localname}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise Invalid(f"The XML is not a valid {qname.localname}: {exc}") from None
    resource: dict[str, Any] = simplejson.loads(model.model_dump_json(), use_decimal=True)
    for element, container, key in _primitives(root, resource):
        value = container[key]
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            try:
                container[key] = Decimal(element.get("value"))
            except InvalidOperation:
                continue
    return resource


def resource_to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """Serialise a stored (already valid) resource as FHIR XML."""
    model = model_class(resource["resourceType"]).model_validate(resource)
    text = model.model_dump_xml(pretty_print=pretty)
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    if not _has_number(resource):
        return data
    root = etree.fromstring(data, _SAFE_PARSER)
    for element, container, key in _primitives(root, resource):
        value = container[key]
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
            element.set("value", str(value))
    return etree.tostring(root, encoding="utf-8", xml_declaration=data.startswith(b"<?xml"), pretty_print=pretty)


def _has_number(value: Any) -> bool:
    """Whether a number is anywhere in ``value`` (most resources have none: no second pass)."""
    if isinstance(value, dict):
        return any(_has_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_number(v) for v in value)
    return isinstance(value, (int, Decimal)) and not isinstance(value, bool)


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
