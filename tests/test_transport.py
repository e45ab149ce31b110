"""Host transports: bytes through a real pseudo-terminal, a TCP socket, a FIFO and a file; bad
URLs and missing devices give errors naming them."""

import os
import socket
import subprocess
import sys
import threading
import tty

import pytest
from timebin.host.transport import (
    FileTransport,
    TcpTransport,
    TransportError,
    open_transport,
)

PAYLOAD = bytes(range(256)) * 64                                  # 16 KiB, every byte value


def read_exactly(transport, n, timeout=5.0):
    data = b""
    while len(data) < n:
        chunk = transport.read(n - len(data), timeout)
        if not chunk:
            break
        data += chunk
    return data


def test_serial_over_a_pty():
    """A pseudo-terminal, as a simulated board serves it: raw bytes both ways."""
    master, slave = os.openpty()
    tty.setraw(master)
    name = os.ttyname(slave)
    try:
        with open_transport(f"serial://{name}?baud=115200") as port:
            port.write(PAYLOAD[:4096])
            got = b""
            while len(got) < 4096:
                got += os.read(master, 4096)
            assert got == PAYLOAD[:4096]
            os.write(master, PAYLOAD[:3000])
            assert read_exactly(port, 3000) == PAYLOAD[:3000]
            assert port.read(10, timeout=0.05) == b""                 # nothing more: timeout
    finally:
        os.close(master)
        os.close(slave)


def test_tcp_echo():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    with open_transport(f"tcp://127.0.0.1:{port}") as link:
        assert isinstance(link, TcpTransport)
        link.write(PAYLOAD)
        assert read_exactly(link, len(PAYLOAD)) == PAYLOAD
        assert link.read(1, timeout=0.05) == b""
    server.close()


def test_character_device_streams(tmp_path):
    """Two FIFOs stand in for a DMA engine's card-to-host and host-to-card devices."""
    c2h, h2c = tmp_path / "c2h", tmp_path / "h2c"
    os.mkfifo(c2h)
    os.mkfifo(h2c)
    # A process plays the card: it echoes what it reads from h2c into c2h.
    card = subprocess.Popen([sys.executable, "-c", (
        "import sys\n"
        f"out = open({str(c2h)!r}, 'wb', buffering=0)\n"
        f"src = open({str(h2c)!r}, 'rb', buffering=0)\n"
        "while data := src.read(4096):\n"
        "    out.write(data)\n")])
    try:
        with open_transport(f"file://{c2h}?write={h2c}") as link:
            assert isinstance(link, FileTransport)
            link.write(PAYLOAD)
            assert read_exactly(link, len(PAYLOAD)) == PAYLOAD
    finally:
        card.wait(timeout=10)


def test_file_replay(tmp_path):
    capture = tmp_path / "capture.bin"
    capture.write_bytes(PAYLOAD)
    with FileTransport(str(capture)) as link:
        assert read_exactly(link, len(PAYLOAD) + 10) == PAYLOAD     # then end of file
        with pytest.raises(TransportError, match="has no write stream"):
            link.write(b"x")


@pytest.mark.parametrize(("url", "error", "text"), [
    ("usb://x", ValueError, "must start with serial://, tcp://, file://, ftdi:// or sim://, "
                            "not 'usb://x'"),
    ("serial:///dev/null?baud=fast", ValueError, "not 'fast'"),
    ("tcp://localhost", ValueError, "needs a host and a port"),
    ("serial:///dev/timebin-no-such-port", TransportError, "/dev/timebin-no-such-port"),
    ("file:///timebin/no/such/device", TransportError, "/timebin/no/such/device"),
    ("ftdi://ftdi:2232h/1", TransportError, "Cannot open ftdi://ftdi:2232h/1"),
])
def test_bad_urls(url, error, text):
    with pytest.raises(error, match=text.replace("?", r"\?").replace("(", r"\(")):
        open_transport(url)


def test_tcp_refused_names_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                                   # nothing listens here
    with pytest.raises(TransportError, match=f"tcp://127.0.0.1:{port}"):
        open_transport(f"tcp://127.0.0.1:{port}")
