"""Downsampling a long series for a chart: largest-triangle-three-buckets (Steinarsson 2013,
"Downsampling Time Series for Visual Representation") by the maintained ``tsdownsample``
library, which keeps the shape a chart of every point would show. A reading a clinician must
see is never dropped: flagged (implausible, unverified) and converted points are kept beside
the ``count`` chosen from the others.

numpy and tsdownsample are imported when a series is downsampled, so a server that never draws
a long series does not load them (tests/test_libraries_load_on_use.py).
"""

from __future__ import annotations

from datetime import datetime

from fhir_twin.twin.body import Point

MIN_POINTS = 3  # LTTB keeps the first and last point and one per bucket between
MAX_POINTS = 5000
_EPOCH = datetime(1970, 1, 1)


def downsample(points: list[Point], count: int) -> list[Point]:
    """``points`` (oldest first) with the plain numeric readings reduced to ``count`` by LTTB;
    every flagged or converted point, and every point without a numeric value or a time, kept."""
    plain = [i for i, p in enumerate(points) if p.flag is None and not p.converted and _plotted(p)]
    if len(plain) <= count:
        return points
    import numpy as np
    from tsdownsample import LTTBDownsampler

    # Naive UTC times, as seconds: only their order and spacing matter.
    x = np.array([_seconds(points[i]) for i in plain], dtype=np.float64)
    y = np.array([points[i].value for i in plain], dtype=np.float64)
    chosen = {plain[int(i)] for i in LTTBDownsampler().downsample(x, y, n_out=count)}
    dropped = set(plain) - chosen
    return [p for i, p in enumerate(points) if i not in dropped]


def _seconds(point: Point) -> float:
    assert point.time is not None
    return (point.time - _EPOCH).total_seconds()


def _plotted(point: Point) -> bool:
    return point.time is not None and point.value is not None
