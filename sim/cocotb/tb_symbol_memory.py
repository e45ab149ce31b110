"""cocotb testbench: the generated Verilog of
:class:`~timebin.gateware.tx.symbol_memory.SymbolMemory` against
:class:`~timebin.sim.tx.symbol_memory.SymbolMemoryModel`, cycle by cycle from reset.

Run through :func:`timebin.sim.cocotb.runner.run_cocotb`; parameters (``tb_params()``):

``lanes``, ``depth_words``  the keyword arguments the ``SymbolMemory`` was built with
``runs``                    a list of runs, one after the other, each a dict of
    ``name``       for messages
    ``stimulus``   path of an ``.npz`` file written by :func:`save_stimulus` (the inputs of
                   :meth:`SymbolMemoryModel.run`, as ``tests/test_tx_symbol_memory.py``
                   makes them)
    ``resets``     cycles with ``rst`` high (default none): each restarts the clearing sweep
    ``cover``      ``{count: minimum}`` of what the run must exercise (default none), counts
                   of :func:`coverage`

Each run starts from a reset of ``RESET_CYCLES`` edges with every input low. Every cycle the
inputs (``rst`` included) are driven at the falling edge and the outputs sampled once settled
(``ReadOnly``), as ``run_per_cycle`` does in Amaranth's simulator (``reset_at``). Every output
port (``result`` with each payload field, ``lookup.ready``, ``log.ready``, ``clearing`` and
the four counters) is compared with the model in every cycle.

A mid-run reset: the model runs from reset, so the run is modelled piece by piece, a new
model run starting in the cycle after each reset cycle. That is exact: a reset clears every
register of the block; the memory keeps its contents, but a lookup taken during the sweep
after the reset is answered unavailable whatever the entry it reads holds, and after the
sweep every entry is empty, as in a model run from reset. The same holds for the reset that
starts each run after the first, so the runs can share one simulation.
"""

import cocotb
import numpy as np
from amaranth.hdl import Value
from cocotb.clock import Clock
from timebin.gateware.tx.symbol_memory import LookupResult, SymbolMemory
from timebin.sim.cocotb.ports import reset, run_cycles
from timebin.sim.cocotb.runner import tb_params
from timebin.sim.tx.symbol_memory import SymbolMemoryModel
from timebin.sim.words import pack_symbol_words

CLK_PERIOD_NS = 10
RESET_CYCLES = 4

#: Inputs of :meth:`SymbolMemoryModel.run` other than ``log_fields``, in order.
STIMULUS = ("log_valid", "log_index", "lookup_valid", "lookup_index", "result_ready")
#: Per-cycle input ports.
INPUT_PORTS = ("log__valid", "log__payload", "lookup__valid", "lookup__payload",
               "result__ready")
#: Output ports sampled every cycle: ``{key: Verilog port}``.
OUTPUT_PORTS = {"result_valid": "result__valid", "payload": "result__payload",
                "lookup_ready": "lookup__ready", "log_ready": "log__ready",
                "clearing": "clearing", "lookups": "lookups", "unavailable": "unavailable",
                "written": "written", "missed": "missed"}
#: Outputs compared with the model, named as the fields of ``SymbolMemoryOutput``.
COMPARED = ("result_valid", *(name for name, _ in LookupResult), "lookup_ready", "clearing",
            "lookups", "unavailable", "written", "missed")


def save_stimulus(path, log_valid, log_index, log_fields, lookup_valid, lookup_index,
                  result_ready):
    """Write the inputs of :meth:`SymbolMemoryModel.run` (``result_ready`` per cycle) to
    ``path`` for :func:`load_stimulus`."""
    arrays = dict(zip(STIMULUS, (log_valid, log_index, lookup_valid, lookup_index,
                                 result_ready), strict=True))
    arrays.update({f"field_{name}": values for name, values in log_fields.items()})
    np.savez(path, **{name: np.asarray(values) for name, values in arrays.items()})


def load_stimulus(path):
    """``(log_valid, log_index, log_fields, lookup_valid, lookup_index, result_ready)``."""
    with np.load(path) as f:
        fields = {name[len("field_"):]: f[name] for name in f.files if name.startswith("field_")}
        values = {name: f[name] for name in STIMULUS}
    return (values["log_valid"], values["log_index"], fields, values["lookup_valid"],
            values["lookup_index"], values["result_ready"])


def model_outputs(model, stimulus, resets=()):
    """The model's outputs (``{name: (N,) uint64}``) for ``stimulus`` with ``rst`` high in
    the cycles ``resets``: one model run per stretch between resets, each from reset (a
    reset cycle still shows the outputs of the stretch it ends)."""
    n = len(stimulus[0])
    bounds = [0, *sorted({int(r) + 1 for r in resets if 0 <= r < n - 1}), n]
    pieces = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        log_valid, log_index, log_fields, lookup_valid, lookup_index, ready = (
            values[start:stop] if not isinstance(values, dict)
            else {name: field[start:stop] for name, field in values.items()}
            for values in stimulus)
        out = model.run(log_valid, log_index, log_fields, lookup_valid, lookup_index, ready)
        pieces.append({name: np.asarray(getattr(out, name)).astype(np.uint64)
                       for name in COMPARED})
    return {name: np.concatenate([piece[name] for piece in pieces]) for name in COMPARED}


def decode(rec):
    """The sampled ports as ``{name: (N,) uint64}``, the result payload split into its
    fields."""
    out = {key: np.array(values, np.uint64) for key, values in rec.items() if key != "payload"}
    payload = rec["payload"]
    for name, field in LookupResult:
        top = (1 << field.width) - 1
        out[name] = np.array([(p >> field.offset) & top for p in payload], np.uint64)
    return out


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


def coverage(out, result_ready):
    """What a run exercised: results taken available (``hits``) and unavailable, cycles with
    ``lookup.ready`` low (``stalls``), and log words ``missed`` while clearing (summed over
    the stretches between resets)."""
    taken = out["result_valid"].astype(bool) & np.asarray(result_ready, bool)
    available = out["available"].astype(bool)
    # The counter restarts at a reset: sum its increments, not its last value.
    missed = np.diff(out["missed"].astype(np.int64), prepend=0)
    return {"hits": int((taken & available).sum()),
            "unavailable": int((taken & ~available).sum()),
            "stalls": int((out["lookup_ready"] == 0).sum()),
            "missed": int(missed[missed > 0].sum())}


@cocotb.test()
async def symbol_memory_matches_model(dut):
    p = tb_params()
    lanes, depth = int(p["lanes"]), int(p["depth_words"])
    top = SymbolMemory(lanes=lanes, depth_words=depth)
    model = SymbolMemoryModel(lanes=lanes, depth_words=depth)
    ports = {"log__payload": top.log.payload, "lookup__payload": top.lookup.payload,
             "result__payload": top.result.payload, **{
                 name: getattr(top, name) for name in ("lookups", "unavailable", "written",
                                                       "missed")}}
    for name, port in ports.items():
        width = len(Value.cast(port))
        assert len(getattr(dut, name)) == width, \
            f"port {name}: DUT width {len(getattr(dut, name))} differs from the design's {width}"

    Clock(dut.clk, CLK_PERIOD_NS, unit="ns").start()
    for run in p["runs"]:
        what = f"run {run['name']!r} (L = {lanes}, D = {depth})"
        stimulus = load_stimulus(run["stimulus"])
        log_valid, log_index, log_fields, lookup_valid, lookup_index, ready = stimulus
        n = len(log_valid)
        resets = [int(r) for r in run.get("resets", [])]
        rst = np.zeros(n, np.int64)
        rst[resets] = 1
        inputs = {
            "rst": [int(x) for x in rst],
            "log__valid": [int(x) for x in log_valid],
            "log__payload": pack_symbol_words(lanes, log_fields, log_index),
            "lookup__valid": [int(x) for x in lookup_valid],
            "lookup__payload": [int(x) for x in lookup_index],
            "result__ready": [int(x) for x in ready],
        }
        await reset(dut, {}, zero=INPUT_PORTS, cycles=RESET_CYCLES)
        rec, t_sim = await run_cycles(dut, n, inputs, OUTPUT_PORTS)
        got = decode(rec)
        assert (got["log_ready"] == 1).all(), \
            f"{what}: log.ready low in cycle {int(np.flatnonzero(got['log_ready'] != 1)[0])}"
        want = model_outputs(model, stimulus, resets)
        compare(got, want, what)

        seen = coverage(want, ready)
        short = {name: (seen[name], least) for name, least in run.get("cover", {}).items()
                 if seen[name] < least}
        assert not short, f"{what} exercised too little ({{count: (seen, minimum)}}): {short}"
        dut._log.info("%s: %d cycles match the model (%.0f cycles/s in cocotb), resets in "
                      "cycles %s; %s", what, n, n / t_sim, resets or "none", seen)
