"""Python's garbage collector set for a long-running command (``serve``, ``load``) that has built
what it keeps for its lifetime."""

from __future__ import annotations

import gc

# A request allocates thousands of short-lived objects (a transaction Bundle, millions); with the
# default young-generation threshold of 700 the collector ran every few entries, about a tenth of
# ingest time (docs/performance.md, "2026-12-06: ingest").
THRESHOLDS = (50_000, 50, 100)


def settle() -> None:
    """Freeze what was built so far out of the collector, so full collections scan only what
    the work makes and, in a forked server, the parent's pages stay shared; and collect the
    young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
