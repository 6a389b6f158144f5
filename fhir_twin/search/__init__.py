"""Search: parsing a FHIR query string into a ``SearchQuery`` value (pure, no storage)."""
