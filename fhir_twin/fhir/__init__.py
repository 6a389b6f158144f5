"""FHIR R4 rules the fhir.resources models do not enforce, driven by packaged spec data."""
