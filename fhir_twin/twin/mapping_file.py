"""Reading ``mappings/*.yaml``: marshmallow schemas check each file, errors name file and line.

A mapping file is data a clinician-engineer edits, so a mistake must stop the server at start-up
with a message saying where it is (``vital-signs.yaml, line 12, fields.heart_rate.unit: ...``),
not surface later as a silently empty series. The format is documented in ``mappings/README.md``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
import yaml.constructor
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from fhir_twin.search.fhirpath import check_expression
from fhir_twin.twin.mapping import CaseKind, Code, Conversion, Field, Mapping, Source

_CODE = re.compile(r"^[^|\s]+\|[^|\s]+$")
_DURATION = re.compile(r"^P(?!$)(?:(\d+)Y)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, line and key."""


def _code(value: str) -> Code:
    system, code = value.split("|", 1)
    return system, code


def duration(value: str) -> timedelta:
    """An ISO 8601 duration of years (365 days), weeks, days, hours, minutes and seconds."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an ISO 8601 duration such as PT24H or P1Y")
    years, weeks, days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(days=365 * years + 7 * weeks + days, hours=hours, minutes=minutes, seconds=seconds)


def iso_duration(value: timedelta) -> str:
    """A timedelta written back as ISO 8601: whole days as ``P30D``, else ``PT1H30M`` and seconds."""
    if not value % timedelta(days=1):
        return f"P{value.days}D"
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}H" if hours else "", f"{minutes}M" if minutes else "", f"{seconds}S" if seconds else ""]
    return "PT" + "".join(parts)


def _fraction(value: Any) -> Fraction:
    """A number, or a ratio written as text (``5/9``): exact, so conversions do not drift."""
    if isinstance(value, bool):
        raise ValidationError("must be a number or a ratio such as 5/9")
    try:
        numerator, _, denominator = str(value).strip().partition("/")
        return Fraction(numerator) / Fraction(denominator or 1)
    except (ValueError, ZeroDivisionError):
        raise ValidationError("must be a number or a ratio such as 5/9") from None


class Number(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Fraction:
        return _fraction(value)


class CodeText(fields.String):
    """``system|code``, as in a FHIR token search."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not _CODE.match(text):
            raise ValidationError(f"{text!r} must be written system|code, e.g. http://loinc.org|8867-4")
        return text


class Duration(fields.String):
    # marshmallow types a String's result as str; this one reads the text and returns a timedelta.
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> timedelta:  # type: ignore[override]
        try:
            return duration(super()._deserialize(value, attr, data, **kwargs))
        except ValueError as error:
            raise ValidationError(str(error)) from None


class ConversionSchema(Schema):
    unit = fields.String(required=True, data_key="from")
    factor = Number(required=True)
    offset = Number(load_default=Fraction(0))

    @validates_schema
    def _positive(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["factor"] <= 0:
            raise ValidationError("must be greater than 0", "factor")


class RangeSchema(Schema):
    low = Number(required=True)
    high = Number(required=True)

    @validates_schema
    def _ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["low"] >= data["high"]:
            raise ValidationError("must be greater than low", "high")


class SourceSchema(Schema):
    code = CodeText(required=True)
    component = CodeText(load_default=None)


class AnswersSchema(Schema):
    codes = fields.List(CodeText(), load_default=list)
    texts = fields.List(fields.String(validate=validate.Length(min=1)), load_default=list)


class FieldSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(min=1))
    kind = fields.String(load_default="quantity", validate=validate.OneOf(["quantity", "coded"]))
    unit = fields.String(load_default=None)
    conversions = fields.List(fields.Nested(ConversionSchema), load_default=list)
    plausible = fields.Nested(RangeSchema, load_default=None)
    statuses = fields.List(fields.String(), load_default=lambda: ["final", "amended", "corrected"])
    stale_after = Duration(load_default=None)
    sources = fields.List(fields.Nested(SourceSchema), required=True, validate=validate.Length(min=1))
    answers = fields.Dict(keys=fields.String(), values=fields.Nested(AnswersSchema), load_default=dict)

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["kind"] == "quantity" and not data["unit"]:
            raise ValidationError("a quantity field needs its canonical UCUM unit", "unit")
        if data["kind"] == "coded" and not data["answers"]:
            raise ValidationError("a coded field needs the answers it maps", "answers")
        if data["kind"] == "coded" and (data["conversions"] or data["plausible"]):
            raise ValidationError("a coded field has no units to convert or range to check", "kind")


class CaseKindSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(min=1))
    resource = fields.String(required=True, validate=validate.Regexp(r"^[A-Z][A-Za-z]+$"))
    code = fields.String(required=True)
    status = fields.String(load_default=None)
    start = fields.String(load_default=None)
    end = fields.String(load_default=None)
    removed = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), load_default=dict)
    details = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class MappingFileSchema(Schema):
    fields_ = fields.Dict(
        keys=fields.String(validate=validate.Regexp(_NAME, error="field names are lower_snake_case")),
        values=fields.Nested(FieldSchema),
        load_default=dict,
        data_key="fields",
    )
    case = fields.Dict(
        keys=fields.String(validate=validate.Regexp(_NAME, error="case list names are lower_snake_case")),
        values=fields.Nested(CaseKindSchema),
        load_default=dict,
    )


def load_mappings(directory: Path) -> Mapping:
    """Every ``*.yaml`` file in ``directory``, validated and merged; raises ``MappingError``."""
    if not directory.is_dir():
        raise MappingError(f"{directory}: the mappings folder does not exist")
    twin_fields: dict[str, Field] = {}
    case: dict[str, CaseKind] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name == DEVICE_MAPPINGS:
            continue
        data, root = read_checked(path, MappingFileSchema, "a YAML mapping with 'fields' and/or 'case'")
        for name, spec in data["fields_"].items():
            if name in twin_fields:
                place = where(path, root, ("fields", name))
                raise MappingError(f"{place}: field {name!r} is already defined in {twin_fields[name].file}")
            twin_fields[name] = _field(name, spec, path.name)
        for name, spec in data["case"].items():
            if name in case:
                place = where(path, root, ("case", name))
                raise MappingError(f"{place}: case list {name!r} is already defined in {case[name].file}")
            case[name] = CaseKind(name=name, file=path.name, **_case_kind(spec))
            _check_expressions(case[name], path, root)
    return Mapping(twin_fields, case)


# The device bridge's file (fhir_twin/devices/mapping_file.py) shares the folder, not the format.
DEVICE_MAPPINGS = "devices.yaml"


def where(path: Path, root: yaml.Node | None, keys: tuple[Any, ...]) -> str:
    """``file, line N, a.b.c``: where in a mapping file something is."""
    return f"{path.name}, line {_line_of(root, keys)}, {'.'.join(map(str, keys))}"


LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_checked(path: Path, schema: type[Schema], shape: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """The file's data, loaded by ``schema``, and its node tree (for the line of an error), from one
    parse by libyaml when PyYAML has it. ``shape`` says what the file must be when it is not a YAML
    mapping. Both are shared by every caller that reads the same text: read them only."""
    text = path.read_text(encoding="utf-8")
    try:
        loaded, root = _parsed(text, schema)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise MappingError(f"{path.name}{line}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if loaded is None:
        raise MappingError(f"{path.name}, line 1: a mapping file is {shape}")
    if isinstance(loaded, ValidationError):
        path_keys, message = _first_error(loaded.messages)
        raise MappingError(f"{where(path, root, path_keys)}: {message}")
    return loaded, root


@lru_cache(maxsize=64)
def _parsed(text: str, schema: type[Schema]) -> tuple[dict[str, Any] | ValidationError | None, yaml.Node | None]:
    """Parsed and loaded once per text: every app reads every mapping file when it is built, and one
    process may build many (the test suite builds thousands, at 4 ms a file). None when the text
    is not a YAML mapping."""
    root = yaml.compose(text, Loader=LOADER)
    raw = yaml.constructor.SafeConstructor().construct_document(root) if root is not None else None
    if not isinstance(raw, dict):
        return None, root
    try:
        return schema().load(raw), root
    except ValidationError as error:
        return error, root


def _first_error(messages: Any, prefix: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str]:
    """The first error in marshmallow's nested messages, with the key path to it."""
    if isinstance(messages, dict):
        key = next(iter(messages))
        if key == "_schema":
            return _first_error(messages[key], prefix)
        # Errors on a dict's key come back under "key"; a value's under "value".
        if isinstance(messages[key], dict) and set(messages[key]) <= {"key", "value"}:
            inner = messages[key]
            return _first_error(inner.get("key") or inner["value"], (*prefix, key))
        return _first_error(messages[key], (*prefix, key))
    if isinstance(messages, list) and messages:
        return prefix, str(messages[0])
    return prefix, str(messages)


def _line_of(node: yaml.Node | None, keys: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest node along ``keys`` that exists in the YAML."""
    line = node.start_mark.line + 1 if node is not None else 1
    for key in keys:
        name = "fields" if key == "fields_" else key
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(name)), None)
            if found is None:
                break
            node = found[1]
            line = found[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _field(name: str, spec: dict[str, Any], file: str) -> Field:
    values: dict[Code, str] = {}
    texts: dict[str, str] = {}
    for category, answers in spec["answers"].items():
        values.update((_code(code), category) for code in answers["codes"])
        texts.update((text.casefold(), category) for text in answers["texts"])
    plausible = spec["plausible"]
    return Field(
        name=name,
        label=spec["label"],
        kind=spec["kind"],
        sources=tuple(
            Source(_code(s["code"]), _code(s["component"]) if s["component"] else None) for s in spec["sources"]
        ),
        unit=spec["unit"],
        conversions={c["unit"]: Conversion(c["unit"], c["factor"], c["offset"]) for c in spec["conversions"]},
        plausible=(plausible["low"], plausible["high"]) if plausible else None,
        statuses=frozenset(spec["statuses"]),
        stale_after=spec["stale_after"],
        values=values,
        texts=texts,
        file=file,
    )


def _case_kind(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        **spec,
        "removed": {element: frozenset(codes) for element, codes in spec["removed"].items()},
    }


def _check_expressions(kind: CaseKind, path: Path, root: yaml.Node | None) -> None:
    """Check every FHIRPath expression of ``kind`` now, so a typo fails at start-up."""
    named = {"code": kind.code, "status": kind.status, "start": kind.start, "end": kind.end}
    expressions: list[tuple[tuple[str, ...], str]] = [
        ((element,), expression) for element, expression in named.items() if expression
    ]
    expressions.extend((("removed", element), element) for element in kind.removed)
    expressions.extend((("details", name), expression) for name, expression in kind.details.items())
    for keys, expression in expressions:
        try:
            check_expression(expression, kind.resource)
        except ValueError as error:
            place = where(path, root, ("case", kind.name, *keys))
            raise MappingError(f"{place}: {expression!r} is not a usable FHIRPath expression: {error}") from None
