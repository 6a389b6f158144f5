"""The Body fields the Digital Doctor's models read, declared once, and checked against the mapping.

A model reads a twin field by the mapping's name; a field the mapping does not define reads as
never recorded, so a renamed field would silently turn a score into "insufficient data"
(docs/clinical-safety.md, H25). Each runner therefore declares the fields it reads (``reads``),
each with the code that must feed it and the canonical unit its values must be in where the model
depends on them, and ``check`` stops the server at start-up (``Doctor``) on any that the loaded
``Mapping`` does not define so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fhir_twin.ml import codes
from fhir_twin.ml.codes import Coding
from fhir_twin.ml.scores.score import Input
from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.mapping_file import MappingError


class UnmappedField(MappingError):
    """A model reads a Body field that the mapping does not define as the model expects; the message
    names the model and the field."""


@dataclass(frozen=True)
class BodyField:
    """A Body field a model reads: its name in the mapping, the code that must feed it, and the
    canonical unit the model takes its values in (None: a coded field)."""

    name: str
    code: Coding
    unit: str | None = None

    def input(self) -> Input:
        """The field as a model input of the same name (its model card row)."""
        return Input(self.name, self.code.token)


HEART_RATE = BodyField("heart_rate", codes.HEART_RATE, "/min")
RESPIRATORY_RATE = BodyField("respiratory_rate", codes.RESPIRATORY_RATE, "/min")
SYSTOLIC_BP = BodyField("systolic_bp", codes.SYSTOLIC_BP, "mm[Hg]")
BODY_TEMPERATURE = BodyField("body_temperature", codes.BODY_TEMPERATURE, "Cel")
OXYGEN_SATURATION = BodyField("oxygen_saturation", codes.SPO2, "%")
INSPIRED_OXYGEN = BodyField("inspired_oxygen", codes.INHALED_OXYGEN_CONCENTRATION, "%")
OXYGEN_FLOW = BodyField("oxygen_flow", codes.INHALED_OXYGEN_FLOW, "L/min")
CONSCIOUSNESS = BodyField("consciousness", codes.RESPONSIVENESS)
GCS = BodyField("gcs", codes.GCS_TOTAL, "{score}")
BMI = BodyField("bmi", codes.BMI, "kg/m2")
GLUCOSE = BodyField("glucose", codes.GLUCOSE, "mg/dL")
FASTING_GLUCOSE = BodyField("fasting_glucose", codes.FASTING_GLUCOSE, "mg/dL")
HBA1C = BodyField("hba1c", codes.HBA1C, "%")
TOTAL_CHOLESTEROL = BodyField("total_cholesterol", codes.TOTAL_CHOLESTEROL, "mg/dL")
HDL_CHOLESTEROL = BodyField("hdl_cholesterol", codes.HDL_CHOLESTEROL, "mg/dL")
LDL_CHOLESTEROL = BodyField("ldl_cholesterol", codes.LDL_CHOLESTEROL, "mg/dL")
SMOKING_STATUS = BodyField("smoking_status", codes.SMOKING_STATUS)


def names(reads: Iterable[BodyField]) -> tuple[str, ...]:
    """The fields' names: what ``$whatif`` may change and ``/twin/models`` lists."""
    return tuple(read.name for read in reads)


def check(model_id: str, reads: Iterable[BodyField], mapping: Mapping) -> None:
    """Raise ``UnmappedField`` for the first field of ``reads`` the mapping does not define, does not
    feed from the field's code, or keeps in another unit (or as a quantity where a code is read)."""
    for read in reads:
        defined = mapping.fields.get(read.name)
        if defined is None:
            raise UnmappedField(
                f"Model {model_id} reads the Body field {read.name!r}, which no mapping file defines "
                f"(expected from {read.code.token}, {read.code.display})"
            )
        fed = {source.component or source.code for source in defined.sources}
        if (read.code.system, read.code.code) not in fed:
            raise UnmappedField(
                f"Model {model_id} reads the Body field {read.name!r} as {read.code.token} ({read.code.display}), "
                f"but {defined.file or 'its mapping file'} does not feed it from that code"
            )
        if defined.unit != read.unit:
            raise UnmappedField(
                f"Model {model_id} reads the Body field {read.name!r} in {read.unit or 'codes'}, but "
                f"{defined.file or 'its mapping file'} keeps it in {defined.unit or 'codes'}"
            )
