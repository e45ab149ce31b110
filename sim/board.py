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

__all__ = ["OUTPUT_BUFFER", "LinkEndpoints", "BoardSimulation", "reference_records",
           "serve_main"]

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
        #: Cycle of the first ``epoch_load`` (``None`` until then); the words play from the
        #: next cycle on.
        self.epoch_cycle = None
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
        rx, tx = top.link_rx, top.link_tx
        samples = epoch_load = qrng = None
        if self.role in ("bob", "loopback"):
            samples = Value.cast(top.samples)
            epoch_load = Value.cast(top.receiver.epoch_load)
        if self.role in ("alice", "loopback"):
            qrng = top.qrng
            entropy_bits = len(Value.cast(qrng.payload))
            rng = np.random.default_rng(self.seed)

        async def bench(ctx):
            inbuf, pos = bytearray(), 0
            out = bytearray()
            playing = None
            played = len(self.word_ints) if self.word_ints is not None else 0
            if qrng is not None:
                ctx.set(qrng.valid, 1)
            cycle = 0
            while True:
                if pos == len(inbuf) and cycle % _POLL_CYCLES == 0:
                    data = endpoints.receive(0)
                    if data:
                        inbuf, pos = bytearray(data), 0
                        self.bytes_in += len(data)
                have = pos < len(inbuf)
                ctx.set(rx.valid, have)
                if have:
                    ctx.set(rx.payload, inbuf[pos])
                room = len(out) < OUTPUT_BUFFER
                ctx.set(tx.ready, room)
                if samples is not None:
                    if playing is not None and playing < played:
                        ctx.set(samples, self.word_ints[playing])
                        playing += 1
                    elif playing == played:
                        ctx.set(samples, 0)
                        playing += 1
                    if playing is None and ctx.get(epoch_load):
                        playing = 0
                        self.epoch_cycle = cycle
                if qrng is not None:
                    ctx.set(qrng.payload, int.from_bytes(
                        rng.bytes((entropy_bits + 7) // 8), "little") & ((1 << entropy_bits) - 1))
                if have and ctx.get(rx.ready):
                    pos += 1
                if room and ctx.get(tx.valid):
                    out.append(ctx.get(tx.payload))
                await ctx.tick()
                cycle += 1
                self.cycles = cycle
                if out and (len(out) >= 256 or cycle % _POLL_CYCLES == 0):
                    sent = endpoints.send(out)
                    self.bytes_out += sent
                    del out[:sent]
                if cycle == 1 and ready is not None:
                    ready()
                if max_cycles is not None and cycle >= max_cycles:
                    return
                if until is not None and cycle % 256 == 0 and until():
                    return

        sim.add_testbench(bench)
        sim.run()


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
