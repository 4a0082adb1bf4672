"""glibc's allocator keeps freed memory for reuse in a process that trains on the CPU.

By default glibc serves every request above its mmap threshold (at most 32 MiB on 64-bit Linux) with a fresh
``mmap`` and returns it with ``munmap`` on free. A CPU training step allocates and frees many tensors above that
size every step (a chunk of ``[N, V]`` fp32 logits and its softmax, the head's weight cast to bf16 under
autocast, the head's and embedding's gradients), so each of them comes back as zero-filled pages that the kernel
faults in one 4 KiB page at a time. On the GRPO benchmark (``bench.grpo_vs_trl --device cpu``, 3 steps, 2 cores,
one run each; bench/results/cpu-malloc.md) this was 2.9 million page faults and 26 s of system time against
203 s of user time; with freed memory kept in the heap, 1.5 million and 12 s. The arithmetic is unchanged (same kernels, same order): only where memory comes
from.

Only for a CPU device: a GPU run's host memory holds checkpoints on their way to the device, which must go back
to the system, not stay in a heap that nothing reuses.
"""

from __future__ import annotations

import ctypes

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap (``M_MMAP_MAX = 0``) and never trim it below 2 GiB of free top
    (``M_TRIM_THRESHOLD``), so a freed block is reused by the next request of its size without page faults.
    The process's resident memory then stays at its high-water mark.

    Returns:
        True when both settings took; False where the C library is not glibc (no ``mallopt``: musl, macOS)
        or refused them, and nothing changed.
    """
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them (no ldconfig lookup)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, INT_MAX))
