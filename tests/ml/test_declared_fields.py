"""The Body fields the models read are declared, and checked against the mapping at start-up: a
mapping that renames a field, stops feeding it from the model's code or keeps it in another unit
stops the server with an error naming the model and the field (docs/clinical-safety.md, H25)."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_twin import app as app_module
from fhir_twin import cli
from fhir_twin.app import services_of
from fhir_twin.config import Config
from fhir_twin.ml import fields
from fhir_twin.ml.catalog import LEARNED
from fhir_twin.ml.fields import UnmappedField
from fhir_twin.ml.runners import rule_based
from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.mapping_file import MappingError, load_mappings

SHIPPED = Path(Config().resolved_mappings_dir)


def _copy(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """The shipped mappings folder, with ``old`` replaced by ``new`` (once) in ``file``."""
    folder = tmp_path / "mappings"
    shutil.copytree(SHIPPED, folder)
    text = (folder / file).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    (folder / file).write_text(text.replace(old, new), encoding="utf-8")
    return folder


def _with_field(mapping: Mapping, name: str, **changes: Any) -> Mapping:
    found = dict(mapping.fields)
    found[name] = dataclasses.replace(found[name], **changes)
    return Mapping(found, mapping.case)


def test_the_shipped_mappings_define_every_field_a_model_reads(make_app: Any) -> None:
    mapping = load_mappings(SHIPPED)
    for runner in rule_based(timedelta(hours=1)):
        assert runner.reads, runner.model.id
        fields.check(runner.model.id, runner.reads, mapping)
    doctor = services_of(make_app()).doctor
    assert {runner.model.id for runner in doctor.runners()} == {
        "news2",
        "qsofa",
        "pooled-cohort-ascvd",
        "atp3-hard-chd",
    }


def test_a_renamed_field_stops_the_server_naming_model_and_field(database_url: str, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "laboratory.yaml", "  hdl_cholesterol:\n", "  hdl:\n")
    with pytest.raises(UnmappedField) as raised:
        app_module.create_app({"database_url": database_url, "mappings_dir": str(folder)})
    assert str(raised.value).startswith(
        "Model pooled-cohort-ascvd reads the Body field 'hdl_cholesterol', which no mapping file defines"
    )
    assert isinstance(raised.value, MappingError)


def test_a_command_reports_a_renamed_field_as_its_error(database_url: str, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "vital-signs.yaml", "  heart_rate:\n", "  pulse_rate:\n")
    result = CliRunner().invoke(
        cli.main, ["assess", "--database", database_url], env={"FHIR_TWIN_MAPPINGS_DIR": str(folder)}
    )
    assert result.exit_code == 1, result.output
    assert "Model news2 reads the Body field 'heart_rate', which no mapping file defines" in result.output
    assert "Traceback" not in result.output


def test_a_field_fed_by_other_codes_stops_the_server(database_url: str, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "laboratory.yaml", "      - code: http://loinc.org|2085-9\n", "")
    with pytest.raises(UnmappedField, match=r"^Model pooled-cohort-ascvd reads the Body field 'hdl_cholesterol' as "):
        app_module.create_app({"database_url": database_url, "mappings_dir": str(folder)})


def test_a_field_in_another_unit_stops_the_check() -> None:
    mapping = _with_field(load_mappings(SHIPPED), "systolic_bp", unit="kPa")
    with pytest.raises(UnmappedField) as raised:
        fields.check("news2", (fields.SYSTOLIC_BP,), mapping)
    assert str(raised.value) == (
        "Model news2 reads the Body field 'systolic_bp' in mm[Hg], but vital-signs.yaml keeps it in kPa"
    )


def test_a_learned_model_is_checked_before_any_version_is_active(make_app: Any) -> None:
    """No version of incident-diabetes is trained, yet a mapping without the glucose it reads is refused."""
    catalog = services_of(make_app()).catalog
    assert "incident-diabetes" not in {runner.model.id for runner in catalog.runners()}
    mapping = load_mappings(SHIPPED)
    without = Mapping({name: found for name, found in mapping.fields.items() if name != "glucose"}, mapping.case)
    with pytest.raises(UnmappedField, match=r"^Model incident-diabetes reads the Body field 'glucose', which no "):
        catalog.check(without)
    assert LEARNED["incident-diabetes"].runner is not None


def test_every_model_that_runs_on_patients_reads_a_body_field() -> None:
    """A new Patient whose twin holds no facts is not queued for the Doctor (docs/clinical-safety.md,
    H26): that is sound while every model that runs on patients reads some measurement."""
    for runner in rule_based(timedelta(hours=1)):
        assert runner.reads, runner.model.id
    for model_id, entry in LEARNED.items():
        if entry.runner is not None:
            assert entry.reads, model_id
