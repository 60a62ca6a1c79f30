"""`make bench`: throughput and memory of the hot paths, as JSON and a markdown table in outputs/bench/,
and docs/PERFORMANCE.md from them. Not a test: it measures and reports; nothing here asserts a time.
Medians of several repeats. `python -m mnist_probe.bench --help` lists what it runs.

Kernel caps: ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA cap torch's and oneDNN's kernels (the
training's convolutions), not MKL's, whose fp32 GEMM the matmul-peak probe times. So that the
achieved/peak ratio divides like by like, a cap given to either is given to MKL too
(MKL_ENABLE_INSTRUCTIONS), here, before any submodule imports torch and so loads MKL."""

import os

CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def mkl_cap(environ: dict) -> str | None:
    """MKL's name for the narrowest vector width the other caps in environ allow (None: no cap)."""
    caps = [environ[k].upper() for k in CAP_VARIABLES[:2] if environ.get(k)]
    if not caps:
        return None
    return "AVX2" if any("512" not in c and "AMX" not in c for c in caps) else "AVX512"


if "MKL_ENABLE_INSTRUCTIONS" not in os.environ and mkl_cap(os.environ):
    os.environ["MKL_ENABLE_INSTRUCTIONS"] = mkl_cap(os.environ)
