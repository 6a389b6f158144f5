"""fhir-twin: an HL7 FHIR R4 server that keeps a digital twin of every patient."""

__version__ = "0.1.0"
