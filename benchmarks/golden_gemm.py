"""Golden-model GEMM speed: int8 512^3 vs torch._int_mm and NumPy; MX GEMMs 512^3 vs
golden.matmul.

Usage: .venv/bin/python benchmarks/golden_gemm.py [--size 512] [--repeats 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import golden
from host.bench import describe_machine


def best_of(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _reference_executor_path(a_elements, a_codes, b_elements, b_codes) -> None:
    """The MX GEMM as golden.reference runs it: the public units one after the other."""
    partials = golden.block_dot_products(a_elements, b_elements, 32)
    exponents = golden.block_exponents(a_codes, b_codes)
    golden.bfp_accumulate(partials, exponents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import torch

    n = args.size
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (n, n), dtype=np.int8)
    b = rng.integers(-128, 128, (n, n), dtype=np.int8)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    assert np.array_equal(golden.matmul(a, b), torch._int_mm(ta, tb).numpy())
    a32, b32 = a.astype(np.int32), b.astype(np.int32)
    fa = rng.standard_normal((n, n)).astype(np.float32)
    fb = rng.standard_normal((n, n)).astype(np.float32)
    ae, ac = golden.mx_quantize(fa, "mxint8", 32, axis=1)
    be, bc = golden.mx_quantize(fb, "mxint8", 32, axis=0)
    repeats = args.repeats
    results = {
        "golden.matmul int8": best_of(lambda: golden.matmul(a, b), repeats),
        "torch._int_mm int8": best_of(lambda: torch._int_mm(ta, tb), repeats),
        "numpy int32 matmul": best_of(lambda: a32 @ b32, max(1, repeats // 5)),
        "golden.mx_matmul mxint8 (fp32 out)": best_of(lambda: golden.mx_matmul(fa, fb),
                                                      repeats),
        "golden.mx_matmul mxint8, W = 16": best_of(
            lambda: golden.mx_matmul(fa, fb, acc_bits=16), repeats),
        "golden.mx_matmul_quantized mxint8": best_of(
            lambda: golden.mx_matmul_quantized(ae, ac, be, bc), repeats),
        "block_dot_products + bfp_accumulate": best_of(
            lambda: _reference_executor_path(ae, ac, be, bc), repeats),
    }
    machine = {"machine": describe_machine(), "torch": torch.__version__,
               "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
               "load_average": os.getloadavg(), "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    matmul = results["golden.matmul int8"]
    ratio = matmul / results["torch._int_mm int8"]
    mx_ratio = results["golden.mx_matmul mxint8 (fp32 out)"] / matmul
    if args.json:
        print(json.dumps({"size": n, "seconds": results, "golden_over_int_mm": ratio,
                          "mx_over_golden_matmul": mx_ratio, "machine": machine}, indent=2))
        return
    load = ", ".join(f"{value:.2f}" for value in machine["load_average"])
    print(f"GEMM {n}x{n}x{n}, best of {repeats}; {machine['machine']}, torch "
          f"{machine['torch']}; load average {load}; {machine['date']}")
    for name, seconds in results.items():
        print(f"  {name:38} {seconds * 1e3:10.2f} ms  ({seconds / matmul:7.1f}x golden.matmul)")
    print(f"  golden.matmul / torch._int_mm = {ratio:.2f}x (target <= 2x)")
    print(f"  golden.mx_matmul / golden.matmul = {mx_ratio:.2f}x (target <= 10x)")


if __name__ == "__main__":
    main()
