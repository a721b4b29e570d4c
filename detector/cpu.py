"""What this CPU does with INT8 products: the one fact that decides whether a quantized graph
computes the same integers here as everywhere else.

Why it matters: ONNX Runtime multiplies uint8 activations by int8 weights. Where the CPU has a
32-bit INT8 dot product (x86 VNNI or AMX, ARM's dot product or its widening multiplies, and
WebAssembly's 16-bit dot) every sum is exact. On x86 with only AVX2 or AVX-512 (no VNNI) it uses
``vpmaddubsw``, which adds each pair of products in 16 bits and saturates: a pair of weights
whose magnitudes add up to more than 128, against bright activations, clips, and the score moves
(by up to 0.55 on the shipped 0.3.0's crops). ``detector.graph`` reads this class to decide
whether a graph needs its exact encoding here; ``make bench`` prints it.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# The x86 flags (as Linux names them in /proc/cpuinfo) that give a 32-bit INT8 dot product.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuClass:
    """``int8_sums_exact`` is False only where pair sums are known to saturate (x86 without
    VNNI) or where the CPU could not be read (then the safe answer is assumed)."""

    machine: str
    features: tuple[str, ...]
    int8_sums_exact: bool

    @property
    def name(self) -> str:
        if self.machine == "arm":
            return "ARM" + (" with dot product" if "dotprod" in self.features else "")
        if self.machine != "x86":
            return f"{self.machine} (unknown INT8 arithmetic)"
        widest = "AVX-512" if "avx512f" in self.features else "AVX2" if "avx2" in self.features else "SSE"
        vnni = [f for f in self.features if f in VNNI_FLAGS]
        return f"x86 {widest}, " + (f"VNNI ({', '.join(vnni)})" if vnni else "no VNNI")


def classify(machine: str, flags: set[str]) -> CpuClass:
    """The class of a CPU from its architecture name and feature flags (testable without one)."""
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        keep = ("avx2", "avx512f", "avx512bw", *VNNI_FLAGS)
        features = tuple(f for f in keep if f in flags)
        return CpuClass("x86", features, any(f in flags for f in VNNI_FLAGS))
    if machine in ("aarch64", "arm64"):
        features = tuple(f for f in ("asimddp", "i8mm") if f in flags)
        return CpuClass("arm", tuple("dotprod" if f == "asimddp" else f for f in features), True)
    return CpuClass(machine, (), False)


def _proc_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # macOS, Windows: no flags to read
        return set()
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            return set(line.split(":", 1)[1].split())
    return set()


# NumPy's own CPUID reading, under Linux's names: what the process really runs on, also under an
# emulator (qemu-user shows the host's /proc/cpuinfo), as ONNX Runtime's own CPUID check sees it.
_NUMPY_NAMES = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512BW": "avx512bw"}
_NUMPY_NAMES |= {"AVX512VNNI": "avx512_vnni", "ASIMDDP": "asimddp"}


def _flags() -> set[str]:
    """CPUID's answer (NumPy's), with /proc/cpuinfo's AVX-VNNI and AMX (which NumPy does not
    read) only where /proc agrees with CPUID on AVX-512, i.e. describes this very CPU."""
    try:
        from numpy.core._multiarray_umath import __cpu_features__
    except ImportError:  # another NumPy layout: /proc alone
        return _proc_flags()
    cpuid = {linux for name, linux in _NUMPY_NAMES.items() if __cpu_features__.get(name)}
    proc = _proc_flags()
    if ("avx512f" in proc) == ("avx512f" in cpuid):
        cpuid |= proc & {"avx_vnni", "amx_int8"}
    return cpuid


@lru_cache(maxsize=1)
def this_cpu() -> CpuClass:
    return classify(platform.machine(), _flags())
