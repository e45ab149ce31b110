"""``timebin sim rx``: detector words through Bob's receiver, by the reference model or by the
gateware (its Verilog under Verilator, or Amaranth's simulator), to detection records,
histograms and counters.

Detector-word files
-------------------
* ``.npz`` (what ``--save-words`` writes): ``format`` = ``"timebin-rx-words-1"``, scalars
  ``channels``, ``lanes``, ``uis_per_symbol``, ``oversampling``, and ``words``: (N, C, B)
  uint8, channel ``k``'s word of cycle ``n`` packed LSB first (``numpy.packbits(...,
  bitorder="little")``: sample 0, the earliest, in bit 0 of byte 0), ``B = ceil(W * k / 8)``.
* raw ``.bin`` (a capture): the same bytes, cycle after cycle and channel after channel,
  no header; the shape comes from the command line.

Record files (``--out``, ``.npz``): ``index``, ``phase``, ``channel``, ``cls``, ``alarm``
and ``cycle`` of every record taken, ``histogram`` (C, bins), the counters in the last cycle
(``counter_<name>``, one value per channel) and ``meta`` (JSON: parameters, settings, seed,
engine, timing).
"""

import json
import time
from pathlib import Path

import numpy as np

from ...gateware.records import DETECTION_CLASSES
from ...gateware.rx.binning import check_windows, x_windows, z_windows
from ...gateware.rx.frontend import DeadTimeMode
from .rtl import OUTPUT_PORTS
from .stimulus import link_samples, with_histogram_sweep
from .top import COUNTERS, ReceiverModel, taken_records

__all__ = ["WORDS_FORMAT", "ENGINES", "load_words", "save_words", "generate_words",
           "parse_windows", "check_settings", "run_rx", "summarise_rx", "save_records",
           "demo_rx"]

WORDS_FORMAT = "timebin-rx-words-1"
#: ``model``: the reference model; ``verilator``: the receiver's Verilog; ``amaranth``:
#: Amaranth's simulator (slow: some 10**3 cycles/s).
ENGINES = ("model", "verilator", "amaranth")
#: Cycles of settling before the histogram read sweep that ends every run.
SWEEP_SETTLE = 64


def _shape(params):
    words = params["lanes"] * params["uis_per_symbol"] * params.get("oversampling", 1)
    return params["channels"], words, (words + 7) // 8


def load_words(path, params=None):
    """Detector words of a file: ``(samples (N, C, W * k) uint8 of 0/1, params)``.

    For ``.npz`` the file gives the shape (``params``, if given, must agree); for raw
    captures ``params`` (``channels``, ``lanes``, ``uis_per_symbol``, ``oversampling``)
    gives it. Raises ``ValueError`` naming what does not fit.
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            fmt = str(data["format"]) if "format" in data else None
            if fmt != WORDS_FORMAT:
                raise ValueError(f"{path} is not a detector-word file ({WORDS_FORMAT}); its "
                                 f"format is {fmt!r}")
            found = {name: int(data[name]) for name in ("channels", "lanes",
                                                        "uis_per_symbol", "oversampling")}
            words = np.asarray(data["words"], np.uint8)
        for name, value in (params or {}).items():
            if name in found and value is not None and value != found[name]:
                raise ValueError(f"{path} holds words of {name} = {found[name]}, not {value}")
        params = found
        channels, width, nbytes = _shape(params)
        if words.ndim != 3 or words.shape[1:] != (channels, nbytes):
            raise ValueError(f"{path}: words must have shape (N, {channels}, {nbytes}), not "
                             f"{words.shape}")
    else:
        if not params:
            raise ValueError(f"The shape of the raw capture {path} must be given (channels, "
                             f"lanes, UIs per symbol, oversampling)")
        channels, width, nbytes = _shape(params)
        raw = np.fromfile(path, np.uint8)
        if raw.size % (channels * nbytes):
            raise ValueError(f"{path} holds {raw.size} bytes, not a whole number of cycles of "
                             f"{channels} channels x {nbytes} bytes")
        words = raw.reshape(-1, channels, nbytes)
    samples = np.unpackbits(words, axis=2, bitorder="little")[:, :, :width]
    return samples, dict(params)


def save_words(path, samples, params):
    """Write ``samples`` (N, C, W * k) as a detector-word ``.npz`` file."""
    channels, width, _ = _shape(params)
    if samples.shape[1:] != (channels, width):
        raise ValueError(f"samples must have shape (N, {channels}, {width}), not "
                         f"{samples.shape}")
    words = np.packbits(samples.astype(np.uint8), axis=2, bitorder="little")
    np.savez_compressed(path, format=np.array(WORDS_FORMAT), words=words,
                        **{name: np.array(params.get(name, 1)) for name in
                           ("channels", "lanes", "uis_per_symbol", "oversampling")})


def generate_words(params, cycles, seed, *, click_probability=0.05, jitter_uis=0.5,
                   dark_per_ui=1e-5, x_channels=None, delays=None):
    """Detector words of a simulated link (:func:`~timebin.sim.rx.stimulus.link_samples`):
    the last channel is the X detector unless ``x_channels`` says otherwise."""
    channels = params["channels"]
    if x_channels is None:
        x_channels = (channels - 1,) if channels > 1 else ()
    rng = np.random.default_rng(seed)
    samples, _ = link_samples(rng, cycles, params["lanes"], params["uis_per_symbol"],
                              channels, click_probability=click_probability,
                              x_channels=tuple(x_channels), delays=0 if delays is None
                              else delays, jitter_uis=jitter_uis, dark_per_ui=dark_per_ui,
                              oversampling=params.get("oversampling", 1))
    return samples


def parse_windows(text, channels, uis_per_symbol):
    """Window LUTs from the command line: one spec per channel, comma-separated (one spec
    for all): ``z`` (:func:`z_windows`), ``x`` (:func:`x_windows`), or S letters of
    ``e``/``l``/``m``/``d`` (early, late, middle, discard), phase 0 first."""
    specs = [s.strip().lower() for s in text.split(",")]
    if len(specs) == 1:
        specs *= channels
    if len(specs) != channels:
        raise ValueError(f"Window LUT must hold one table per channel ({channels}), not "
                         f"{len(specs)}: {text!r}")
    letters = {name[0]: code for code, name in enumerate(DETECTION_CLASSES)}
    tables = []
    for k, spec in enumerate(specs):
        if spec == "z":
            tables.append(z_windows(uis_per_symbol))
        elif spec == "x":
            tables.append(x_windows(uis_per_symbol))
        else:
            bad = sorted(set(spec) - set(letters))
            if bad:
                raise ValueError(f"Window LUT of channel {k}: {bad[0]!r} is not a class "
                                 f"(e, l, m, d), in {spec!r}")
            tables.append([letters[c] for c in spec])
    return check_windows(tables, channels, uis_per_symbol)


def run_rx(params, samples, *, engine="model", ready=True, **settings):
    """Run ``samples`` through the receiver of ``params`` with ``settings`` (held for the
    whole run, in :meth:`ReceiverModel.run`'s forms), then read the histogram out with a read
    sweep. Returns ``{"records": {field: array, "cycle": array}, "histogram", "final":
    {port: value in the last cycle}, "cycles", "seconds", "engine", ...}``."""
    if engine not in ENGINES:
        raise ValueError(f"Engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if "dead_mode" in settings and isinstance(settings["dead_mode"], str):
        settings["dead_mode"] = _dead_mode(settings["dead_mode"])
    n = len(samples)
    model = ReceiverModel(**params)                  # checks the parameters first
    check_settings(model, settings)
    padded, swept = with_histogram_sweep(params, samples, SWEEP_SETTLE, **settings)
    bins = params.get("histogram_period", 1) * params["uis_per_symbol"]
    start = time.perf_counter()
    if engine == "model":
        out = model.run(padded, ready=ready, **swept)
        seconds = time.perf_counter() - start
        records = out.taken(ready)
        final = {name: getattr(out, name)[-1] for name in OUTPUT_PORTS}
        result = {"records": records, "histogram": out.histogram, "final": final}
    elif engine == "verilator":
        from .verilator import run_receiver_verilator

        rtl = run_receiver_verilator(params, padded, ready, sweep=(n, SWEEP_SETTLE), **swept)
        seconds = time.perf_counter() - start
        result = {"records": rtl["records"], "histogram": rtl["histogram"],
                  "final": rtl["final"], "verilator_loop_s": rtl["seconds"],
                  "build_s": rtl["build_s"]}
    else:
        from ...gateware.rx.top import Receiver
        from .histogram import histogram_from_sweep
        from .rtl import run_receiver

        got = run_receiver(Receiver(**params), padded, ready, **swept)
        seconds = time.perf_counter() - start
        records = taken_records(got["records_valid"], got["records"], ready)
        result = {"records": records, "final": {name: got[name][-1] for name in OUTPUT_PORTS},
                  "histogram": histogram_from_sweep(got["histogram_data"][n:],
                                                    params["channels"], bins,
                                                    settle=SWEEP_SETTLE)}
    result.update(engine=engine, cycles=len(padded), word_cycles=n, seconds=seconds)
    return result


def check_settings(model, settings):
    """Refuse, naming the value, the settings the gateware would refuse (it would keep its
    defaults and raise ``settings_error``): a run from the command line must not quietly
    use other settings than asked for."""
    fe = model.frontend
    W = fe.uis_per_word
    dead_time = settings.get("dead_time")
    if dead_time is not None and not W <= dead_time <= fe.max_dead_time:
        raise ValueError(f"Dead time must be {W}..{fe.max_dead_time} UIs (one word at least),"
                         f" not {dead_time}")
    S = model.uis_per_symbol
    period = np.asarray(settings.get("gate_period", 1))
    if (period < 1).any() or (period > fe.max_gate_period).any():
        raise ValueError(f"Gate period must be 1..{fe.max_gate_period} symbols, not "
                         f"{period.tolist()}")
    width = np.asarray(settings.get("gate_width", S // 2))
    if (width < 1).any() or (width > period * S).any():
        raise ValueError(f"Gate width must be 1..{S}*period UIs, not {width.tolist()}")
    offset = np.asarray(settings.get("gate_offset", 0))
    if (offset < 0).any() or (offset >= period * S).any():
        raise ValueError(f"Gate offset must be below the period of {(period * S).tolist()} "
                         f"UIs, not {offset.tolist()}")
    delay = np.asarray(settings.get("delay", 0))
    if (delay < 0).any() or (delay > model.binner.max_delay).any():
        raise ValueError(f"Delay must be 0..{model.binner.max_delay} UIs, not "
                         f"{delay.tolist()}")
    if "windows" in settings:
        check_windows(settings["windows"], model.channels, S)


def _dead_mode(text):
    names = {mode.name.lower().replace("_", "-"): mode.value for mode in DeadTimeMode}
    if text not in names:
        raise ValueError(f"Dead-time mode must be one of {', '.join(names)}, not {text!r}")
    return names[text]


def summarise_rx(result, params):
    """A JSON-able summary: records by channel and class, the counters, flags and speed."""
    records = result["records"]
    final = result["final"]
    channels = params["channels"]
    by_class = {name: [int(((records["channel"] == k) & (records["cls"] == code)).sum())
                       for k in range(channels)]
                for code, name in enumerate(DETECTION_CLASSES) if name != "discard"}
    summary = {
        "engine": result["engine"],
        "params": params,
        "word_cycles": result["word_cycles"],
        "records": int(len(records["cycle"])),
        "records_by_class": by_class,
        "records_flagged_alarm": int(np.asarray(records["alarm"]).sum()),
        "counters": {name: [int(x) for x in np.asarray(final[name]).reshape(-1)]
                     for name in COUNTERS},
        "records_out": int(final["records_out"]),
        "overflow": bool(final["overflow"]),
        "alarm": bool(final["alarm"]),
        "alarm_trips": int(final["alarm_trips"]),
        "settings_error": bool(final["settings_error"]),
        "histogram_peak_phase": [int(np.argmax(row)) for row in result["histogram"]],
        "seconds": result["seconds"],
        "cycles_per_s": result["cycles"] / result["seconds"] if result["seconds"] else None,
    }
    for key in ("verilator_loop_s", "build_s"):
        if key in result:
            summary[key] = result[key]
    return summary


def save_records(path, result, meta):
    """Write the records, histogram and final counters of ``result`` to ``path`` (.npz)."""
    arrays = {name: np.asarray(values) for name, values in result["records"].items()}
    arrays["histogram"] = np.asarray(result["histogram"], np.uint64)
    for name in COUNTERS:
        arrays[f"counter_{name}"] = np.asarray(result["final"][name], np.uint64).reshape(-1)
    np.savez_compressed(path, **arrays, meta=np.array(json.dumps(meta, default=_jsonable)))


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")



def demo_rx(*, cycles=200_000, seed=1, out="timebin-demo-rx.npz", check_cycles=2000):
    """The receiver's part of the main job: ``cycles`` cycles of simulated link words (L=16,
    S=2, three Z detectors and one X detector) through the model, records and histograms
    written to ``out``; then ``check_cycles`` cycles of the gateware in Amaranth's simulator
    checked against the model, every output in every cycle. Returns a JSON-able summary."""
    from ...gateware.rx.top import Receiver
    from .rtl import compare_receiver, run_receiver

    params = {"channels": 4, "lanes": 16, "uis_per_symbol": 2}
    samples = generate_words(params, cycles, seed, click_probability=0.01)
    windows = parse_windows("z,z,z,x", 4, 2)
    result = run_rx(params, samples, windows=windows)
    save_records(out, result, {"params": params, "seed": seed, "engine": "model",
                               "settings": {"windows": windows}})
    summary = {"receiver": summarise_rx(result, params), "out": str(out)}
    check = ReceiverModel(**params).run(samples[:check_cycles], windows=windows)
    got = run_receiver(Receiver(**params), samples[:check_cycles], windows=windows)
    compare_receiver(got, check)                 # raises on the first difference
    summary["gateware_check"] = {"cycles": check_cycles, "seed": seed,
                                 "agrees_with_model": True,
                                 "records": int(check.records_valid.sum())}
    return summary
