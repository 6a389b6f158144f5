"""The digital twin: Digital Body (measurement series) and Digital Case (the case record).

Declarative mappings (``mappings/*.yaml``) turn each stored resource version into twin facts;
``sync`` keeps them in step with every write, in the write's transaction.
"""
