"""Counters in the iCE40UP5K's DSP blocks (``SB_MAC16``), for a board whose logic cells are
all taken: each DSP holds two 16-bit accumulators, or one 32-bit one, so that a counter's
adder and flip-flops take no logic cell.

Ref: Lattice TN1295, "DSP Function Usage Guide for iCE40 Devices" (the accumulator
configurations of ``SB_MAC16``), and the ``SB_MAC16`` model of Yosys's
``techlibs/ice40/cells_sim.v`` (which :func:`timebin.sim.link.framer.ice40_cell_model`
appends to generated Verilog for cocotb): with the output select 1 a half shows its
accumulator register; the register takes ``register + input`` (plus the carry chosen by
``CARRYSELECT``) unless ``OHOLD``, and ``C``/``D`` on ``OLOAD``. The Amaranth simulator has no
model of the cell: blocks use it only on request, and are tested under cocotb.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Value

__all__ = ["accumulator_dsp"]


def accumulator_dsp(m, name, out, *, hold, load, load_value=0, cascade=False):
    """Add to ``m`` an ``SB_MAC16`` named ``name`` whose registered output is ``out`` (32
    bits), counting up by one a cycle.

    Without ``cascade``: two independent 16-bit counters, ``out[:16]`` and ``out[16:]``;
    ``hold`` is a pair ``(bottom, top)`` of hold signals (high: keep the value). With
    ``cascade``: one 32-bit counter (the bottom half's carry steps the top half); ``hold``
    is one signal. ``load`` (one signal, both halves) sets the counter(s) to ``load_value``
    in the next cycle, whatever ``hold`` says (the counter's reset and clear): an integer
    (for each half, or the 32-bit value with ``cascade``), or a value of at most 16 bits
    (each half's, or with ``cascade`` the bottom half's, the top half loading 0).
    """
    load = Value.cast(load)
    if cascade:
        hold_bottom = hold_top = Value.cast(hold)
        if isinstance(load_value, int):
            load_bottom, load_top = Const(load_value & 0xFFFF, 16), Const(load_value >> 16, 16)
        else:                                   # a signal: its low 16 bits
            load_bottom, load_top = load_value, Const(0, 16)
    else:
        hold_bottom, hold_top = (Value.cast(h) for h in hold)
        load_bottom = load_top = Const(load_value, 16) if isinstance(load_value, int) \
            else load_value
    m.submodules[name] = Instance(
        "SB_MAC16",
        p_NEG_TRIGGER=0, p_C_REG=0, p_A_REG=0, p_B_REG=0, p_D_REG=0,
        p_TOP_8x8_MULT_REG=0, p_BOT_8x8_MULT_REG=0,
        p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=0,
        # Both halves: output = the accumulator register, adder = register + A (B); the top
        # half's carry in: none, or the bottom half's carry out (cascade).
        p_TOPOUTPUT_SELECT=1, p_TOPADDSUB_LOWERINPUT=0, p_TOPADDSUB_UPPERINPUT=0,
        p_TOPADDSUB_CARRYSELECT=2 if cascade else 0,
        p_BOTOUTPUT_SELECT=1, p_BOTADDSUB_LOWERINPUT=0, p_BOTADDSUB_UPPERINPUT=0,
        p_BOTADDSUB_CARRYSELECT=0,
        p_MODE_8x8=1, p_A_SIGNED=0, p_B_SIGNED=0,
        i_CLK=ClockSignal(), i_CE=Const(1),
        i_A=Const(0 if cascade else 1, 16), i_B=Const(1, 16),
        i_C=load_top, i_D=load_bottom,
        i_AHOLD=Const(0), i_BHOLD=Const(0), i_CHOLD=Const(0), i_DHOLD=Const(0),
        i_IRSTTOP=Const(0), i_IRSTBOT=Const(0), i_ORSTTOP=Const(0), i_ORSTBOT=Const(0),
        i_OLOADTOP=load, i_OLOADBOT=load, i_ADDSUBTOP=Const(0), i_ADDSUBBOT=Const(0),
        # A hold would also keep the register from loading.
        i_OHOLDBOT=hold_bottom & ~load, i_OHOLDTOP=hold_top & ~load,
        i_CI=Const(0), i_ACCUMCI=Const(0), i_SIGNEXTIN=Const(0),
        o_O=out)
