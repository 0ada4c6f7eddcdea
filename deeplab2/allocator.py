"""glibc malloc settings for TensorFlow's large, short-lived CPU tensors.

TensorFlow's CPU allocator takes its memory from malloc. glibc serves a
block above its mmap threshold (dynamic, at most 32 MB) with a fresh
mapping, and returns a freed heap top above its trim threshold to the
system, so the multi-megabyte tensors of every training example (a
1025x2049 float32 crop is 25 MB) arrive as new zero-filled pages: about
3000 page faults per Cityscapes example. Keeping blocks of up to 32 MB in
the heap and trimming only above 1 GB removed them and made the training
input ~5% faster (2-core EPYC) for ~0.1 GB more peak RSS.

The setting is process-wide, so only the command-line entry points apply
it, and a user's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ wins.
"""

import ctypes
import ctypes.util
import os

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's own ceiling for the threshold
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_large_blocks() -> bool:
    """Applies the thresholds above through glibc's mallopt. Returns
    whether they were set (False without glibc, or when the environment
    already sets either threshold)."""
    if any(name in os.environ for name in ('MALLOC_MMAP_THRESHOLD_',
                                           'MALLOC_TRIM_THRESHOLD_')):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and
                mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
