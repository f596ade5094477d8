"""Golden-model GEMM speed: int8 512^3 vs torch._int_mm and NumPy; MX GEMM 512^3.

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


def best_of(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


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
    results = {
        "golden.matmul int8": best_of(lambda: golden.matmul(a, b), args.repeats),
        "torch._int_mm int8": best_of(lambda: torch._int_mm(ta, tb), args.repeats),
        "numpy int32 matmul": best_of(lambda: a32 @ b32, max(1, args.repeats // 5)),
        "golden.mx_matmul mxint8 (fp32 out)": best_of(lambda: golden.mx_matmul(fa, fb), 2),
    }
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "numpy": np.__version__,
               "torch": torch.__version__}
    ratio = results["golden.matmul int8"] / results["torch._int_mm int8"]
    if args.json:
        print(json.dumps({"size": n, "seconds": results, "golden_over_int_mm": ratio,
                          "machine": machine}, indent=2))
        return
    print(f"GEMM {n}x{n}x{n}, best of {args.repeats}, {machine}")
    for name, seconds in results.items():
        print(f"  {name:38} {seconds * 1e3:10.2f} ms")
    print(f"  golden.matmul / torch._int_mm = {ratio:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
