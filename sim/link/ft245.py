"""Cycle model of an FTDI chip in synchronous 245 FIFO mode (the host end of the bus that
:class:`timebin.gateware.link.ft245.FT245SyncFIFO` drives), a byte source and sink for the
fabric streams, and the expected outcome of a run.

Ref: FTDI DS_FT2232H section 4.4 and AN_130 (8 bits), DS_FT600Q-FT601Q "245 synchronous
FIFO mode" (16 / 32 bits). The model samples the FPGA's pins once per cycle, as the chip does
at the rising clock edge: a word crosses chip to FPGA at an edge with RD# and RXF# low, FPGA
to chip at an edge with WR# and TXE# low; the chip drives DATA (and BE) in cycles with OE#
low.

One cycle of :meth:`FT245Chip.cycle` (or :meth:`FT245Bench.step`) takes the FPGA's outputs of
that cycle (registers: they do not depend on the chip's pins in the same cycle) and returns
the chip's pins in that cycle, then applies the clock edge at its end. Both the Amaranth
testbench (:func:`simulate_rtl`) and the cocotb one (``timebin.sim.cocotb.tb_ft245``) drive
the gateware through the same :class:`FT245Bench`, so equal seeds give equal pin traces.

Plain Python and numpy; :func:`simulate_rtl` imports Amaranth when called.
"""

import hashlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ...gateware.link.ft245 import COUNTER_BITS, DEFAULT_MAX_BURST, check_width

__all__ = ["PAD_OUTPUTS", "PAD_INPUTS", "Stimulus", "Outcome", "RunResult", "pack_words",
           "make_stimulus", "expected_outcome", "FT245Chip", "FabricEnds", "FT245Bench",
           "simulate_rtl"]

#: FPGA outputs the chip model samples (flattened port names of the generated Verilog).
PAD_OUTPUTS = ("rd_n", "wr_n", "oe_n", "siwu_n", "data_o", "data_oe", "be_o")
#: Chip pins the model drives into the FPGA.
PAD_INPUTS = ("rxf_n", "txe_n", "data_i", "be_i")
#: Fabric-side outputs and inputs of the component.
FABRIC_OUTPUTS = ("rx__valid", "rx__payload", "tx__ready")
FABRIC_INPUTS = ("rx__ready", "tx__valid", "tx__payload")
#: Counters read at the end of a run.
COUNTERS = ("rx_bytes", "tx_bytes", "overruns")
#: Cycles a run continues after the last byte arrived, to catch bytes delivered twice.
DRAIN_CYCLES = 16

_COUNTER_TOP = (1 << COUNTER_BITS) - 1


def _garbage(cycle, salt, bits):
    """What floats on an undriven (or not yet valid) bus: deterministic noise, not a value a
    correct design would take."""
    x = ((cycle + 1) * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    return (x ^ (x >> 29)) & ((1 << bits) - 1)


def pack_words(width, data, chunk_sizes=None):
    """The bus words the chip presents for host bytes ``data``: ``[(word, be), ...]``.

    Bytes go LSB first into ``width``-bit words. ``chunk_sizes`` splits ``data`` into USB
    transfers (FT60x): each transfer's last word may be partial, with BE marking its first
    bytes. Without it, one transfer. For width 8, BE is always 1.
    """
    check_width(width)
    lanes = width // 8
    if chunk_sizes is None:
        chunk_sizes = [len(data)]
    if sum(chunk_sizes) != len(data):
        raise ValueError(f"Transfer sizes add up to {sum(chunk_sizes)}, not {len(data)} bytes")
    words, at = [], 0
    for size in chunk_sizes:
        chunk = bytes(data[at:at + size])
        at += size
        for i in range(0, len(chunk), lanes):
            piece = chunk[i:i + lanes]
            words.append((int.from_bytes(piece, "little"), (1 << len(piece)) - 1))
    return words


@dataclass(frozen=True)
class Stimulus:
    """One randomized run: bytes both ways, chip-side stalls and fabric-side gaps.

    ``host_to_fpga`` reaches the chip in USB transfers of ``chunk_sizes`` bytes (their last
    words may be partial on FT60x). RXF# and TXE# go high for stalls that start with
    probability ``rxf_stall`` / ``txe_stall`` a cycle and last ``stall_mean`` cycles on
    average. The fabric offers a byte on ``tx`` with probability ``tx_valid_rate`` in a
    cycle where it holds none, and ``rx.ready`` is high with probability ``rx_ready_rate``.
    """

    width: int
    seed: int
    host_to_fpga: bytes
    fpga_to_host: bytes
    chunk_sizes: tuple = None
    rxf_stall: float = 0.0
    txe_stall: float = 0.0
    stall_mean: float = 4.0
    rx_ready_rate: float = 1.0
    tx_valid_rate: float = 1.0

    def params(self):
        """The stimulus as JSON-serialisable values (bytes as hex)."""
        return {"width": self.width, "seed": self.seed, "host_to_fpga": self.host_to_fpga.hex(),
                "fpga_to_host": self.fpga_to_host.hex(),
                "chunk_sizes": None if self.chunk_sizes is None else list(self.chunk_sizes),
                "rxf_stall": self.rxf_stall, "txe_stall": self.txe_stall,
                "stall_mean": self.stall_mean, "rx_ready_rate": self.rx_ready_rate,
                "tx_valid_rate": self.tx_valid_rate}

    @classmethod
    def from_params(cls, p):
        """The inverse of :meth:`params`."""
        p = dict(p)
        p["host_to_fpga"] = bytes.fromhex(p["host_to_fpga"])
        p["fpga_to_host"] = bytes.fromhex(p["fpga_to_host"])
        if p.get("chunk_sizes") is not None:
            p["chunk_sizes"] = tuple(p["chunk_sizes"])
        return cls(**p)


def make_stimulus(width, seed, *, n_rx=2000, n_tx=2000, max_chunk=64, rxf_stall=0.05,
                  txe_stall=0.05, stall_mean=4.0, rx_ready_rate=0.7, tx_valid_rate=0.7):
    """A :class:`Stimulus` with random bytes and USB transfer sizes ``1 .. max_chunk``,
    deterministic in ``seed``."""
    check_width(width)
    rng = np.random.default_rng([seed, width, 0xF7245])
    host = rng.integers(0, 256, n_rx, dtype=np.uint8).tobytes()
    fpga = rng.integers(0, 256, n_tx, dtype=np.uint8).tobytes()
    chunks = []
    while sum(chunks) < n_rx:
        chunks.append(min(int(rng.integers(1, max_chunk + 1)), n_rx - sum(chunks)))
    return Stimulus(width=width, seed=seed, host_to_fpga=host, fpga_to_host=fpga,
                    chunk_sizes=tuple(chunks), rxf_stall=rxf_stall, txe_stall=txe_stall,
                    stall_mean=stall_mean, rx_ready_rate=rx_ready_rate,
                    tx_valid_rate=tx_valid_rate)


@dataclass(frozen=True)
class Outcome:
    """What a run delivers: the bytes on ``rx`` and at the host, and the final counters."""

    rx: bytes
    tx: bytes
    rx_bytes: int
    tx_bytes: int
    overruns: int


def expected_outcome(stimulus):
    """The :class:`Outcome` of a correct link for ``stimulus``: every byte exactly once, in
    order, both ways; counters equal to the byte counts; nothing lost."""
    return Outcome(rx=bytes(stimulus.host_to_fpga), tx=bytes(stimulus.fpga_to_host),
                   rx_bytes=min(len(stimulus.host_to_fpga), _COUNTER_TOP),
                   tx_bytes=min(len(stimulus.fpga_to_host), _COUNTER_TOP), overruns=0)


class _Stalls:
    """A pin held high in random stretches: a stall starts with probability ``rate`` in a
    cycle and lasts ``mean`` cycles on average (geometric). One random draw per cycle, so
    the pattern depends on the cycle number only."""

    def __init__(self, rng, rate, mean):
        self.rng, self.rate, self.p_end = rng, rate, 1.0 / max(mean, 1.0)
        self.left = 0
        self._draws = np.empty(0)
        self._at = 0

    def _draw(self):
        if self._at == len(self._draws):
            self._draws, self._at = self.rng.random(4096), 0
        self._at += 1
        return self._draws[self._at - 1]

    def advance(self):
        """Step one cycle; return whether the pin is held high in the next one."""
        u = self._draw()
        if self.left:
            self.left -= 1
        elif self.rate and u < self.rate:
            self.left = int(self.rng.geometric(self.p_end))
        return self.left > 0


class FT245Chip:
    """The chip's side of the synchronous 245 FIFO bus, one cycle per :meth:`cycle`.

    ``host_words`` (``[(word, be), ...]``, see :func:`pack_words`) wait to be read by the
    FPGA; RXF# is low while one waits and no stall holds it high. Words the FPGA writes are
    collected; TXE# is low unless a stall holds it high (the chip's buffer to the host is
    taken to be large, USB traffic coming and going as the stalls). On a stalled pin the
    stall starts right after the edge, so TXE# may go high just after a word was taken and
    a word offered in a TXE#-high cycle is not taken.

    Protocol rules checked each cycle; a violation raises ``AssertionError`` naming the cycle:

    - the FPGA drives DATA (``data_oe``) only while OE# is high and was high in the cycle
      before (the chip needs a cycle to release the bus);
    - OE# goes low only after a cycle in which the FPGA did not drive DATA;
    - RD# is low only while OE# is low and was low in the cycle before, and RXF# was low in
      the cycle before (the FPGA reacts to RXF# high within a cycle);
    - WR# is low only while the FPGA drives DATA, and TXE# was low in the cycle before;
    - RD# and WR# are never low together;
    - a written word has BE ones from byte 0 up, at least one (FT60x; width 16 and 32);
    - every pin is 0 or 1 (``None`` for an undriven or unknown value fails).

    Members
    -------
    written : list of (int, int, int)
        ``(cycle, word, be)`` of each word the chip took.
    read : list of (int, int, int)
        ``(cycle, word, be)`` of each word the FPGA read.
    to_host : bytearray
        The enabled bytes of the written words, in order.
    refused : int
        Cycles with WR# low while TXE# was high (not taken; not a violation).
    send_immediate : int
        Cycles with SIWU# low.
    cycle_number : int
        The cycle the next :meth:`cycle` is.
    """

    def __init__(self, width, host_words=(), *, seed=0, rxf_stall=0.0, txe_stall=0.0,
                 stall_mean=4.0):
        check_width(width)
        self.width = width
        self.lanes = width // 8
        self.host = deque(host_words)
        rng_rxf, rng_txe = (np.random.default_rng(s) for s in
                            np.random.SeedSequence([seed, width, 0xC819]).spawn(2))
        self._rxf_stalls = _Stalls(rng_rxf, rxf_stall, stall_mean)
        self._txe_stalls = _Stalls(rng_txe, txe_stall, stall_mean)
        self.written, self.read = [], []
        self.to_host = bytearray()
        self.refused = 0
        self.send_immediate = 0
        self.cycle_number = 0
        self._rxf_stalled = self._txe_stalled = False
        self._rxf_held = self._txe_held = 0
        # The previous cycle's pins, as after a long idle time.
        self._prev = {"oe_n": 1, "data_oe": 0, "rxf_n": 1, "txe_n": 1}

    @property
    def rxf_n(self):
        """RXF# in the coming cycle."""
        return 0 if self.host and not (self._rxf_stalled or self._rxf_held) else 1

    @property
    def txe_n(self):
        """TXE# in the coming cycle."""
        return 1 if self._txe_stalled or self._txe_held else 0

    def hold_rxf(self, cycles):
        """Hold RXF# high for the next ``cycles`` cycles, from the coming one on."""
        self._rxf_held = max(self._rxf_held, cycles)

    def hold_txe(self, cycles):
        """Hold TXE# high for the next ``cycles`` cycles, from the coming one on."""
        self._txe_held = max(self._txe_held, cycles)

    def _fail(self, message):
        raise AssertionError(f"FT245 protocol, cycle {self.cycle_number}: {message}")

    def cycle(self, *, rd_n, wr_n, oe_n, data_oe, data_o=0, be_o=None, siwu_n=1):
        """One cycle: check the FPGA's pins of this cycle, return the chip's pins in it
        (``{"rxf_n", "txe_n", "data_i", "be_i"}``), then apply the clock edge at its end."""
        pins = {"rd_n": rd_n, "wr_n": wr_n, "oe_n": oe_n, "data_oe": data_oe, "siwu_n": siwu_n}
        if self.lanes == 1:
            be_o = 1
        else:
            pins["be_o"] = be_o
        for name, value in pins.items():
            if name != "be_o" and value not in (0, 1):
                self._fail(f"{name} is {value!r}, not 0 or 1")
        if data_o is None or (self.lanes > 1 and be_o is None):
            if data_oe:
                self._fail("DATA or BE driven with an unknown value")
            data_o, be_o = 0, 0
        t, prev = self.cycle_number, self._prev
        rxf_n, txe_n = self.rxf_n, self.txe_n

        if data_oe and not oe_n:
            self._fail("the FPGA drives DATA while OE# is low (bus contention)")
        if data_oe and not prev["oe_n"]:
            self._fail("the FPGA drives DATA in the cycle after OE# was low "
                       "(no turnaround cycle)")
        if not oe_n and prev["data_oe"]:
            self._fail("OE# low in the cycle after the FPGA drove DATA (no turnaround cycle)")
        if not rd_n and not wr_n:
            self._fail("RD# and WR# low together")
        if not rd_n and (oe_n or prev["oe_n"]):
            self._fail("RD# low without OE# low in this and the previous cycle")
        if not rd_n and prev["rxf_n"]:
            self._fail("RD# low after a cycle with RXF# high")
        if not wr_n and not data_oe:
            self._fail("WR# low while the FPGA does not drive DATA")
        if not wr_n and prev["txe_n"]:
            self._fail("WR# low after a cycle with TXE# high")
        if not wr_n and self.lanes > 1 and be_o not in {(1 << k) - 1
                                                         for k in range(1, self.lanes + 1)}:
            self._fail(f"BE {be_o:#x} on a write: not ones from byte 0 up")
        if not siwu_n:
            self.send_immediate += 1

        mask = (1 << self.width) - 1
        if not oe_n:
            if not rxf_n:
                data_i, be_i = self.host[0]
            else:
                data_i, be_i = _garbage(t, 1, self.width), _garbage(t, 2, self.lanes)
        elif data_oe:
            data_i, be_i = data_o & mask, be_o
        else:
            data_i, be_i = _garbage(t, 3, self.width), _garbage(t, 4, self.lanes)
        out = {"rxf_n": rxf_n, "txe_n": txe_n, "data_i": data_i}
        if self.lanes > 1:
            out["be_i"] = be_i

        # The clock edge at the end of the cycle.
        if not rd_n and not rxf_n:
            word, be = self.host.popleft()
            self.read.append((t, word, be))
        if not wr_n:
            if txe_n:
                self.refused += 1
            else:
                self.written.append((t, data_o & mask, be_o))
                self.to_host += bytes((data_o >> (8 * i)) & 0xFF
                                      for i in range(self.lanes) if be_o >> i & 1)
        self._rxf_stalled = self._rxf_stalls.advance()
        self._txe_stalled = self._txe_stalls.advance()
        self._rxf_held = max(self._rxf_held - 1, 0)
        self._txe_held = max(self._txe_held - 1, 0)
        self._prev = {"oe_n": oe_n, "data_oe": data_oe, "rxf_n": rxf_n, "txe_n": txe_n}
        self.cycle_number += 1
        return out


class FabricEnds:
    """A byte source on ``tx`` and a byte sink on ``rx``, one cycle per :meth:`cycle`.

    The source offers ``to_send`` in order: in a cycle where it holds no byte it offers the
    next with probability ``valid_rate``, and holds it (``valid`` and ``payload`` unchanged)
    until taken. The sink sets ``ready`` with probability ``ready_rate`` each cycle and checks
    that a byte offered on ``rx`` and not taken is offered again, unchanged.

    Members
    -------
    received : bytearray
        Bytes taken from ``rx``.
    sent : int
        Bytes taken by ``tx``.
    rx_cycles, tx_cycles : list of int
        Cycles of each transfer on ``rx`` / ``tx``.
    """

    def __init__(self, to_send, *, seed=0, valid_rate=1.0, ready_rate=1.0):
        self.to_send = bytes(to_send)
        self.valid_rate, self.ready_rate = valid_rate, ready_rate
        self._rng = np.random.default_rng([seed, 0xFAB])
        self._draws, self._at = np.empty((0, 2)), 0
        self.received = bytearray()
        self.sent = 0
        self.rx_cycles, self.tx_cycles = [], []
        self._offering = False
        self._rx_held = None
        self.cycle_number = 0

    def cycle(self, *, rx_valid, rx_payload, tx_ready):
        """One cycle: given the component's ``rx.valid``, ``rx.payload`` and ``tx.ready``,
        return ``{"rx_ready", "tx_valid", "tx_payload"}`` and apply the transfers."""
        t = self.cycle_number
        if self._at == len(self._draws):
            self._draws, self._at = self._rng.random((4096, 2)), 0
        u_ready, u_valid = self._draws[self._at]
        self._at += 1
        if self._rx_held is not None and (not rx_valid or rx_payload != self._rx_held):
            raise AssertionError(f"rx, cycle {t}: byte {self._rx_held:#04x} offered and not "
                                 f"taken changed to valid={rx_valid} payload={rx_payload!r}")
        ready = int(u_ready < self.ready_rate)
        if not self._offering and self.sent < len(self.to_send):
            self._offering = bool(u_valid < self.valid_rate)
        payload = self.to_send[self.sent] if self._offering else 0
        if rx_valid and ready:
            self.received.append(rx_payload)
            self.rx_cycles.append(t)
        self._rx_held = rx_payload if rx_valid and not ready else None
        out = {"rx_ready": ready, "tx_valid": int(self._offering), "tx_payload": payload}
        if self._offering and tx_ready:
            self.sent += 1
            self.tx_cycles.append(t)
            self._offering = False
        self.cycle_number += 1
        return out


@dataclass
class RunResult:
    """A finished run: its :class:`Outcome`, length, pin-trace digest and the models."""

    outcome: Outcome
    cycles: int
    digest: str
    chip: FT245Chip = field(repr=False)
    fabric: FabricEnds = field(repr=False)


class FT245Bench:
    """Everything around a :class:`~timebin.gateware.link.ft245.FT245SyncFIFO` for one
    :class:`Stimulus`: the chip on its pads, the byte source and sink on its streams.

    :meth:`step` takes the component's outputs of a cycle by their flattened port names
    (:data:`PAD_OUTPUTS` and ``rx__valid``, ``rx__payload``, ``tx__ready``) and returns the
    inputs to set for that cycle (``rxf_n``, ``txe_n``, ``data_i``, [``be_i``],
    ``rx__ready``, ``tx__valid``, ``tx__payload``). ``done`` turns true
    :data:`DRAIN_CYCLES` cycles after every byte arrived. Each byte is checked as it
    arrives, against ``stimulus.host_to_fpga`` on ``rx`` and ``stimulus.fpga_to_host`` at the
    host: a byte lost, repeated or out of order fails in the cycle it shows.

    ``host_words`` (``[(word, be), ...]``) replaces the words the chip presents, packed from
    the stimulus by default; their enabled bytes must then be ``stimulus.host_to_fpga``.
    """

    def __init__(self, stimulus, host_words=None):
        s = self.stimulus = stimulus
        if host_words is None:
            host_words = pack_words(s.width, s.host_to_fpga, s.chunk_sizes)
        self.chip = FT245Chip(s.width, host_words, seed=s.seed, rxf_stall=s.rxf_stall,
                              txe_stall=s.txe_stall, stall_mean=s.stall_mean)
        self.fabric = FabricEnds(s.fpga_to_host, seed=s.seed, valid_rate=s.tx_valid_rate,
                                 ready_rate=s.rx_ready_rate)
        self.lanes = s.width // 8
        self.n_rx = len(s.host_to_fpga)
        self.cycles = 0
        self._checked_rx = self._checked_tx = 0
        self._complete_at = None
        self._hash = hashlib.sha256()

    @property
    def input_names(self):
        return (("rxf_n", "txe_n", "data_i") + (("be_i",) if self.lanes > 1 else ())
                + FABRIC_INPUTS)

    @property
    def output_names(self):
        return tuple(n for n in PAD_OUTPUTS if n != "be_o" or self.lanes > 1) + FABRIC_OUTPUTS

    @property
    def complete(self):
        """Every byte arrived at its end."""
        return (len(self.fabric.received) >= self.n_rx
                and len(self.chip.to_host) >= len(self.stimulus.fpga_to_host))

    @property
    def done(self):
        return self._complete_at is not None and self.cycles >= self._complete_at + DRAIN_CYCLES

    def step(self, outputs):
        """One cycle; see the class docstring."""
        o = outputs
        pads = self.chip.cycle(rd_n=o["rd_n"], wr_n=o["wr_n"], oe_n=o["oe_n"],
                               data_oe=o["data_oe"], data_o=o["data_o"], be_o=o.get("be_o"),
                               siwu_n=o["siwu_n"])
        fab = self.fabric.cycle(rx_valid=o["rx__valid"], rx_payload=o["rx__payload"],
                                tx_ready=o["tx__ready"])
        self._hash.update(repr(tuple(o[n] for n in self.output_names)).encode())
        self._check_arrivals()
        self.cycles += 1
        if self._complete_at is None and self.complete:
            self._complete_at = self.cycles
        pads.update({"rx__ready": fab["rx_ready"], "tx__valid": fab["tx_valid"],
                     "tx__payload": fab["tx_payload"]})
        return pads

    def _check_arrivals(self):
        """Fail at the first byte that arrives out of order, twice, or not at all (a later
        one in its place), naming the cycle."""
        for what, got, want, at in (("rx", self.fabric.received, self.stimulus.host_to_fpga,
                                     self._checked_rx),
                                    ("host", self.chip.to_host, self.stimulus.fpga_to_host,
                                     self._checked_tx)):
            for i in range(at, len(got)):
                if i >= len(want) or got[i] != want[i]:
                    expect = f"{want[i]:#04x}" if i < len(want) else "no more bytes"
                    raise AssertionError(f"cycle {self.cycles}: byte {i} at the {what} end "
                                         f"is {got[i]:#04x}, want {expect}")
        self._checked_rx, self._checked_tx = len(self.fabric.received), len(self.chip.to_host)

    def result(self, counters):
        """The :class:`RunResult`, given the component's final ``rx_bytes``, ``tx_bytes``
        and ``overruns``."""
        outcome = Outcome(rx=bytes(self.fabric.received), tx=bytes(self.chip.to_host),
                          rx_bytes=int(counters["rx_bytes"]), tx_bytes=int(counters["tx_bytes"]),
                          overruns=int(counters["overruns"]))
        return RunResult(outcome=outcome, cycles=self.cycles, digest=self._hash.hexdigest(),
                         chip=self.chip, fabric=self.fabric)


def _port(dut, name):
    """The member of ``dut`` behind a flattened port name (``rx__valid`` -> ``dut.rx.valid``)."""
    obj = dut
    for part in name.split("__"):
        obj = getattr(obj, part)
    return obj


def simulate_rtl(stimulus, *, dut=None, host_words=None, max_cycles=None, vcd=None,
                 max_burst=DEFAULT_MAX_BURST, on_cycle=None):
    """Run ``stimulus`` through the gateware in the Amaranth simulator; return the
    :class:`RunResult`. ``dut`` defaults to a new ``FT245SyncFIFO(width=stimulus.width)``;
    ``host_words`` replaces the words packed from the stimulus (:class:`FT245Bench`);
    ``on_cycle(bench)`` is called before each cycle (to hold a pin or queue words at a
    chosen cycle). Raises ``AssertionError`` on a protocol violation or when not done after
    ``max_cycles`` (default: generous for the stimulus)."""
    from amaranth.sim import Simulator

    from ...gateware.link.ft245 import FT245SyncFIFO

    if dut is None:
        dut = FT245SyncFIFO(width=stimulus.width, max_burst=max_burst)
    bench = FT245Bench(stimulus, host_words)
    if max_cycles is None:
        max_cycles = 1000 + 20 * (len(stimulus.host_to_fpga) + len(stimulus.fpga_to_host))
    outputs = [(name, _port(dut, name)) for name in bench.output_names]
    inputs = {name: _port(dut, name) for name in bench.input_names}
    counters = {}

    async def testbench(ctx):
        for _ in range(max_cycles):
            if on_cycle is not None:
                on_cycle(bench)
            values = bench.step({name: ctx.get(port) for name, port in outputs})
            for name, value in values.items():
                ctx.set(inputs[name], value)
            await ctx.tick()
            if bench.done:
                break
        else:
            raise AssertionError(
                f"not done after {max_cycles} cycles: {len(bench.fabric.received)} of "
                f"{bench.n_rx} bytes on rx, {len(bench.chip.to_host)} of "
                f"{len(stimulus.fpga_to_host)} at the host")
        counters.update({name: ctx.get(getattr(dut, name)) for name in COUNTERS})

    sim = Simulator(dut)
    sim.add_clock(1 / 60e6)
    sim.add_testbench(testbench)
    if vcd is not None:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return bench.result(counters)
