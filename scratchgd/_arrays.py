"""Array helpers shared by the kernels and the training engines (imports nothing of scratchgd)."""

from __future__ import annotations

import numpy as np


def views_like(flat: np.ndarray, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``flat`` cut into consecutive views shaped like ``arrays``, in order (no copy).

    The flat buffer of one step holds every parameter's gradient sum this way.
    """
    views, offset = [], 0
    for a in arrays:
        views.append(flat[offset:offset + a.size].reshape(a.shape))
        offset += a.size
    return views
