"""FHIR XML (R4 xml.html) read and written through fhir.resources' XML support.

The store keeps JSON; XML is converted at the edge. A DTD is refused outright (R4 xml.html:
"XML ... SHALL NOT contain a DOCTYPE") so no entity can be expanded. Elements may nest as deep
as JSON may (``json.MAX_DEPTH``): fhir.resources reads XML recursively, and libxml2's own
limit (256) is past what that recursion survives.
"""

from __future__ import annotations

from typing import Any

import simplejson
from lxml import etree
from pydantic import ValidationError

from fhir_twin.errors import Invalid
from fhir_twin.fhir.json import MAX_DEPTH, too_deep
from fhir_twin.fhir.model import is_resource_type, model_class

FHIR_NAMESPACE = "http://hl7.org/fhir"
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
# True when some element lies deeper than the limit; evaluated by libxml2, not in Python.
_TOO_DEEP = etree.XPath(f"boolean({'/*' * (MAX_DEPTH + 1)})")


def xml_to_resource(body: bytes) -> dict[str, Any]:
    """Parse a FHIR XML resource into its JSON form; 400 on anything that is not one."""
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
    return simplejson.loads(model.model_dump_json(), use_decimal=True)


def resource_to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """Serialise a stored (already valid) resource as FHIR XML."""
    model = model_class(resource["resourceType"]).model_validate(resource)
    text = model.model_dump_xml(pretty_print=pretty)
    return text if isinstance(text, bytes) else text.encode("utf-8")
