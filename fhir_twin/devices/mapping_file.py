"""Reading ``mappings/devices.yaml``: per kind of device, where its messages arrive and how each
value in them becomes an Observation (the MedTech service's device mapping templates, in YAML).

Checked at start-up with marshmallow, as the twin's mappings are, and errors name the file, line
and key. A value's code and unit must be ones a twin field takes, so every reading a device sends
reaches the Digital Body (``mappings/vital-signs.yaml``) rather than a series nobody reads; a
``sampled`` value (a waveform) is the exception, as no twin field holds a waveform.

Each value is grouped (the MedTech service's FHIR destination ``periodInterval``): ``each`` reading
its own Observation, ``window`` a mean per fixed window, ``sampled`` the window's readings as
``valueSampledData`` (``devices/window.py``). A kind's ``grouping``, ``window`` and ``lateness``
are its values' defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse
from marshmallow import Schema, ValidationError, fields, validate

from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.mapping_file import DEVICE_MAPPINGS, CodeText, MappingError, read_checked, where

_NAME = r"^[a-z][a-z0-9_]*$"
# An MQTT topic filter (MQTT 3.1.1 section 4.7): '+' a whole level, '#' only as the last level.
_TOPIC = r"^(?!/)(?:[^#+/]+|\+)(?:/(?:[^#+/]+|\+))*(?:/#)?$"
GROUPINGS = ("each", "window", "sampled")
_SECONDS = validate.Range(min=1, max=3600)


class Path_(fields.String):
    """A JSONPath expression, compiled; a typo fails here, at start-up."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> JSONPath:  # type: ignore[override]
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return _compiled(text)
        except (JsonPathLexerError, JsonPathParserError, Exception) as error:
            raise ValidationError(f"{text!r} is not a JSONPath expression: {error}") from None


# Each app a process builds reads the same devices.yaml: a path is compiled once (JSONPath objects
# are only read), not once per app.
_compiled = lru_cache(maxsize=1024)(parse)


class ValueSchema(Schema):
    path = Path_(required=True)
    code = CodeText(required=True)
    unit = fields.String(required=True, validate=validate.Length(min=1))
    grouping = fields.String(validate=validate.OneOf(GROUPINGS))
    window = fields.Integer(strict=True, validate=_SECONDS)  # seconds
    lateness = fields.Integer(strict=True, validate=validate.Range(min=0, max=3600))  # seconds
    period = fields.Integer(strict=True, validate=validate.Range(min=1))  # ms between samples


class DeviceKindSchema(Schema):
    label = fields.String(required=True, validate=validate.Length(min=1))
    topic = fields.String(required=True, validate=validate.Regexp(_TOPIC, error="not an MQTT topic filter"))
    device_id = Path_(required=True)
    time = Path_(required=True)
    grouping = fields.String(load_default="each", validate=validate.OneOf(GROUPINGS))
    window = fields.Integer(strict=True, load_default=60, validate=_SECONDS)
    lateness = fields.Integer(strict=True, load_default=5, validate=validate.Range(min=0, max=3600))
    values = fields.Dict(
        keys=fields.String(validate=validate.Regexp(_NAME, error="value names are lower_snake_case")),
        values=fields.Nested(ValueSchema),
        required=True,
        validate=validate.Length(min=1),
    )


class DeviceFileSchema(Schema):
    devices = fields.Dict(
        keys=fields.String(validate=validate.Regexp(_NAME, error="device kinds are lower_snake_case")),
        values=fields.Nested(DeviceKindSchema),
        required=True,
    )


@dataclass(frozen=True)
class DeviceValue:
    name: str
    path: JSONPath
    system: str
    code: str
    unit: str
    grouping: str = "each"
    window: int = 60  # seconds, aligned on the epoch
    lateness: int = 5  # seconds a window waits, after its end and its last reading, for late ones
    period: int | None = None  # ms between samples (``sampled``)


@dataclass(frozen=True)
class DeviceKind:
    """One kind of device: its topic filter (under the bridge's prefix) and how to read a message."""

    name: str
    label: str
    topic: str
    device_id: JSONPath
    time: JSONPath
    values: tuple[DeviceValue, ...]


def load_device_mappings(directory: Path, twin: Mapping) -> dict[str, DeviceKind]:
    """``devices.yaml`` in ``directory``, checked against the twin's fields; none if it is absent."""
    path = directory / DEVICE_MAPPINGS
    if not path.is_file():
        return {}
    data, root = read_checked(path, DeviceFileSchema, "a YAML mapping with 'devices'")
    kinds = {}
    for name, spec in data["devices"].items():
        values = []
        for value_name, value in spec["values"].items():
            system, code = value["code"].split("|", 1)
            keys = ("devices", name, "values", value_name)
            grouping = value.get("grouping", spec["grouping"])
            window = value.get("window", spec["window"])
            period = value.get("period")
            if grouping == "sampled":
                _check_sampling(period, window, path, root, keys)
            else:
                if period is not None:
                    raise MappingError(f"{where(path, root, (*keys, 'period'))}: only a sampled value has a period")
                _check_twin_reads(twin, system, code, value["unit"], where(path, root, keys))
            values.append(
                DeviceValue(
                    value_name,
                    value["path"],
                    system,
                    code,
                    value["unit"],
                    grouping,
                    window,
                    value.get("lateness", spec["lateness"]),
                    period,
                )
            )
        kinds[name] = DeviceKind(name, spec["label"], spec["topic"], spec["device_id"], spec["time"], tuple(values))
    return kinds


def _check_sampling(period: int | None, window: int, path: Path, root: Any, keys: tuple[str, ...]) -> None:
    """A sampled value needs its sampling period, and a window holding a whole number of samples."""
    if period is None:
        raise MappingError(f"{where(path, root, keys)}: a sampled value needs its period (ms between samples)")
    if (window * 1000) % period:
        raise MappingError(f"{where(path, root, (*keys, 'period'))}: {window} s is not a whole number of {period} ms")


def _check_twin_reads(twin: Mapping, system: str, code: str, unit: str, place: str) -> None:
    """A stand-alone Observation of ``code`` in ``unit`` must feed a twin field, unconverted or by
    one of its conversions."""
    fed = [field for field, source in twin.by_code.get((system, code), []) if source.component is None]
    if not fed:
        raise MappingError(f"{place}: no twin field reads {system}|{code} (see the twin's mappings)")
    if not any(unit == field.unit or unit in field.conversions for field in fed):
        units = sorted({field.unit or "" for field in fed} | {u for field in fed for u in field.conversions})
        raise MappingError(f"{place}: the twin reads {system}|{code} in {', '.join(units)}, not {unit!r}")
