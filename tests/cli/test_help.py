"""``fhir-twin --help`` answers at once: the heavy libraries (the app, SQLAlchemy, pandas,
scikit-learn, fhir.resources, gunicorn) are imported only by the commands that use them."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("flask", "sqlalchemy", "pandas", "sklearn", "fhir.resources", "gunicorn", "waitress", "tqdm")
PROBE = """
import sys
from fhir_twin.cli import main
try:
    main({arguments!r})
except SystemExit:
    pass
print("IMPORTED", *sorted(name for name in {heavy!r} if name in sys.modules))
"""


@pytest.mark.parametrize(
    "arguments", [["--help"], ["serve", "--help"], ["token", "create", "--help"], ["devices", "simulate", "--help"]]
)
def test_help_imports_no_heavy_library(arguments: list[str]) -> None:
    probe = PROBE.format(arguments=arguments, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert "Usage: " in done.stdout
    assert done.stdout.rsplit("IMPORTED", 1)[1].split() == []
