"""Byte transports between the host and a board, behind one interface.

A board's link (DESIGN.md section 4) is a byte stream in each direction: frames of
:mod:`timebin.gateware.frames` go out, frames come back. How the bytes travel is the
transport's business:

========================================  ===============================================
URL                                       transport
========================================  ===============================================
``serial:///dev/ttyUSB1?baud=3000000``    a UART (pyserial): USB-UART bridges, and a
                                          pseudo-terminal served by a simulated board
``tcp://localhost:4000``                  a TCP socket (a simulated board, a network bridge)
``file:///dev/xdma0_c2h_0?write=/dev/     a character device or file pair, the way PCIe
xdma0_h2c_0``                             DMA engines (Xilinx XDMA, LitePCIe) present their
                                          streams; or a recorded capture to replay
``ftdi://ftdi:2232h/1``                   an FT245-style synchronous FIFO (FT2232H, FT232H)
                                          through pyftdi
``sim://bob?channels=2&cycles=3000``      a simulated board started for this connection:
                                          ``timebin board simulate`` in a child process,
                                          reached over TCP (query: its options)
========================================  ===============================================

Every transport has ``write(data)`` (all of it, or an error), ``read(size, timeout)`` (up to
``size`` bytes, fewer or none when ``timeout`` seconds pass) and ``close()``, and is a
context manager. Errors are :class:`TransportError` naming the URL.
"""

import json
import os
import select
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

__all__ = ["TransportError", "Transport", "SerialTransport", "TcpTransport", "FileTransport",
           "FtdiFifoTransport", "SimulatedBoardTransport", "open_transport", "DEFAULT_BAUD"]

#: Baud rate of a serial URL without ``?baud=``: 3 Mbaud, what FT2232H-class bridges run.
DEFAULT_BAUD = 3_000_000


class TransportError(OSError):
    """A transport could not be opened, or failed while in use."""


class Transport:
    """The interface every transport offers (see the module docstring)."""

    url = None

    def write(self, data):
        raise NotImplementedError

    def read(self, size, timeout=None):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.url}>"


class SerialTransport(Transport):
    """A UART through pyserial: a USB-UART bridge or a pseudo-terminal (``port`` a device
    path or any pyserial URL such as ``loop://``)."""

    def __init__(self, port, baudrate=DEFAULT_BAUD):
        import serial

        self.url = f"serial://{port}?baud={baudrate}"
        try:
            self._port = serial.serial_for_url(port, baudrate=baudrate, timeout=0,
                                               write_timeout=10)
        except (serial.SerialException, ValueError) as error:
            raise TransportError(f"Cannot open {self.url}: {error}") from None

    def write(self, data):
        try:
            self._port.write(bytes(data))
            self._port.flush()
        except OSError as error:
            raise TransportError(f"Write to {self.url} failed: {error}") from None

    def read(self, size, timeout=None):
        self._port.timeout = timeout
        try:
            first = self._port.read(1) if size else b""
            if not first:
                return b""
            waiting = min(size - 1, self._port.in_waiting)
            return first + (self._port.read(waiting) if waiting else b"")
        except OSError as error:
            raise TransportError(f"Read from {self.url} failed: {error}") from None

    def close(self):
        self._port.close()


class TcpTransport(Transport):
    """A TCP connection to ``host:port``."""

    def __init__(self, host, port, connect_timeout=10.0):
        self.url = f"tcp://{host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as error:
            raise TransportError(f"Cannot connect to {self.url}: {error}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data):
        self._sock.settimeout(None)
        try:
            self._sock.sendall(bytes(data))
        except OSError as error:
            raise TransportError(f"Write to {self.url} failed: {error}") from None

    def read(self, size, timeout=None):
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            return b""
        except OSError as error:
            raise TransportError(f"Read from {self.url} failed: {error}") from None
        if not data and size:
            raise TransportError(f"{self.url} closed by the board")
        return data

    def close(self):
        self._sock.close()


class FileTransport(Transport):
    """A character device or file to read (``read_path``) and optionally one to write: the
    card-to-host and host-to-card streams of a PCIe DMA engine, or a capture to replay (a
    regular file reads to its end, then returns nothing)."""

    def __init__(self, read_path, write_path=None):
        self.url = f"file://{read_path}" + (f"?write={write_path}" if write_path else "")
        try:
            self._rfd = os.open(read_path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as error:
            raise TransportError(f"Cannot open {read_path} of {self.url}: {error}") from None
        self._wfd = None
        if write_path:
            try:
                self._wfd = os.open(write_path, os.O_WRONLY)
            except OSError as error:
                os.close(self._rfd)
                raise TransportError(f"Cannot open {write_path} of {self.url}: {error}") \
                    from None

    def write(self, data):
        if self._wfd is None:
            raise TransportError(f"{self.url} has no write stream")
        view = memoryview(bytes(data))
        while view:
            try:
                view = view[os.write(self._wfd, view):]
            except OSError as error:
                raise TransportError(f"Write to {self.url} failed: {error}") from None

    def read(self, size, timeout=None):
        ready, _, _ = select.select([self._rfd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self._rfd, size)
        except BlockingIOError:
            return b""
        except OSError as error:
            raise TransportError(f"Read from {self.url} failed: {error}") from None

    def close(self):
        os.close(self._rfd)
        if self._wfd is not None:
            os.close(self._wfd)


class FtdiFifoTransport(Transport):
    """An FT245-style synchronous FIFO through pyftdi (FT2232H/FT232H in 245 synchronous
    FIFO mode, 60 MHz x 8 bits): ``url`` is a pyftdi URL such as ``ftdi://ftdi:2232h/1``.

    Ref: FTDI AN_130, "FT2232H Used in an FT245 Style Synchronous FIFO Mode"."""

    def __init__(self, url, latency_ms=2):
        self.url = url
        try:
            from pyftdi.ftdi import Ftdi

            self._ftdi = Ftdi()
            self._ftdi.open_from_url(url)
            self._ftdi.set_bitmode(0xFF, Ftdi.BitMode.SYNCFF)
            self._ftdi.set_latency_timer(latency_ms)
            self._ftdi.purge_buffers()
        except Exception as error:          # pyftdi raises USB, value and I/O errors
            raise TransportError(f"Cannot open {url}: {error}") from None

    def write(self, data):
        data = bytes(data)
        try:
            written = self._ftdi.write_data(data)
        except Exception as error:
            raise TransportError(f"Write to {self.url} failed: {error}") from None
        if written != len(data):
            raise TransportError(f"Write to {self.url} took {written} of {len(data)} bytes")

    def read(self, size, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                data = self._ftdi.read_data(size)
            except Exception as error:
                raise TransportError(f"Read from {self.url} failed: {error}") from None
            if data or (deadline is not None and time.monotonic() >= deadline):
                return bytes(data)
            time.sleep(0.0005)

    def close(self):
        self._ftdi.close()


class SimulatedBoardTransport(TcpTransport):
    """A simulated board (``timebin board simulate --role ROLE --tcp 0 --no-pty``, the
    board's gateware in Amaranth's simulator) started in a child process for this
    connection, and a TCP connection to it; closing the transport stops the board.

    ``options``: more options of ``timebin board simulate`` (``{"channels": "2"}`` gives
    ``--channels 2``; a list value repeats the option)."""

    def __init__(self, role, options=None, start_timeout=120.0):
        if role not in ("alice", "bob"):
            raise ValueError(f"Simulated board role must be alice or bob, not {role!r}")
        argv = [sys.executable, "-m", "timebin.host.cli", "board", "simulate", "--role", role,
                "--tcp", "0", "--no-pty"]
        for name, values in (options or {}).items():
            for value in values if isinstance(values, list) else [values]:
                argv += [f"--{name.replace('_', '-')}", str(value)]
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self._process.stdout], [], [], start_timeout)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            self._process.kill()
            self._process.wait()
            raise TransportError(f"The simulated {role} board did not start "
                                 f"(exit code {self._process.returncode})")
        #: What the board process announced: pty, TCP port, description.
        self.announcement = json.loads(line)
        try:
            super().__init__("127.0.0.1", self.announcement["tcp"])
        except TransportError:
            self._stop()
            raise
        self.url = f"sim://{role}"

    def _stop(self):
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stdout.close()

    def close(self):
        super().close()
        self._stop()


def open_transport(url):
    """The transport of ``url`` (see the module docstring); ``TransportError`` if it cannot
    be opened, ``ValueError`` naming a URL it does not understand."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "serial":
        baud = query.get("baud", [str(DEFAULT_BAUD)])[0]
        if not baud.isdigit() or int(baud) < 1:
            raise ValueError(f"Baud rate must be a positive integer, not {baud!r} in {url!r}")
        return SerialTransport(parts.netloc + parts.path, int(baud))
    if parts.scheme == "tcp":
        if not parts.hostname or parts.port is None:
            raise ValueError(f"A TCP URL needs a host and a port, not {url!r}")
        return TcpTransport(parts.hostname, parts.port)
    if parts.scheme == "file":
        if not parts.path:
            raise ValueError(f"A file URL needs a path, not {url!r}")
        return FileTransport(parts.path, query.get("write", [None])[0])
    if parts.scheme == "ftdi":
        return FtdiFifoTransport(url)
    if parts.scheme == "sim":
        return SimulatedBoardTransport(parts.netloc, {name: values if len(values) > 1
                                                      else values[0]
                                                      for name, values in query.items()})
    raise ValueError(f"Transport URL must start with serial://, tcp://, file://, ftdi:// or "
                     f"sim://, not {url!r}")
