"""Pin glibc's allocator thresholds before timing, so latency does not depend on process history.

glibc serves large blocks with mmap and raises that threshold as the process frees large blocks,
so whether a model's big temporaries (a 32x32 attention matrix is 16 MiB) cost fresh page faults
on every call depended on what the process had done before. Measured on a 2-core VM: cunet-attn5
ran at 0.85 x unet in a fresh process and at 0.66 x unet after one training step had run in it;
with the thresholds pinned, 0.68 in both.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
STEADY_BYTES = 256 * 2**20


def steady_allocator() -> bool:
    """Make glibc keep freed blocks up to 256 MiB in the heap and stop adjusting that threshold,
    as in a long-running process; True when it took effect (False off glibc, e.g. macOS).

    Process-wide and not undone: it changes speed, never results.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, STEADY_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                          2 * STEADY_BYTES))
