"""The codes of the AuditEvents this server records, in the shape of IHE Basic Audit Log
Patterns (BALP) RESTful events: shared by the events (``audit.event``) and their index
(``store.audit_index``)."""

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
OPERATION_SYSTEM = "urn:fhir-twin:CodeSystem/operation"
TOKEN_SYSTEM = "urn:fhir-twin:api-token"
CLIENT_SYSTEM = "urn:fhir-twin:client"
SERVER_NAME = "fhir-twin"
REST_TYPE = {"system": DCM, "code": "rest", "display": "RESTful Operation"}
# Entity type and role of each kind of entity (audit-entity-type, object-role).
RESOURCE_ENTITY = (("2", "System Object"), ("4", "Domain Resource"))
PATIENT_ENTITY = (("1", "Person"), ("1", "Patient"))
QUERY_ENTITY = (("2", "System Object"), ("24", "Query"))
