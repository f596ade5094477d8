"""The CPU report: VNNI flags from /proc/cpuinfo and ONNX Runtime's uint8 x int8 probe."""

from __future__ import annotations

from pathlib import Path

from host.runner import cpu_int8_report


def test_cpu_report_reads_the_flags_and_probes_onnxruntime():
    report = cpu_int8_report()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        assert set(report["vnni_flags"]) == {flag for flag in flags if "vnni" in flag}
    assert isinstance(report["onnxruntime_u8s8_exact"], bool)
    # With VNNI, ONNX Runtime's 8-bit kernels are exact (documented in docs/models.md); the
    # probe must then agree with the flags.
    if {"avx512_vnni", "avx_vnni"} & set(report["vnni_flags"]):
        assert report["onnxruntime_u8s8_exact"]
    assert ("exact" in report["note"]) and report["onnxruntime"]
