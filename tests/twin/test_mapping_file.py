"""Loading ``mappings/*.yaml``: the shipped folder gives the twin its 22 fields and 7 case lists,
and a mapping mistake stops the server and ``fhir-twin twin rebuild`` at start-up with the file,
line and key path, instead of surfacing later as a silently empty series."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_twin import cli
from fhir_twin.app import create_app
from fhir_twin.twin.mapping import Conversion, Source
from fhir_twin.twin.mapping_file import MappingError, duration, iso_duration, load_mappings

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"

# Every LOINC code the twin is documented to read (observation codes and panel components).
LOINC_CODES = (
    "8867-4", "9279-1", "85354-9", "55284-4", "8480-6", "8462-4", "8310-5", "2708-6", "59408-5", "29463-7",
    "8302-2", "39156-5", "67775-7", "2339-0", "2345-7", "15074-8", "4548-4", "2093-3", "2085-9", "18262-6",
    "13457-7", "2571-8", "2160-0", "38483-4", "72166-2", "1558-6", "14771-0",
)  # fmt: skip

# A valid one-field file; each bad file below breaks it in one place. Lines, 1-based:
# 1 fields: / 2 heart_rate: / 3 label / 4 unit / 5 plausible / 6 stale_after / 7 sources: / 8 - code
VALID = """\
fields:
  heart_rate:
    label: Heart rate
    unit: /min
    plausible: {low: 20, high: 300}
    stale_after: PT24H
    sources:
      - code: http://loinc.org|8867-4
"""

CASE_LIST = """\
case:
  conditions:
    label: Problems
    resource: Condition
    code: {code}
    status: Condition.clinicalStatus
"""


def test_the_shipped_mappings_load() -> None:
    mapping = load_mappings(MAPPINGS)
    assert len(mapping.fields) == 22
    assert sorted(mapping.case) == [
        "care_plans", "conditions", "diagnostic_reports", "encounters", "goals", "medications", "procedures",
    ]  # fmt: skip
    loinc = {
        code
        for twin_field in mapping.fields.values()
        for source in twin_field.sources
        for system, code in (source.code, *((source.component,) if source.component else ()))
        if system == LOINC
    }
    assert [code for code in LOINC_CODES if code not in loinc] == []
    assert mapping.types == {
        "Observation", "Condition", "DiagnosticReport", "Encounter", "Procedure", "MedicationRequest", "CarePlan",
        "Goal",
    }  # fmt: skip


def test_the_shipped_mappings_say_what_their_comments_say() -> None:
    """Spot checks of parsed values against the YAML: exact ratios, offsets, durations, answers."""
    fields = load_mappings(MAPPINGS).fields
    temperature = fields["body_temperature"]
    assert (temperature.unit, temperature.plausible) == ("Cel", (Fraction(10), Fraction(47)))
    assert fields["body_weight"].plausible == (Fraction(1, 10), Fraction(650))
    assert temperature.conversions == {"[degF]": Conversion("[degF]", Fraction(5, 9), Fraction(-32))}
    assert temperature.conversions["[degF]"].apply(Fraction("98.6")) == 37
    assert fields["hba1c"].conversions["mmol/mol"].apply(Fraction(48)) == Fraction(48) / Fraction("10.929") + Fraction(
        "2.15"
    )
    assert fields["creatinine"].conversions["umol/L"].factor == Fraction(100, 8842)
    assert fields["heart_rate"].stale_after == timedelta(hours=24)
    assert fields["body_height"].stale_after == timedelta(days=365)
    assert fields["heart_rate"].statuses == {"final", "amended", "corrected"}
    assert Source((LOINC, "85354-9"), (LOINC, "8480-6")) in fields["systolic_bp"].sources
    smoking = fields["smoking_status"]
    assert smoking.kind == "coded" and smoking.unit is None
    assert smoking.values[(SNOMED, "449868002")] == "current"
    assert smoking.values[(SNOMED, "8517006")] == "former"
    assert fields["consciousness"].texts["responds to voice"] == "voice"


def _bad(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    folder = tmp_path / "mappings"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


# Each: the file's text, the line and key path the error names, and a part of its message.
BAD_FILES = [
    pytest.param(
        VALID.replace("    unit: /min\n", ""),
        2,
        "fields.heart_rate.unit",
        "canonical UCUM unit",
        id="quantity-without-unit",
    ),
    pytest.param(
        VALID.replace("http://loinc.org|8867-4", "loinc-8867-4"),
        8,
        "fields.heart_rate.sources.0.code",
        "must be written system|code",
        id="code-not-system-bar-code",
    ),
    pytest.param(
        VALID.replace("PT24H", "24 hours"),
        6,
        "fields.heart_rate.stale_after",
        "is not an ISO 8601 duration",
        id="bad-iso-duration",
    ),
    pytest.param(
        VALID.replace("PT24H", "PT"), 6, "fields.heart_rate.stale_after", "ISO 8601 duration", id="empty-iso-duration"
    ),
    pytest.param(
        VALID.replace("{low: 20, high: 300}", "{low: 300, high: 20}"),
        5,
        "fields.heart_rate.plausible.high",
        "greater than low",
        id="plausible-low-above-high",
    ),
    pytest.param(
        VALID.replace("{low: 20, high: 300}", "{low: 20, high: 20}"),
        5,
        "fields.heart_rate.plausible.high",
        "greater than low",
        id="plausible-low-equals-high",
    ),
    pytest.param(
        VALID.replace("    unit: /min\n    plausible: {low: 20, high: 300}\n", "    kind: coded\n"),
        2,
        "fields.heart_rate.answers",
        "needs the answers it maps",
        id="coded-without-answers",
    ),
    pytest.param(
        VALID.replace("    plausible:", "    conversions:\n      - {from: Hz, factor: 0}\n    plausible:"),
        6,
        "fields.heart_rate.conversions.0.factor",
        "greater than 0",
        id="zero-factor",
    ),
    pytest.param(
        VALID.replace("low: 20", "low: twenty"),
        5,
        "fields.heart_rate.plausible.low",
        "must be a number",
        id="not-a-number",
    ),
    pytest.param(
        VALID.replace("    unit:", "    units:"), 4, "fields.heart_rate.units", "Unknown field", id="misspelt-key"
    ),
    pytest.param(
        VALID.replace("heart_rate:", "HeartRate:"),
        2,
        "fields.HeartRate",
        "lower_snake_case",
        id="field-name-not-snake-case",
    ),
    pytest.param(
        VALID.replace("    sources:\n      - code: http://loinc.org|8867-4\n", "    sources: []\n"),
        7,
        "fields.heart_rate.sources",
        "minimum length 1",
        id="no-sources",
    ),
]


@pytest.mark.parametrize(("text", "line", "key_path", "message"), BAD_FILES)
def test_a_bad_file_names_file_line_and_key(tmp_path: Path, text: str, line: int, key_path: str, message: str) -> None:
    with pytest.raises(MappingError) as error:
        load_mappings(_bad(tmp_path, text, "vitals.yaml"))
    assert str(error.value).startswith(f"vitals.yaml, line {line}, {key_path}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (VALID.replace("    unit: /min\n", "    unit: /min: per minute\n"), 4),
        (VALID.replace("    label: Heart rate\n", "    label: [Heart rate\n"), 4),
        (VALID + "\t- tab\n", 9),
    ],
    ids=["colon-in-value", "unclosed-bracket", "tab-indent"],
)
def test_invalid_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    with pytest.raises(MappingError, match=rf"^vitals\.yaml, line {line}: not valid YAML: "):
        load_mappings(_bad(tmp_path, text, "vitals.yaml"))


@pytest.mark.parametrize("text", ["- a list\n- not a mapping\n", "", "just text\n"], ids=["list", "empty", "scalar"])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(MappingError, match=r"^vitals\.yaml, line 1: a mapping file is a YAML mapping"):
        load_mappings(_bad(tmp_path, text, "vitals.yaml"))


def test_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="the mappings folder does not exist"):
        load_mappings(tmp_path / "nowhere")


def test_a_field_defined_in_two_files_names_both(tmp_path: Path) -> None:
    folder = _bad(tmp_path, VALID, "a-vitals.yaml")
    _bad(tmp_path, VALID, "b-more.yaml")
    with pytest.raises(MappingError, match=r"^b-more\.yaml\b.*'heart_rate' is already defined in a-vitals\.yaml"):
        load_mappings(folder)


def test_a_case_list_defined_in_two_files_names_both(tmp_path: Path) -> None:
    folder = _bad(tmp_path, CASE_LIST.format(code="Condition.code"), "a-case.yaml")
    _bad(tmp_path, CASE_LIST.format(code="Condition.code"), "b-case.yaml")
    with pytest.raises(MappingError, match=r"^b-case\.yaml\b.*'conditions' is already defined in a-case\.yaml"):
        load_mappings(folder)


def test_a_duplicate_field_error_names_line_and_key(tmp_path: Path) -> None:
    folder = _bad(tmp_path, VALID, "a-vitals.yaml")
    _bad(tmp_path, VALID, "b-more.yaml")
    with pytest.raises(MappingError, match=r"^b-more\.yaml, line 2, fields\.heart_rate: "):
        load_mappings(folder)


def test_a_fhirpath_error_names_line_and_key(tmp_path: Path) -> None:
    folder = _bad(tmp_path, CASE_LIST.format(code="'Condition.code ## typo'"), "case.yaml")
    with pytest.raises(MappingError, match=r"^case\.yaml, line 5, case\.conditions\.code: "):
        load_mappings(folder)


@pytest.mark.parametrize(
    "expression",
    ["Condition.code.where(", "Condition.code.where(system = 'x'", "Condition.code +"],
    ids=["unclosed-call", "unclosed-call-with-argument", "dangling-operator"],
)
def test_a_fhirpath_syntax_error_stops_loading(tmp_path: Path, expression: str) -> None:
    folder = _bad(tmp_path, CASE_LIST.format(code=expression), "case.yaml")
    with pytest.raises(MappingError, match=r"^case\.yaml\b.*case\.conditions"):
        load_mappings(folder)


def test_a_file_edited_between_loads_is_read_as_it_is_now(tmp_path: Path) -> None:
    """Files are parsed once per text, not once per name: an edit is seen at the next load, and a
    text seen before in another file is reported under this file's name."""
    folder = _bad(tmp_path, VALID, "vitals.yaml")
    assert load_mappings(folder).fields["heart_rate"].unit == "/min"
    (folder / "vitals.yaml").write_text(VALID.replace("unit: /min", "unit: '{beats}/min'"), encoding="utf-8")
    assert load_mappings(folder).fields["heart_rate"].unit == "{beats}/min"
    broken = VALID.replace("    unit: /min\n", "")
    with pytest.raises(MappingError, match=r"^vitals\.yaml, line 2, "):
        load_mappings(_bad(tmp_path, broken, "vitals.yaml"))
    (tmp_path / "other").mkdir()
    with pytest.raises(MappingError, match=r"^renamed\.yaml, line 2, "):
        load_mappings(_bad(tmp_path / "other", broken, "renamed.yaml"))


def test_create_app_refuses_a_bad_mappings_folder(database_url: str, tmp_path: Path) -> None:
    folder = _bad(tmp_path, VALID.replace("    unit: /min\n", ""), "vitals.yaml")
    with pytest.raises(MappingError, match=r"^vitals\.yaml, line 2, fields\.heart_rate\.unit: "):
        create_app({"database_url": database_url, "mappings_dir": str(folder)})


def test_twin_rebuild_refuses_a_bad_mappings_folder(database_url: str, tmp_path: Path) -> None:
    folder = _bad(tmp_path, VALID.replace("PT24H", "daily"), "vitals.yaml")
    result = CliRunner().invoke(
        cli.main, ["twin", "rebuild", "--database", database_url], env={"FHIR_TWIN_MAPPINGS_DIR": str(folder)}
    )
    assert result.exit_code == 1, result.output
    assert "vitals.yaml, line 6, fields.heart_rate.stale_after: 'daily' is not an ISO 8601 duration" in result.output
    assert "rebuilt" not in result.output


@pytest.mark.parametrize(
    ("text", "written"),
    [("P30D", "P30D"), ("PT24H", "P1D"), ("PT1H", "PT1H"), ("PT90M", "PT1H30M"), ("PT45S", "PT45S"), ("P1Y", "P365D")],
)
def test_a_duration_is_written_back_as_iso_8601(text: str, written: str) -> None:
    assert iso_duration(duration(text)) == written
