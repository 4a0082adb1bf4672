"""Which precision a stage trains in: ``resources { precision = auto | fp32 | bf16 }`` on this machine.

bf16 here means accelerate's mixed precision: fp32 master weights and optimizer state, the forward and
backward under ``torch.autocast(dtype=bfloat16)``, log-softmax, losses and their statistics in fp32
(``runtime.ops.token_logprobs``). On a CPU it can pay only where the cores have bf16 instructions (Intel AMX
``amx_bf16``, or AVX-512 ``avx512_bf16``), which oneDNN then uses: a forward+backward of the SmolLM2-135M
shape took 0.55x the fp32 time on such a CPU with AMX (issue 16). With AVX-512 bf16 alone the products run on
the vector units, at 0.76-0.8x fp32's rate on one such CPU (``bench/results/cpu-gemm-vm-noamx.json``); ``auto``
still picks bf16 there, as the issue asks. Without either, bf16 is emulated and slower, so ``auto`` keeps fp32
there and an explicit ``bf16`` is refused rather than silently run in fp32.
"""

from __future__ import annotations

from pathlib import Path

from cascadec.contract.errors import UserError

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


class PrecisionError(UserError):
    """``precision = bf16`` on a device that cannot run it natively."""


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (empty where the file is missing: not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU has native bf16 matrix instructions (``amx_bf16`` or ``avx512_bf16``)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_CPU_FLAGS)


def mixed_precision(precision: str, *, cuda: bool, cpu_bf16: bool | None = None) -> str:
    """accelerate's ``mixed_precision`` (``"bf16"`` or ``"no"``) for a stage's ``precision``.

    ``auto`` is bf16 on CUDA and on a CPU with bf16 units, else fp32; ``bf16`` is bf16 or an error;
    ``fp32`` is fp32. ``cpu_bf16`` overrides the detection (tests).

    Raises:
        PrecisionError: ``bf16`` on a CPU without ``amx_bf16``/``avx512_bf16``.
    """
    if precision == "fp32":
        return "no"
    native = cuda or (cpu_has_bf16() if cpu_bf16 is None else cpu_bf16)
    if native:
        return "bf16"
    if precision == "bf16":
        raise PrecisionError(
            "`precision = bf16` on a CPU without bf16 instructions (neither `amx_bf16` nor `avx512_bf16` in "
            "/proc/cpuinfo): it would be emulated, slower than fp32\n"
            "help: set `precision = auto` (fp32 here, bf16 where the hardware has it) or `precision = fp32`"
        )
    return "no"
