"""cocotb testbench: the generated Verilog of
:class:`~timebin.gateware.rx.compress.RecordCompressor` against
:class:`~timebin.sim.rx.compress.RecordCompressorModel`, cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``top``          keyword arguments the ``RecordCompressor`` was built with
``name``         of the run, for messages
``stimulus``     path of an ``.npz`` file written by :func:`save_stimulus`: the records (in
                 the order the source offers them) and the per-cycle ``gaps``, ``ready``
                 (``words.ready``), ``flush``, ``k`` and ``timeout`` of
                 :meth:`RecordCompressorModel.run`, as ``tests/test_rx_compress.py`` makes
                 them
``check_rules``  also check in every cycle that ``records.ready``, ``words.valid`` and
                 ``words.payload`` do not follow ``records.valid`` and ``words.ready`` in the
                 same cycle (default False)
``cover``        ``{count: minimum}`` of what the run must exercise (default none), counts
                 of :func:`coverage`

One run per simulator process: a reset does not clear the output queue's storage, and
``words.payload`` shows its stale entry while ``words.valid`` is low, which the model (run
from reset, the memories as after configuration) has at 0 until the entry is first written.
So a second run in the same simulation could differ from the model on ``words.payload``
while ``words.valid`` is low.

The record source is the model's: it offers the next record in the first cycle after the
last was taken in which ``gaps`` is low, and holds it until taken, reacting to the RTL's
``records.ready``, as the Amaranth testbench of ``tests/test_rx_compress.py`` does. Every
cycle the inputs are driven at the falling edge and the outputs sampled once settled
(``ReadOnly``); with ``check_rules`` the inputs first go to the opposite of ``records.valid``
and ``words.ready`` for 1 ns. Every output port (and the source's ``valid``) is compared with
the model in every cycle; then the words taken must be the model's stream, and decode (host
decoder) to the records taken.
"""

import time

import cocotb
import numpy as np
from amaranth.hdl import Value
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, Timer
from timebin.gateware.records import DETECTION_FIELDS, MAX_K, field_offsets
from timebin.gateware.rx.compress import RecordCompressor
from timebin.host.records import decode_detections
from timebin.sim.cocotb.ports import reset, setting_ports
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.rx.compress import RECORD_FIELDS, RecordCompressorModel

CLK_PERIOD_NS = 10
RESET_CYCLES = 4

#: Per-cycle inputs of :meth:`RecordCompressorModel.run` besides the records.
PER_CYCLE = ("gaps", "ready", "flush", "k", "timeout")
#: Setting ports driven from ``PER_CYCLE`` (``gaps`` drive the source, ``ready`` the
#: ``words.ready`` port).
SETTING_PORTS = ("flush", "k", "timeout")
#: Outputs compared with the model (``RecordCompressorOutput`` fields): ``{name: port}``.
COMPARED = {"records_valid": "records__valid", "records_ready": "records__ready",
            "words_valid": "words__valid", "words": "words__payload",
            "records_in": "records_in", "words_out": "words_out", "escapes": "escapes",
            "settings_error": "settings_error"}
#: The ``Detection`` fields: ``{name: (offset, width)}``.
_OFFSETS = field_offsets(DETECTION_FIELDS)


def save_stimulus(path, records, **per_cycle):
    """Write ``records`` (``{field: (R,) array}``) and the per-cycle inputs ``gaps``,
    ``ready``, ``flush``, ``k``, ``timeout`` (each ``N`` values) to ``path``."""
    missing = set(PER_CYCLE) - set(per_cycle)
    if missing:
        raise ValueError(f"per-cycle inputs {sorted(missing)} missing")
    n = len(per_cycle["gaps"])
    arrays = {f"record_{name}": np.asarray(records[name]) for name in RECORD_FIELDS}
    arrays.update({name: np.broadcast_to(per_cycle[name], n) for name in PER_CYCLE})
    np.savez(path, **arrays)


def load_stimulus(path):
    """``(records, {input: (N,) int64})`` of a :func:`save_stimulus` file."""
    with np.load(path) as f:
        records = {name: f[f"record_{name}"] for name in RECORD_FIELDS}
        per_cycle = {name: f[name].astype(np.int64) for name in PER_CYCLE}
    return records, per_cycle


def record_payloads(records):
    """The ``records.payload`` int of each record."""
    return [sum(int(records[name][i]) << _OFFSETS[name][0] for name in RECORD_FIELDS)
            for i in range(len(records["index"]))]


def compare(got, want, what):
    """Raise ``AssertionError`` naming the first cycle where an output differs, every port
    that differs in it, the RTL's and the model's values."""
    first = {}
    for name in COMPARED:
        diff = np.flatnonzero(got[name] != want[name])
        if diff.size:
            first[name] = (int(diff[0]), diff.size)
    if not first:
        return
    cycle = min(c for c, _ in first.values())
    ports = ", ".join(f"{name}: RTL {int(got[name][cycle])}, model {int(want[name][cycle])}"
                      for name, (c, _) in first.items() if c == cycle)
    counts = ", ".join(f"{name} {count}" for name, (_, count) in first.items())
    raise AssertionError(f"{what}: RTL and model differ first in cycle {cycle}: {ports} "
                         f"(cycles differing per port: {counts})")


def coverage(model, per_cycle):
    """What the run exercised, from the model's outputs: records taken, blocks closed, words
    taken, escapes counted, cycles with a record held back (``stalled_records``) and with a
    word held back (``stalled_words``), cycles with ``k`` refused (``refused_k``) and blocks
    opened then (``refused_k_blocks``, with the last accepted ``k``), distinct ``k`` and
    alarms of the blocks."""
    blocks = model.blocks
    # The cycle each block's first record was taken: its block cycle is 2 later, and it took
    # the k in force in the cycle before that.
    taken = np.searchsorted(model.records_in.astype(np.int64), blocks["first"] + 1) - 1
    read_k = per_cycle["k"][np.minimum(taken + RecordCompressor.block_latency - 1,
                                       len(per_cycle["k"]) - 1)]
    return {"records": int(model.records_in[-1]), "blocks": len(blocks["count"]),
            "words": int(model.words_out[-1]), "escapes": int(model.escapes[-1]),
            "stalled_records": int((model.records_valid & ~model.records_ready).sum()),
            "stalled_words": int((model.words_valid & (per_cycle["ready"] == 0)).sum()),
            "refused_k": int(model.settings_error.sum()),
            "refused_k_blocks": int((read_k > MAX_K).sum()),
            "ks": len(set(blocks["k"].tolist())), "alarms": len(set(blocks["alarm"].tolist()))}


async def drive(dut, top, records, per_cycle, *, check_rules, what):
    """Run the stimulus from a reset with the model's record source; return the sampled
    outputs (``{name: (N,) uint64}``, named as ``COMPARED``) and the seconds it took."""
    payloads = record_payloads(records)
    count = len(payloads)
    n = len(per_cycle["gaps"])
    gaps = [int(x) for x in per_cycle["gaps"]]
    ready = [int(x) for x in per_cycle["ready"]]
    drives = [(getattr(dut, name), [int(x) for x in per_cycle[name]]) for name in SETTING_PORTS]
    words_ready = dut.words__ready
    valid, payload = dut.records__valid, dut.records__payload
    handles = {name: getattr(dut, port) for name, port in COMPARED.items()
               if name != "records_valid"}
    wide = [(name, h) for name, h in handles.items() if len(h) > 1]
    narrow = [(name, h) for name, h in handles.items() if len(h) == 1]
    rules = ("records_ready", "words_valid", "words")
    got = {name: [] for name in COMPARED}

    # During reset the settings hold their Amaranth init, as in Amaranth's simulator, and the
    # streams are idle; cycle 0 drives the stimulus.
    await reset(dut, setting_ports(top, {}),
                zero=("records__valid", "records__payload", "words__ready"),
                cycles=RESET_CYCLES)
    falling, settled, glimpse = FallingEdge(dut.clk), ReadOnly(), Timer(1, unit="ns")
    offered, holding = 0, False
    held = [None] * len(drives)
    start = time.monotonic()
    for c in range(n):
        offer = holding or (not gaps[c] and offered < count)
        if check_rules:
            valid.value = int(not offer)
            words_ready.value = 1 - ready[c]
            await glimpse
            before = [int(handles[name].value) if len(handles[name]) == 1
                      else handles[name].value.to_unsigned() for name in rules]
        for i, (handle, values) in enumerate(drives):
            if values[c] != held[i]:
                handle.value = held[i] = values[c]
        valid.value = int(offer)
        words_ready.value = ready[c]
        if offer:
            payload.value = payloads[offered]
        await settled
        got["records_valid"].append(int(offer))
        for name, handle in wide:
            got[name].append(handle.value.to_unsigned())
        for name, handle in narrow:
            got[name].append(int(handle.value))
        if check_rules:
            now = [got[name][-1] for name in rules]
            if before != now:
                raise AssertionError(
                    f"{what}: in cycle {c} {', '.join(rules)} were {before} with records.valid "
                    f"and words.ready inverted, {now} with them as driven")
        if offer and got["records_ready"][-1]:
            offered, holding = offered + 1, False
        elif offer:
            holding = True
        await falling
    return {name: np.array(values, np.uint64) for name, values in got.items()}, \
        time.monotonic() - start


def check_words(rtl, model, records, per_cycle, params, what):
    """Every block closed in the run left whole on ``words``: the words taken are the
    model's stream, and the host decodes them into the records taken."""
    taken = rtl["words"][(rtl["words_valid"] == 1) & (per_cycle["ready"] == 1)]
    assert np.array_equal(taken, model.stream.astype(np.uint64)), \
        f"{what}: the {len(taken)} words taken are not the model's {len(model.stream)}"
    decoded = decode_detections(taken.astype(np.uint32), params["channels"],
                                params["uis_per_symbol"])
    coded = int(model.blocks["count"].sum())
    assert coded == int(rtl["records_in"][-1]), \
        f"{what}: {int(rtl['records_in'][-1])} records taken, {coded} in closed blocks"
    for name in RECORD_FIELDS:
        have = np.asarray(decoded[name]).astype(np.uint64)
        expect = np.asarray(records[name])[:coded].astype(np.uint64)
        assert np.array_equal(have, expect), f"{what}: decoded {name} differs from the records"


@cocotb.test()
async def compressor_matches_model(dut):
    p = tb_params()
    params = dict(p["top"])
    top = RecordCompressor(**params)
    model = RecordCompressorModel(**params)
    for name, port in (("records__payload", top.records.payload),
                       ("words__payload", top.words.payload), ("k", top.k),
                       ("timeout", top.timeout), ("records_in", top.records_in)):
        width = len(Value.cast(port))
        assert len(getattr(dut, name)) == width, \
            f"port {name}: DUT width {len(getattr(dut, name))} differs from the design's {width}"

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    what = f"run {p.get('name', '')!r} ({', '.join(f'{k}={v}' for k, v in params.items())})"
    check_rules = bool(p.get("check_rules", False))
    records, per_cycle = load_stimulus(p["stimulus"])
    n = len(per_cycle["gaps"])
    rtl, t_sim = await drive(dut, top, records, per_cycle, check_rules=check_rules, what=what)
    want = model.run(records, n, **per_cycle)
    compare(rtl, {name: np.asarray(getattr(want, name)).astype(np.uint64) for name in COMPARED},
            what)
    check_words(rtl, want, records, per_cycle, params, what)

    seen = coverage(want, per_cycle)
    short = {name: (seen[name], least) for name, least in p.get("cover", {}).items()
             if seen[name] < least}
    assert not short, f"{what} exercised too little ({{count: (seen, minimum)}}): {short}"
    dut._log.info("%s: %d cycles match the model (%.0f cycles/s in cocotb%s); %s", what, n,
                  n / t_sim, ", rules checked" if check_rules else "", seen)
