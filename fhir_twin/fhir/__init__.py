"""FHIR R4 rules and formats: validation (with the rules the fhir.resources models do not
enforce, driven by packaged spec data), JSON and XML, and the resources the server builds
(OperationOutcome, Bundles, the CapabilityStatement)."""
