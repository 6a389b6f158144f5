"""The wheel carries every file the package reads at run time: each non-Python file under
``fhir_twin/`` matches a ``package-data`` pattern of pyproject.toml (CI's .ci/wheel-smoke then
installs the wheel outside the checkout and serves a search from it)."""

from __future__ import annotations

import os
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from fhir_twin.config import Config

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fhir_twin"


def test_every_data_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["fhir_twin"]
    data = [
        (Path(folder) / name).relative_to(PACKAGE).as_posix()
        for folder, folders, names in os.walk(PACKAGE, followlinks=True)
        if "__pycache__" not in folder
        for name in names
        if not name.endswith((".py", ".pyc"))
    ]
    assert "search/data/search-parameters.json" in data
    assert [path for path in data if not any(fnmatch(path, pattern) for pattern in patterns)] == []


def test_the_default_mappings_are_the_checkouts_installed_with_the_package() -> None:
    folder = Config().resolved_mappings_dir
    assert folder.parent == PACKAGE
    assert sorted(path.name for path in folder.glob("*.yaml")) == sorted(
        path.name for path in (ROOT / "mappings").glob("*.yaml")
    )
