"""Keep freed host memory returnable to the operating system while a large model trains.

glibc serves an allocation of at least `M_MMAP_THRESHOLD` bytes (128 KiB at start) with its own
`mmap`, which `free` gives straight back. But the threshold is dynamic: each time such a block
is freed, glibc raises the threshold to that block's size (up to 32 MiB). After the first few
steps of a training, every activation, gradient temporary and optimizer temporary below 32 MiB
comes from the heap instead, whose freed space is rarely returned and fragments, so the
process's resident memory keeps the high-water mark of many transient tensors. On SmolLM2-135M
(float32, CPU, 4 pairs per step, gradient checkpointing) holding the threshold at 128 KiB
lowers the peak resident memory of a training from about 3.6 GB to about 2.7 GB, at no
measurable cost in step time (docs/BENCHMARKS.md).

A small model pays for it instead: its tensors are small, so mapping each one afresh (page
faults, zeroed pages) costs more than its arithmetic. The demo's 1M-parameter model trains 1.8x
slower with the threshold held, and its heap is small anyway. So `low_fragmentation` holds the
threshold only for models of at least `MIN_PARAMETERS` parameters, and only while training or
scoring; on leaving it sets the threshold to 32 MiB, where glibc's own adjustment ends up, so
that sampling afterwards allocates as before.

Linux with glibc only (other C libraries are left alone), and not where `IRPO_KEEP_MALLOC=1`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # <malloc.h>
LOW_THRESHOLD = 128 * 1024  # glibc's own starting value
# DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where glibc's own adjustment ends.
HIGH_THRESHOLD = 32 * 1024 * 1024
MIN_PARAMETERS = 20_000_000


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's mmap threshold for this process; False where that is not possible or wanted."""
    if not sys.platform.startswith("linux") or os.environ.get("IRPO_KEEP_MALLOC") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, nbytes) == 1)


@contextmanager
def low_fragmentation(model: Any) -> Iterator[bool]:
    """Hold the threshold at 128 KiB inside the block when `model` has at least `MIN_PARAMETERS`
    parameters; yields whether it does."""
    size = sum(p.numel() for p in model.parameters())
    held = size >= MIN_PARAMETERS and set_mmap_threshold(LOW_THRESHOLD)
    if held:
        log.debug("glibc mmap threshold held at %d bytes (%d parameters)", LOW_THRESHOLD, size)
    try:
        yield held
    finally:
        if held:
            set_mmap_threshold(HIGH_THRESHOLD)
