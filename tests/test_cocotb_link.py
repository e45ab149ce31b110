"""The link gateware's generated Verilog under cocotb (Verilator, and Icarus when installed)
against the models of :mod:`timebin.sim.link`, every output in every cycle: a UART pair in a
loop through a faulty line, and a framer feeding a deframer through a faulty byte channel
(flipped bits, lost bytes, frames cut short, garbage, silences). The cocotb twins of
``tests/test_link_gateware.py::test_uart_models_match_rtl`` and ``test_link_models_match_rtl``.
"""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from timebin.gateware.link.framer import COUNTER_BITS, HEADER_QUEUE_DEPTH, Deframer, Framer
from timebin.gateware.link.uart import UARTRx, UARTTx
from timebin.sim.cocotb.runner import run_cocotb_verilog, simulators, write_verilog
from timebin.sim.link.framer import ice40_cell_model


class LinkHarness(wiring.Component):
    """A :class:`UARTTx`, a :class:`UARTRx`, a :class:`Framer` and a :class:`Deframer`, none
    connected: every member of block ``b`` is the harness member ``{b}_{member}`` (blocks
    ``uart_tx``, ``uart_rx``, ``framer``, ``deframer``), so the Verilog ports are e.g.
    ``framer_start__valid``, ``uart_tx_tx``, ``deframer_crc_errors``. The testbench closes
    the loops, with faults in them."""

    def __init__(self, *, divisor, max_payload, timeout, counter_bits=COUNTER_BITS,
                 queue_depth=HEADER_QUEUE_DEPTH, crc_ram=False, counter_dsp=False):
        counters = dict(counter_bits=counter_bits, counter_dsp=counter_dsp)
        self.blocks = {"uart_tx": UARTTx(divisor=divisor),
                       "uart_rx": UARTRx(divisor=divisor, **counters),
                       "framer": Framer(max_payload=max_payload, crc_ram=crc_ram, **counters),
                       "deframer": Deframer(max_payload=max_payload, timeout=timeout,
                                            queue_depth=queue_depth, crc_ram=crc_ram,
                                            **counters)}
        members = {f"{prefix}_{name}": member for prefix, block in self.blocks.items()
                   for name, member in block.signature.members.items()}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for prefix, block in self.blocks.items():
            m.submodules[prefix] = block
            for name, member in block.signature.members.items():
                outer, inner = getattr(self, f"{prefix}_{name}"), getattr(block, name)
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(outer), inner)
                elif member.flow == wiring.In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m


CONFIG = dict(divisor=4, max_payload=24, timeout=48)
#: The iCEBreaker's link options (boards.icebreaker), with 3-bit counters so that they
#: saturate, the counters in iCE40 DSPs (Yosys's ``SB_MAC16`` model), a one-frame header
#: queue, the CRC-32 from a table in block RAM.
SMALL_CONFIG = dict(CONFIG, counter_bits=3, queue_depth=1, crc_ram=True, counter_dsp=True)


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator", simulators())
@pytest.mark.parametrize("config", [CONFIG, SMALL_CONFIG], ids=["default", "ice40"])
def test_link_cocotb(simulator, config):
    params = dict(harness=config, uart_cycles=24_000, link_cycles=9000, seed=0x11A)
    text, _ = write_verilog(LinkHarness(**config), "link_harness")
    if config.get("counter_dsp"):
        text += ice40_cell_model("SB_MAC16")
    result = run_cocotb_verilog(text, toplevel="link_harness",
                                test_module="timebin.sim.cocotb.tb_link", params=params,
                                simulator=simulator, timeout_s=600)
    assert result.tests == 2
