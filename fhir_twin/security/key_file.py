"""A secret kept in a file outside the database, readable by its owner alone (mode 0600): the
audit key and the authorization server's signing key. The file is written whole or not at all
(a temporary file, synced, then linked into place), and when two processes start at once the
first file linked is the one both keep."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create(path: Path, secret: bytes) -> None:
    """Write ``secret`` to ``path`` unless a file is there already (another process's is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(secret)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
