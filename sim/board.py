"""A simulated board: a board's whole gateware (:mod:`timebin.gateware.system`) running in
Amaranth's simulator, its host link served on a pseudo-terminal and a TCP port, so that the
host's :class:`~timebin.host.board.Board` client talks to it exactly as to hardware.

The link is a byte pipe with backpressure, as an FT245 FIFO bridge is: a byte from the host
enters the board's ``link_rx`` one per cycle; bytes the board sends wait in a buffer of
:data:`OUTPUT_BUFFER` bytes for the host to read, and while it is full ``link_tx`` is not
ready (the board then holds its frames and, at the source, counts what it cannot carry).
Replies and streams go to the endpoint (pty or TCP client) that last sent bytes.

The lab side is simulated too:

- Bob's detectors: the deserializer words of a stimulus (``words``, ``(N, C, W*k)`` of 0/1,
  as :func:`timebin.sim.rx.run.load_words` gives them) are played from the word after the
  first ``epoch_load`` strobe, as if the light of symbol ``epoch`` arrived then; before and
  after, the detectors are silent. :meth:`BoardSimulation.reference_records` gives the
  records the receiver's reference model makes of the same words and settings.
- Alice's QRNG: seeded random entropy words, always valid.

The pieces of a board's testbench (:class:`LinkPump`, :class:`SeededQrng`,
:class:`DetectorPlayer`) also drive the two boards of the virtual lab's RTL session
(:mod:`timebin.sim.lab_rtl`).

Time in the simulation is cycles: the clock runs as fast as the simulator goes (a few
thousand cycles a second), so timeouts in cycles pass quickly in wall time.
"""

import errno
import json
import os
import selectors
import socket
import sys
import time
import tty

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

from ..gateware.regmap import board_parameters
from ..gateware.system import LINK_DEFAULTS, AliceBoard, BobBoard, LoopbackBoard
from .amaranth_helpers import SYS_PERIOD
from .words import bits_to_ints

__all__ = ["OUTPUT_BUFFER", "SIM_BOARD_TIMEOUT", "LinkEndpoints", "LinkPump", "SeededQrng",
           "seeded_qrng_bits",
           "DetectorPlayer", "BoardSimulation", "reference_records", "serve_main"]

#: Seconds a host client gives a simulated board to answer a request. A board in Amaranth's
#: Python simulator answers in seconds rather than a real board's milliseconds, and on a loaded
#: 2-core machine some requests have taken more than the client's default 10 s.
SIM_BOARD_TIMEOUT = 60.0

#: Bytes the board's output may hold before ``link_tx`` stops being ready.
OUTPUT_BUFFER = 1 << 16
#: Cycles between polls of the endpoints for host bytes while none are waiting.
_POLL_CYCLES = 16


class LinkEndpoints:
    """The host end of a simulated board's link: a pseudo-terminal and/or a TCP port.

    ``pty``: open a pseudo-terminal (raw mode); :attr:`pty_path` is the device the host opens.
    ``tcp_port``: listen on ``127.0.0.1:tcp_port`` (0: any free port; :attr:`tcp_port` tells);
    ``None``: no TCP. One TCP client at a time; a new one replaces the old.
    """

    def __init__(self, *, pty=True, tcp_port=None, host="127.0.0.1"):
        self._selector = selectors.DefaultSelector()
        self.pty_path = None
        self.tcp_port = None
        self._master = self._slave = self._listener = self._client = None
        self._active = None
        if pty:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.pty_path = os.ttyname(self._slave)
            self._selector.register(self._master, selectors.EVENT_READ, "pty")
            self._active = self._master
        if tcp_port is not None:
            self._listener = socket.create_server((host, tcp_port))
            self._listener.setblocking(False)
            self.tcp_port = self._listener.getsockname()[1]
            self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        if self._master is None and self._listener is None:
            raise ValueError("A simulated board needs a pty or a TCP port")

    def receive(self, timeout=0):
        """Bytes the host sent (possibly empty), waiting at most ``timeout`` seconds."""
        data = bytearray()
        for key, _ in self._selector.select(timeout):
            if key.data == "listen":
                self._accept()
            elif key.data == "pty":
                try:
                    chunk = os.read(self._master, 1 << 16)
                except OSError as error:        # EIO: no process has the pty open
                    if error.errno not in (errno.EIO, errno.EAGAIN):
                        raise
                    chunk = b""
                if chunk:
                    data += chunk
                    self._active = self._master
            elif key.data == "client":
                try:
                    chunk = self._client.recv(1 << 16)
                except (BlockingIOError, ConnectionError):
                    chunk = b"" if self._client else b""
                if chunk:
                    data += chunk
                    self._active = self._client
                else:
                    self._drop_client()
        return bytes(data)

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self._drop_client()
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = client
        self._selector.register(client, selectors.EVENT_READ, "client")

    def _drop_client(self):
        if self._client is not None:
            self._selector.unregister(self._client)
            if self._active is self._client:
                self._active = self._master
            self._client.close()
            self._client = None

    def send(self, data):
        """Write what the endpoint takes now of ``data``; returns the bytes written (0 when
        no host has spoken yet over TCP, or its buffer is full)."""
        if not data or self._active is None:
            return 0
        try:
            if self._active is self._master:
                return os.write(self._master, data)
            return self._client.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            if self._active is self._client:
                self._drop_client()
            return 0

    def close(self):
        self._drop_client()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        if self._listener is not None:
            self._listener.close()
        self._selector.close()
        self._master = self._slave = self._listener = None


class LinkPump:
    """The byte pipe between a board's ``link_rx``/``link_tx`` ports and its
    :class:`LinkEndpoints`, as the module docstring describes it: a host byte enters
    ``link_rx`` one per cycle; the board's bytes wait in a buffer of :data:`OUTPUT_BUFFER`
    bytes (``link_tx`` not ready while it is full) and go to the endpoint that last spoke.

    In a testbench, each cycle: :meth:`drive` (before any ``ctx.get`` of the cycle),
    :meth:`take` (after every ``ctx.set`` of the cycle, before the clock edge), then, after
    the edge, :meth:`send`. ``bytes_in`` and ``bytes_out`` count the bytes moved.
    """

    def __init__(self, endpoints, link_rx, link_tx):
        self.endpoints = endpoints
        self.rx, self.tx = link_rx, link_tx
        self.bytes_in = 0
        self.bytes_out = 0
        self._in, self._pos = bytearray(), 0
        self._out = bytearray()
        self._have = self._room = False

    def drive(self, ctx, cycle):
        """Offer the next host byte (polling the endpoints every few cycles while none
        waits) and tell the board whether its output has room."""
        if self._pos == len(self._in) and cycle % _POLL_CYCLES == 0:
            data = self.endpoints.receive(0)
            if data:
                self._in, self._pos = bytearray(data), 0
                self.bytes_in += len(data)
        self._have = self._pos < len(self._in)
        ctx.set(self.rx.valid, self._have)
        if self._have:
            ctx.set(self.rx.payload, self._in[self._pos])
        self._room = len(self._out) < OUTPUT_BUFFER
        ctx.set(self.tx.ready, self._room)

    def take(self, ctx):
        """The cycle's handshakes: the host byte taken, the board's byte buffered."""
        if self._have and ctx.get(self.rx.ready):
            self._pos += 1
        if self._room and ctx.get(self.tx.valid):
            self._out.append(ctx.get(self.tx.payload))

    def send(self, cycle):
        """Hand the buffered bytes to the host (every few cycles, or once 256 wait)."""
        out = self._out
        if out and (len(out) >= 256 or cycle % _POLL_CYCLES == 0):
            sent = self.endpoints.send(out)
            self.bytes_out += sent
            del out[:sent]


class SeededQrng:
    """Alice's QRNG in simulation: a fresh seeded random entropy word on ``qrng`` (a stream
    of the transmitter's entropy width) every cycle, always valid. Call :meth:`start` once,
    then :meth:`drive` every cycle (one word is drawn per cycle, taken or not, so the words
    of cycle ``c`` depend on ``seed`` and ``c`` only: :func:`seeded_qrng_bits` gives them
    to the transmitter model)."""

    def __init__(self, qrng, seed):
        self.qrng = qrng
        self.bits = len(Value.cast(qrng.payload))
        self.rng = np.random.default_rng(seed)

    def start(self, ctx):
        ctx.set(self.qrng.valid, 1)

    def drive(self, ctx):
        ctx.set(self.qrng.payload, int.from_bytes(
            self.rng.bytes((self.bits + 7) // 8), "little") & ((1 << self.bits) - 1))


def seeded_qrng_bits(seed, width, cycles):
    """The entropy words :class:`SeededQrng` offers in cycles ``0 .. cycles - 1`` for
    ``seed`` and an entropy ``width``: (cycles, width) uint8 of 0/1, bit 0 first (the
    transmitter model's ``qrng_bits``)."""
    rng = np.random.default_rng(seed)
    nbytes = (width + 7) // 8
    raw = np.frombuffer(b"".join(rng.bytes(nbytes) for _ in range(cycles)), np.uint8)
    return np.unpackbits(raw.reshape(cycles, nbytes), axis=1, bitorder="little")[:, :width]


class DetectorPlayer:
    """Bob's detectors in simulation: from the cycle after the first ``epoch_load`` strobe,
    word ``p`` (:meth:`word`) is played into the receiver's ``samples`` in cycle
    ``epoch_cycle + 1 + p``; before the strobe the detectors are silent.

    ``top``: a board with ``samples`` and a ``receiver``; ``words``: the deserializer words
    as ints (:func:`~timebin.sim.words.bits_to_ints` of the flattened words), silence after
    them. Subclasses override :meth:`word` to play words made as the run goes. Call
    :meth:`drive` every cycle (before the cycle's ``ctx.get`` of other signals is fine).
    """

    def __init__(self, top, words=()):
        self.samples = Value.cast(top.samples)
        self.epoch_load = Value.cast(top.receiver.epoch_load)
        self.word_ints = list(words)
        #: Cycle of the first ``epoch_load`` (``None`` until then).
        self.epoch_cycle = None
        #: Words played since the strobe (silence included).
        self.played = 0
        self._last = 0

    def word(self, p):
        """The word played ``p`` words after the strobe (an int; 0 is silence)."""
        return self.word_ints[p] if p < len(self.word_ints) else 0

    def drive(self, ctx, cycle):
        if self.epoch_cycle is not None:
            value = self.word(self.played)
            if value or self._last:
                ctx.set(self.samples, value)
            self._last = value
            self.played += 1
        elif ctx.get(self.epoch_load):
            self.epoch_cycle = cycle


class BoardSimulation:
    """One board (``role`` ``alice`` or ``bob``) in Amaranth's simulator.

    Parameters
    ----------
    role : str
        ``alice``, ``bob`` or ``loopback`` (both tops and the on-chip sifter; the detector
        words play as on Bob's board, and the QRNG is Alice's).
    params : dict
        The top's parameters (:class:`~timebin.gateware.rx.top.Receiver` or
        :class:`~timebin.gateware.tx.top.Transmitter`; for a loopback board
        ``{"alice": ..., "bob": ...}``).
    board, link : dict
        Board and link parameters (:data:`~timebin.gateware.regmap.BOARD_DEFAULTS`,
        :data:`~timebin.gateware.system.LINK_DEFAULTS`).
    words : array or None
        Bob: the detector words played from the first ``epoch_load``.
    seed : int
        Alice: seed of the QRNG's entropy.
    """

    def __init__(self, role, *, params, board=None, link=None, words=None, seed=0):
        link = {**LINK_DEFAULTS, **(link or {})}
        if role == "bob":
            self.top = BobBoard(params=params, board=board, link=link)
        elif role == "alice":
            if words is not None:
                raise ValueError("Detector words are for a Bob board, not Alice's")
            self.top = AliceBoard(params=params, board=board, link=link)
        elif role == "loopback":
            self.top = LoopbackBoard(params=params, board=board, link=link)
        else:
            raise ValueError(f"Board role must be 'alice', 'bob' or 'loopback', not {role!r}")
        self.role = role
        self.board = board_parameters(role, board or {})
        self.seed = seed
        self.words = None
        self.word_ints = None
        if words is not None:
            rx = self.top.receiver
            words = np.asarray(words, np.uint8)
            shape = (rx.channels, rx.uis_per_word * rx.params["oversampling"])
            if words.ndim != 3 or words.shape[1:] != shape:
                raise ValueError(f"Detector words must have shape (N, {shape[0]}, "
                                 f"{shape[1]}), not {words.shape}")
            self.words = words
            self.word_ints = bits_to_ints(words.reshape(len(words), -1))
        self._player = None
        self.cycles = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def reference_records(self, epoch, **settings):
        """:func:`reference_records` of this board's words."""
        if self.words is None:
            raise ValueError("This board plays no detector words")
        return reference_records(self.top.receiver.params, self.words, epoch, **settings)

    def serve(self, endpoints, *, max_cycles=None, until=None, ready=None):
        """Run the board against ``endpoints`` (a :class:`LinkEndpoints`) until ``max_cycles``
        cycles have run or ``until()`` returns true (checked every few hundred cycles).
        ``ready``: called once, after the first cycle (to tell a parent process)."""
        top = self.top
        sim = Simulator(top)
        sim.add_clock(SYS_PERIOD)
        pump = LinkPump(endpoints, top.link_rx, top.link_tx)
        player = qrng = None
        if self.role in ("bob", "loopback"):
            player = self._player = DetectorPlayer(top, self.word_ints or ())
        if self.role in ("alice", "loopback"):
            qrng = SeededQrng(top.qrng, self.seed)

        async def bench(ctx):
            if qrng is not None:
                qrng.start(ctx)
            cycle = 0
            while True:
                pump.drive(ctx, cycle)
                if player is not None:
                    player.drive(ctx, cycle)
                if qrng is not None:
                    qrng.drive(ctx)
                pump.take(ctx)
                await ctx.tick()
                cycle += 1
                self.cycles = cycle
                pump.send(cycle)
                self.bytes_in, self.bytes_out = pump.bytes_in, pump.bytes_out
                if cycle == 1 and ready is not None:
                    ready()
                if max_cycles is not None and cycle >= max_cycles:
                    return
                if until is not None and cycle % 256 == 0 and until():
                    return

        sim.add_testbench(bench)
        sim.run()

    @property
    def epoch_cycle(self):
        """Cycle of the first ``epoch_load`` (``None`` until then); the words play from the
        next cycle on."""
        player = getattr(self, "_player", None)
        return None if player is None else player.epoch_cycle


def reference_records(params, words, epoch, **settings):
    """The records the receiver's reference model (``params``: the receiver's) makes of
    ``words`` as a simulated Bob board plays them: ``epoch`` loaded in the cycle before the
    first word, ``settings`` (receiver settings in the model's form) held throughout, the
    record stream always ready, and silence after the words until every record is out.
    ``{field: array}`` in the order the receiver emits them."""
    from .rx.top import ReceiverModel
    model = ReceiverModel(**params)
    words = np.asarray(words, np.uint8)
    silence = np.zeros((1, *words.shape[1:]), np.uint8)
    tail = model.latency + params.get("fifo_depth", 16) * params["channels"] + 1
    samples = np.concatenate((silence, words, np.repeat(silence, tail, axis=0)))
    load = np.zeros(len(samples), np.uint8)
    load[0] = 1
    epochs = np.full(len(samples), epoch, np.uint64)
    return model.run(samples, epoch=epochs, epoch_load=load, **settings).taken()


def serve_main(role, *, params, board=None, link=None, words=None, seed=0, pty=True,
               tcp_port=None, max_cycles=None, out=sys.stdout):
    """``timebin board simulate``: build the board, open the endpoints, print one JSON line
    (role, pty path, TCP port, the description) and serve until killed or ``max_cycles``."""
    simulation = BoardSimulation(role, params=params, board=board, link=link, words=words,
                                 seed=seed)
    endpoints = LinkEndpoints(pty=pty, tcp_port=tcp_port)
    started = time.monotonic()

    def announce():
        out.write(json.dumps({"role": role, "pty": endpoints.pty_path,
                              "tcp": endpoints.tcp_port,
                              "description": json.loads(simulation.top.description)}) + "\n")
        out.flush()

    try:
        simulation.serve(endpoints, max_cycles=max_cycles, ready=announce)
    finally:
        endpoints.close()
    elapsed = time.monotonic() - started
    return {"cycles": simulation.cycles, "seconds": elapsed,
            "cycles_per_s": simulation.cycles / elapsed if elapsed else None,
            "bytes_in": simulation.bytes_in, "bytes_out": simulation.bytes_out}
