"""The audit trail: an AuditEvent for every interaction, hash-chained so tampering shows."""
