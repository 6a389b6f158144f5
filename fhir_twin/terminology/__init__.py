"""Terminology (R4 terminology-service.html) over the CodeSystems and ValueSets the server holds:
the R4 definitions packaged in ``data/definitions.json`` (``scripts/build_terminology_data.py``)
and those clients store, which take precedence. Pure: storage hands in what it holds.
"""
