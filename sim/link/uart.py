"""Bit- and cycle-exact line models of :class:`timebin.gateware.link.uart.UARTTx` and
:class:`~timebin.gateware.link.uart.UARTRx`, written from the timing their docstrings state.

Both models run one clock cycle per ``step``: it returns the outputs the block shows in that
cycle (computed from the state and, where the block has a combinational path, the cycle's
inputs) and then takes the inputs through the clock edge. ``run`` does the same over whole
waveforms. Plain Python, no Amaranth.

Also the random stimulus of the link tests (Amaranth and cocotb alike): a stream source that
holds each item until taken (:class:`StreamSource`), ``ready`` patterns with stalls
(:func:`ready_pattern`) and faults forced onto a serial line (:func:`line_faults`).
"""

import collections

from ...gateware.link.uart import CHARACTER_BITS, ERROR_COUNTER_BITS, check_divisor

__all__ = ["character_bits", "line_levels", "UARTTxModel", "UARTRxModel", "StreamSource",
           "ready_pattern", "line_faults", "apply_line_faults", "compare_cycles"]



def character_bits(byte, stop=1):
    """The 10 bit levels of one 8N1 character: a low start bit, ``byte`` least significant bit
    first, the stop bit (``stop=0``: a framing error)."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def line_levels(bits, divisor):
    """A line waveform, one level per clock cycle, holding each of ``bits`` for ``divisor``
    cycles."""
    return [bit for bit in bits for _ in range(divisor)]


class UARTTxModel:
    """:class:`~timebin.gateware.link.uart.UARTTx` from reset.

    A byte taken in cycle ``c`` (``valid`` and ``ready``) drives its start bit in cycles
    ``c + 1 .. c + divisor``, data bit ``i`` from ``c + 1 + (1 + i) * divisor``, the stop bit
    from ``c + 1 + 9 * divisor`` to ``c + 10 * divisor``; ``ready`` is high while the line
    is idle and in the last cycle of a stop bit; ``tx`` is high when idle.

    Members
    -------
    taken : list of (int, int)
        ``(cycle, byte)`` of every byte taken so far.
    cycle : int
        The cycle the next :meth:`step` is.
    """

    def __init__(self, *, divisor):
        check_divisor(divisor)
        self.divisor = divisor
        self.cycle = 0
        self.taken = []
        self._first = 0             # first cycle of the character on the line
        self._last = -1             # its last cycle (the last of its stop bit)
        self._bits = []

    def step(self, valid=0, payload=0):
        """One cycle: return ``{"tx", "ready"}`` of this cycle, then take ``valid`` and
        ``payload`` (the byte offered on ``data``) through the clock edge."""
        t = self.cycle
        if self._first <= t <= self._last:
            tx = self._bits[(t - self._first) // self.divisor]
        else:
            tx = 1
        ready = int(t >= self._last)
        if valid and ready:
            if not 0 <= payload <= 0xFF:
                raise ValueError(f"UART byte must be 0..255, not {payload!r}")
            self.taken.append((t, payload))
            self._first, self._last = t + 1, t + CHARACTER_BITS * self.divisor
            self._bits = character_bits(payload)
        self.cycle += 1
        return {"tx": tx, "ready": ready}

    def run(self, valid, payload):
        """:meth:`step` over ``n`` cycles (``valid``, ``payload``: ``n`` ints each); returns
        ``{"tx", "ready": n ints}``."""
        out = {"tx": [], "ready": []}
        for v, p in zip(valid, payload, strict=True):
            shown = self.step(int(v), int(p))
            out["tx"].append(shown["tx"])
            out["ready"].append(shown["ready"])
        return out


class UARTRxModel:
    """:class:`~timebin.gateware.link.uart.UARTRx` (``divisor``, ``counter_bits``) from
    reset.

    ``rx`` passes a 2-flop synchroniser (high from reset): the synchronised line in cycle
    ``t`` is ``rx`` of cycle ``t - 2``. A fall of the synchronised line seen while idle, in
    cycle ``t0``, starts a character: the line is sampled in cycle ``s = t0 + divisor // 2``
    (the start bit: high there is a glitch, idle again from ``s + 1``), data bit ``i`` in
    ``s + (1 + i) * divisor``, the stop bit in ``s + 9 * divisor``; the receiver is idle
    again from the cycle after the stop bit's sample when it is high. A low stop bit is a
    framing error (counted, byte dropped); the receiver then waits for a high line, and is
    idle from the cycle after it. A byte whose stop bit is high is shown on ``data`` from the
    cycle after the stop bit's sample until taken; if the previous byte is still shown and
    not taken in that cycle, the new one is dropped and counted as an overrun.

    Members
    -------
    received : list of (int, int)
        ``(cycle, byte)``: each byte delivered and the first cycle it is shown.
    cycle : int
        The cycle the next :meth:`step` is.
    """

    def __init__(self, *, divisor, counter_bits=ERROR_COUNTER_BITS):
        check_divisor(divisor)
        self.divisor = divisor
        self.counter_bits = counter_bits
        self.cycle = 0
        self.received = []
        self._sync = [1, 1]         # the synchroniser's flops, first then second
        self._mode = "idle"         # idle, char (sampling a character), break
        self._sample = 0            # cycle of the next sample of a character
        self._index = 0             # samples taken of this character (0: the start bit)
        self._shift = 0
        self.valid = 0
        self.payload = 0
        self.framing_errors = 0
        self.overruns = 0
        self.errors = 0

    def outputs(self):
        """``{"valid", "payload", "framing_errors", "framing_error", "overruns",
        "overrun", "errors"}`` shown in the current cycle."""
        return {"valid": self.valid, "payload": self.payload,
                "framing_errors": self.framing_errors,
                "framing_error": int(self.framing_errors != 0),
                "overruns": self.overruns, "overrun": int(self.overruns != 0),
                "errors": self.errors}

    def step(self, rx=1, ready=0):
        """One cycle: return :meth:`outputs` of this cycle, then take ``rx`` (the line level)
        and ``ready`` (of ``data``) through the clock edge."""
        t = self.cycle
        shown = self.outputs()
        line = self._sync[1]
        stop_high = stop_low = False
        if self._mode == "idle":
            if not line:
                self._mode, self._sample, self._index = "char", t + self.divisor // 2, 0
        elif self._mode == "char":
            if t == self._sample:
                if self._index == 0:
                    if line:
                        self._mode = "idle"             # a glitch, not a start bit
                elif self._index <= 8:
                    self._shift = (self._shift >> 1) | (line << 7)
                elif line:
                    stop_high, self._mode = True, "idle"
                else:
                    stop_low, self._mode = True, "break"
                self._index += 1
                self._sample += self.divisor
        elif line:                                      # break: wait for a high line
            self._mode = "idle"
        lost = stop_high and self.valid and not ready
        if ready:
            self.valid = 0
        if stop_high and not lost:
            self.valid, self.payload = 1, self._shift
            self.received.append((t + 1, self._shift))
        if stop_low:
            self.framing_errors = self._counted(self.framing_errors)
        if lost:
            self.overruns = self._counted(self.overruns)
        if stop_low or lost:
            self.errors = self._counted(self.errors)
        self._sync = [int(bool(rx)), self._sync[0]]
        self.cycle += 1
        return shown

    def _counted(self, value):
        # ``count_events``: a ``counter_bits`` counter sticks at its maximum.
        return min(value + 1, (1 << self.counter_bits) - 1)

    def run(self, rx, ready):
        """:meth:`step` over ``n`` cycles (``rx``, ``ready``: ``n`` ints each, or ``ready``
        one int for all); returns ``{output: n ints}`` (see :meth:`outputs`)."""
        if isinstance(ready, int):
            ready = [ready] * len(rx)
        out = {name: [] for name in self.outputs()}
        for level, r in zip(rx, ready, strict=True):
            for name, value in self.step(int(level), int(r)).items():
                out[name].append(value)
        return out


# --- stimulus ------------------------------------------------------------------------------

class StreamSource:
    """A stream source driven one cycle at a time: it offers ``items`` in order, idles before
    each with probability ``gap_rate`` per cycle, and holds an offered item (``valid`` and
    ``payload`` unchanged) until it is taken. ``rng`` is a ``random.Random``.

    Per cycle: :meth:`drive` gives ``(valid, payload)``; :meth:`advance` tells it whether
    ``ready`` was high and returns the item taken, or ``None``.
    """

    def __init__(self, items, rng, gap_rate=0.0):
        self.items = collections.deque(items)
        self.rng = rng
        self.gap_rate = gap_rate
        self.offer = None
        self.payload = 0

    @property
    def done(self):
        """Whether every item was taken."""
        return self.offer is None and not self.items

    def push(self, item):
        """Queue one more item."""
        self.items.append(item)

    def drive(self):
        if self.offer is None and self.items and self.rng.random() >= self.gap_rate:
            self.offer = self.payload = self.items.popleft()
        return int(self.offer is not None), self.payload

    def advance(self, ready):
        if self.offer is not None and ready:
            taken, self.offer = self.offer, None
            return taken
        return None


def ready_pattern(rng, n, rate, *, stall_rate=0.0, stall_cycles=(10, 100)):
    """``n`` random ``ready`` levels: high with probability ``rate``; a stall (low for a
    number of cycles drawn from ``stall_cycles``) starts with probability ``stall_rate``."""
    out = []
    while len(out) < n:
        if rng.random() < stall_rate:
            out += [0] * rng.randint(*stall_cycles)
        else:
            out.append(int(rng.random() < rate))
    return out[:n]


def line_faults(rng, n, divisor, *, rate=0.002):
    """Faults forced onto a serial line for ``n`` cycles: per cycle ``None`` (the line passes)
    or the level forced. A fault starts with probability ``rate`` per cycle: a short low
    glitch (below half a bit: no start bit), a bit forced low or high (a corrupted byte or a
    framing error), or a break (low for 12 to 20 bits)."""
    out = [None] * n
    c = 0
    while c < n:
        if rng.random() >= rate:
            c += 1
            continue
        kind = rng.choice(("glitch", "bit", "bit", "break"))
        if kind == "glitch":
            length, level = rng.randint(1, divisor // 2 - 1), 0
        elif kind == "bit":
            length, level = divisor, rng.randint(0, 1)
        else:
            length, level = rng.randint(12, 20) * divisor, 0
        for k in range(c, min(n, c + length)):
            out[k] = level
        c += length
    return out


def apply_line_faults(level, fault):
    """The level a receiver sees: ``level`` unless ``fault`` forces one."""
    return level if fault is None else fault


def compare_cycles(got, want, *, masks=None, what="block"):
    """Check ``got`` (``{output: per-cycle ints}``, from the gateware) against ``want`` (the
    model's), cycle by cycle, for every output of ``want``. ``masks`` maps a
    stream payload to its ``valid``: the payload is compared only in cycles where ``valid``
    is high (it is meaningless otherwise). Raises ``AssertionError`` naming the first cycle
    and output that differ."""
    masks = {} if masks is None else masks
    for name, values in want.items():
        if name not in got:
            raise AssertionError(f"{what}: no output {name} recorded")
        mask = want[masks[name]] if name in masks else None
        for c, (a, b) in enumerate(zip(got[name], values, strict=True)):
            if a != b and (mask is None or mask[c]):
                raise AssertionError(f"{what}: {name} in cycle {c} is {a:#x} in the gateware, "
                                     f"{b:#x} in the model")
