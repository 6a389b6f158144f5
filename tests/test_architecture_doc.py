"""docs/architecture.md stays true to the package: section 2 has a row for every module under
``fhir_twin/`` and names no module that does not exist, and section 1's layer table is the
import-linter layers contract of ``setup.cfg``, in its order.

Only the tables' first column and the ``### `package/` `` headings are read, never the prose.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fhir_twin"
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _section(number: int) -> str:
    """The text of ``## {number}.`` up to the next section."""
    start = DOC.index(f"\n## {number}. ")
    return DOC[start : DOC.index("\n## ", start + 1)]


def _tables(text: str) -> list[list[str]]:
    """The first cell of each body row, per table."""
    tables: list[list[str]] = []
    rows = None
    for line in text.splitlines():
        if not line.startswith("|"):
            rows = None
        elif line.startswith("|---"):
            rows = []
            tables.append(rows)
        elif rows is not None:
            rows.append(re.split(r"(?<!\\)\|", line)[1].strip())
    return tables


def _named_modules() -> set[str]:
    """Section 2's module rows as paths under ``fhir_twin/``: ``x.py`` a module, ``x/`` a package
    described as a whole; each row is read in the package of the ``### `pkg/` `` heading above it."""
    named = set()
    package = ""
    for block in re.split(r"^### ", _section(2), flags=re.MULTILINE):
        heading = re.match(r"`([\w/]+/)`", block)
        package = heading.group(1) if heading else package
        for cell in (cell for table in _tables(block) for cell in table):
            named.update(package + name for name in re.findall(r"`([\w/]+(?:\.py|/))`", cell))
    return named


def _covered(module: str, named: set[str]) -> bool:
    return module in named or any(name.endswith("/") and module.startswith(name) for name in named)


def test_every_module_of_the_package_has_a_row() -> None:
    named = _named_modules()
    modules = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")]
    # A package's __init__ is described by its heading or its row.
    missing = sorted(m for m in modules if not m.endswith("__init__.py") and not _covered(m, named))
    assert missing == []


def test_every_module_named_exists() -> None:
    assert sorted(name for name in _named_modules() if not (PACKAGE / name).exists()) == []


def test_the_layer_table_is_the_layers_contract() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    layers = [line.strip() for line in setup["importlinter:contract:layers"]["layers"].split("\n") if line.strip()]
    first_table = _tables(_section(1))[0]
    assert [cell.replace("`", "").replace("\\|", "|") for cell in first_table] == layers
