"""HTTP transport: the only package besides ``app`` and ``cli`` that imports Flask."""
