"""mappings/devices.yaml is checked at start-up: errors name the file, line and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fhir_twin.devices.mapping_file import load_device_mappings
from fhir_twin.twin.mapping_file import MappingError, load_mappings

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

GOOD = """\
devices:
  monitor:
    label: Monitor
    topic: devices/monitor/+/vitals
    device_id: $.deviceId
    time: $.time
    values:
      heart_rate: {path: $.hr, code: http://loinc.org|8867-4, unit: /min}
"""


def folder(tmp_path: Path, devices: str) -> Path:
    shutil.copy(MAPPINGS / "vital-signs.yaml", tmp_path)
    (tmp_path / "devices.yaml").write_text(devices)
    return tmp_path


def load(directory: Path) -> dict[str, object]:
    return dict(load_device_mappings(directory, load_mappings(directory)))


def test_the_shipped_devices_are_a_monitor_and_a_pulse_oximeter() -> None:
    kinds = load_device_mappings(MAPPINGS, load_mappings(MAPPINGS))
    monitor = {(value.code, value.unit) for value in kinds["vital_signs_monitor"].values}
    assert monitor == {
        ("8867-4", "/min"),
        ("59408-5", "%"),
        ("9279-1", "/min"),
        ("8480-6", "mm[Hg]"),
        ("8462-4", "mm[Hg]"),
        ("8310-5", "Cel"),
    }
    assert {value.code for value in kinds["pulse_oximeter"].values} == {"59408-5", "8867-4"}


def test_the_twin_does_not_read_devices_yaml_as_its_own(tmp_path: Path) -> None:
    directory = folder(tmp_path, GOOD)
    assert "heart_rate" in load_mappings(directory).fields
    assert list(load(directory)) == ["monitor"]


VALUE = r"devices\.yaml, line 8, devices\.monitor\.values\.heart_rate"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("unit: /min}", "unit: kg}", VALUE + r": the twin reads http://loinc.org\|8867-4 in .*, not 'kg'"),
        ("org|8867-4", "org|1-8", VALUE + r": no twin field reads http://loinc.org\|1-8"),
        ("path: $.hr", "path: '$.hr['", VALUE + r"\.path: '\$\.hr\[' is not a JSONPath expression"),
        (
            "devices/monitor/+/vitals",
            "devices/#/vitals",
            r"devices\.yaml, line 4, devices\.monitor\.topic: not an MQTT",
        ),
        ("    label: Monitor\n", "", r"devices\.yaml, line 2, devices\.monitor\.label: Missing data"),
    ],
)
def test_a_mistake_is_named_by_file_line_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        load(folder(tmp_path, GOOD.replace(old, new)))


def test_a_bad_devices_file_stops_the_server(make_app: object, tmp_path: Path) -> None:
    with pytest.raises(MappingError, match=r"^devices\.yaml, line 8"):
        make_app(mappings_dir=str(folder(tmp_path, GOOD.replace("unit: /min}", "unit: kg}"))))  # type: ignore[operator]
