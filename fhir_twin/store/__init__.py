"""Persistence: the only package that imports SQLAlchemy (setup.cfg's import contracts,
docs/architecture.md section 1)."""
