"""Persistence: the only package that imports SQLAlchemy (DESIGN.md, "Layers")."""
