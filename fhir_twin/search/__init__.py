"""Search without storage: the search-parameter registry, a query string parsed into a ``Search``
value, and the index rows a resource gives (FHIRPath)."""
