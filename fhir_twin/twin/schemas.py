"""marshmallow schemas of the twin API's JSON documents (README "The twin API")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from marshmallow import Schema, fields

from fhir_twin.fhir.instant import format_instant
from fhir_twin.twin.mapping_file import iso_duration


class Instant(fields.Field):
    """A naive-UTC datetime written as a FHIR instant, like every time the server shows."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return format_instant(value) if value is not None else None


class Duration(fields.Field):
    """A timedelta as an ISO 8601 duration: days (P30D), or hours and minutes (PT12H, PT90M as PT1H30M)."""

    def _serialize(self, value: timedelta | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return iso_duration(value) if value is not None else None


class PointSchema(Schema):
    time = Instant()
    value = fields.Float(allow_none=True)
    category = fields.String(allow_none=True)
    unit = fields.String(allow_none=True)
    original_value = fields.String(data_key="originalValue", allow_none=True)
    original_unit = fields.String(data_key="originalUnit", allow_none=True)
    converted = fields.Boolean()
    flag = fields.String(allow_none=True)
    source = fields.String()
    duplicates = fields.Integer()


class FieldStateSchema(Schema):
    label = fields.String(attribute="field.label")
    kind = fields.String(attribute="field.kind")
    unit = fields.String(attribute="field.unit", allow_none=True)
    stale_after = Duration(attribute="field.stale_after", data_key="staleAfter")
    count = fields.Integer()
    stale = fields.Boolean(allow_none=True)
    latest = fields.Nested(PointSchema, allow_none=True)
    # The newest reading when it is newer than ``latest`` and flagged: a reader must verify it.
    unverified = fields.Nested(PointSchema, allow_none=True)


class PatientSummarySchema(Schema):
    id = fields.String()
    source = fields.String()
    gender = fields.String(allow_none=True)
    birth_date = fields.String(data_key="birthDate", allow_none=True)
    age = fields.Integer(allow_none=True)
    deceased = fields.Boolean()
    race = fields.String(allow_none=True)


class CaseItemSchema(Schema):
    source = fields.String()
    code = fields.String(allow_none=True)
    display = fields.String(allow_none=True)
    status = fields.String(allow_none=True)
    start = Instant()
    end = Instant()
    details = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    results = fields.List(fields.Dict())


class FieldQualitySchema(Schema):
    total = fields.Integer()
    used = fields.Integer()
    converted = fields.Integer()
    duplicates = fields.Integer()
    flagged = fields.Dict(keys=fields.String(), values=fields.Integer())
    completeness = fields.Float()


class QualitySchema(Schema):
    used = fields.Integer()
    converted = fields.Integer()
    flagged = fields.Integer()
    duplicates = fields.Integer()
    missing = fields.List(fields.String())
    completeness = fields.Float()
    fields_ = fields.Dict(
        keys=fields.String(), values=fields.Nested(FieldQualitySchema), attribute="fields", data_key="fields"
    )


class TwinSchema(Schema):
    patient = fields.Nested(PatientSummarySchema)
    at = Instant()
    recorded = Instant()
    reference_time = Instant(data_key="referenceTime")
    body = fields.Dict(keys=fields.String(), values=fields.Nested(FieldStateSchema))
    case = fields.Dict(keys=fields.String(), values=fields.List(fields.Nested(CaseItemSchema)))
    quality = fields.Nested(QualitySchema)


class SeriesSchema(Schema):
    patient = fields.String()
    field = fields.String(attribute="field.name")
    label = fields.String(attribute="field.label")
    kind = fields.String(attribute="field.kind")
    unit = fields.String(attribute="field.unit", allow_none=True)
    start = Instant(data_key="from")
    end = Instant(data_key="to")
    at = Instant()
    recorded = Instant()
    points = fields.List(fields.Nested(PointSchema))


class MeasuredFieldSchema(Schema):
    field = fields.String(attribute="name")
    label = fields.String()
    kind = fields.String()
    unit = fields.String(allow_none=True)


class MeasuredSchema(Schema):
    """The fields of a patient's series (``GET /twin/patients/{id}/series``)."""

    patient = fields.String()
    at = Instant()
    recorded = Instant()
    fields_ = fields.List(fields.Nested(MeasuredFieldSchema), attribute="fields", data_key="fields")
