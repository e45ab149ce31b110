"""Transmitter runs for the command line: the symbol log and serializer words of Alice's
gateware (its bit-exact model), written as NumPy ``.npz`` for an arbitrary waveform
generator or for the sifting of a later stage.
"""

import hashlib
import json
import time

import numpy as np

from ...gateware.records import STATES
from ...gateware.tx.driver import TimeBinDriver
from ...gateware.tx.entropy import EntropySelect
from ...gateware.tx.symbols import Protocol, TrainingMode
from ...gateware.tx.top import Transmitter
from .entropy import KEYSTREAM_FIRST_CYCLE
from .top import TransmitterModel

__all__ = ["FABRIC_CLOCK_HZ", "seed_key_iv", "run_tx", "summarise", "save_npz", "demo_tx"]

#: Fabric clock of the reference design (DESIGN.md section 3): 156.25 MHz.
FABRIC_CLOCK_HZ = 156.25e6


def seed_key_iv(seed):
    """Trivium ``(key, iv)`` port values derived from an integer seed (BLAKE2b, 20 bytes)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, not {seed!r}")
    digest = hashlib.blake2b(seed.to_bytes(16, "little"), digest_size=20,
                             person=b"timebin-tx-seed").digest()
    return int.from_bytes(digest[:10], "little"), int.from_bytes(digest[10:], "little")


def run_tx(*, lanes, uis_per_symbol, symbols, seed, protocol="3", p_z=0.9,
           intensities=(0.7, 0.3), training="data", dac_bits=8, pm_bits=1, settings=None,
           qrng=None, serializer=True):
    """Run the transmitter model until ``symbols`` symbols have left, and return a dict of
    arrays: the symbol log in time order and the serializer words that carry it.

    The transmitter is enabled once the keystream is ready (cycle 19), so the log starts at
    symbol index 0 with keyed symbols. ``qrng``: take the entropy from the QRNG port under
    its health tests instead of the keystream: a function ``qrng(cycles, width)`` that gives
    the port's bits, ``(cycles, width)`` of 0/1, always valid (a failed QRNG, e.g. stuck
    bits, trips the tests and darkens the symbols: ``meta["alarm"]``).
    ``serializer=False``: the symbol log only, without the serializer words (faster).
    """
    if not isinstance(symbols, int) or symbols < 1:
        raise ValueError(f"Symbol count must be a positive integer, not {symbols!r}")
    protocols = {"3": Protocol.THREE_STATE, "4": Protocol.FOUR_STATE}
    if str(protocol) not in protocols:
        raise ValueError(f"Protocol must be 3 (Z0, Z1, X+) or 4 (BB84), not {protocol!r}")
    modes = {mode.name.lower(): mode for mode in TrainingMode}
    if training not in modes:
        raise ValueError(f"Training mode must be one of {sorted(modes)}, not {training!r}")
    model = TransmitterModel(lanes=lanes, uis_per_symbol=uis_per_symbol, p_z=p_z,
                             intensity_probs=tuple(intensities), dac_bits=dac_bits,
                             pm_bits=pm_bits)
    key, iv = seed_key_iv(seed)
    words = -(-symbols // lanes)
    n = KEYSTREAM_FIRST_CYCLE + words + Transmitter.latency + model.driver.max_delay // (
        lanes * uis_per_symbol) + 2
    enable = np.zeros(n, bool)
    enable[KEYSTREAM_FIRST_CYCLE:KEYSTREAM_FIRST_CYCLE + words] = True
    all_settings = {"source": EntropySelect.CSPRNG, "key": key, "iv": iv,
                    "protocol": protocols[str(protocol)], "training": modes[training]}
    all_settings.update(settings or {})
    port = {}
    if qrng is not None:
        width = model.entropy.width
        bits = np.asarray(qrng(n, width), np.uint8)
        if bits.shape != (n, width):
            raise ValueError(f"qrng must give bits of shape {(n, width)}, not {bits.shape}")
        all_settings["source"] = EntropySelect.QRNG
        port = {"qrng_valid": np.ones(n, bool), "qrng_bits": bits}
    start = time.perf_counter()
    out = model.run(n, all_settings, enable=enable, driver=serializer, **port)
    elapsed = time.perf_counter() - start

    sym = out.symbols
    rows = np.flatnonzero(sym.valid)
    first_ser = rows[0] + TimeBinDriver.latency          # the symbol word's serializer word
    ser = slice(first_ser, first_ser + words)
    index = (sym.index[rows][:, None] + np.arange(lanes, dtype=np.uint64)).ravel()
    result = {
        "index": index[:symbols],
        "basis": sym.basis[rows].ravel()[:symbols],
        "bit": sym.bit[rows].ravel()[:symbols],
        "intensity": sym.intensity[rows].ravel()[:symbols],
        "valid": sym.sym_valid[rows].ravel()[:symbols],
        "dark": sym.dark[rows].ravel()[:symbols],
    }
    if serializer:
        result.update(carver=out.carver[ser], im=out.im[ser], pm=out.pm[ser])
    meta = {
        "lanes": lanes, "uis_per_symbol": uis_per_symbol, "symbols": symbols, "seed": seed,
        "key": f"{key:020x}", "iv": f"{iv:020x}", "protocol": str(protocol), "p_z": p_z,
        "intensity_probs": list(intensities), "training": training, "dac_bits": dac_bits,
        "pm_bits": pm_bits, "fabric_clock_hz": FABRIC_CLOCK_HZ,
        "symbol_rate_hz": FABRIC_CLOCK_HZ * lanes,
        "ui_rate_hz": FABRIC_CLOCK_HZ * lanes * uis_per_symbol,
        "cycles": int(n), "model_seconds": elapsed,
        "underflow_cycles": int(out.underflow[-1]), "alarm": bool(out.alarm.any()),
        "settings_error": bool(out.settings_error.any()),
    }
    return result, meta


def summarise(result, meta):
    """A JSON-able summary of a run: counts of states and intensity classes."""
    ok = result["valid"].astype(bool)
    state = result["basis"].astype(np.int64) * 2 + result["bit"]
    n = int(ok.sum())
    return {
        **{k: meta[k] for k in ("lanes", "uis_per_symbol", "symbols", "seed", "protocol",
                                "training", "symbol_rate_hz", "ui_rate_hz")},
        "key_symbols": n,
        "dark_symbols": int(result["dark"].sum()),
        "states": {name: int((state[ok] == i).sum()) for i, name in enumerate(STATES)},
        "intensity_classes": [int((result["intensity"][ok] == k).sum()) for k in range(4)],
        "p_z_measured": float((result["basis"][ok] == 0).mean()) if n else None,
        "lit_uis": int(result["carver"].sum()),
        "serializer_words": int(result["carver"].shape[0]),
        "model_symbols_per_s": meta["symbols"] / meta["model_seconds"],
        "underflow_cycles": meta["underflow_cycles"],
        "alarm": meta["alarm"],
        "settings_error": meta["settings_error"],
    }


def save_npz(path, result, meta):
    """Write the run to ``path``: the arrays of :func:`run_tx`, the serializer words also as
    flat UI streams (``carver_ui``, ``im_ui``, ``pm_ui``, UI 0 first), and ``meta`` (JSON)."""
    np.savez_compressed(
        path, **result,
        carver_ui=result["carver"].ravel(), im_ui=result["im"].ravel(),
        pm_ui=result["pm"].ravel(), meta=np.array(json.dumps(meta)))


def demo_tx(*, symbols=1_000_000, seed=1, out="timebin-demo-tx.npz", check_cycles=2000):
    """The main job for now: ``symbols`` symbols of L=16, S=2 from the model written to
    ``out``, and ``check_cycles`` cycles of the gateware in Amaranth's simulator checked
    bit for bit against the model on the same seed. Returns a JSON-able summary."""
    from ...gateware.tx.top import Transmitter
    from .rtl import compare_transmitter, run_transmitter

    result, meta = run_tx(lanes=16, uis_per_symbol=2, symbols=symbols, seed=seed)
    save_npz(out, result, meta)
    summary = {"transmitter": summarise(result, meta), "out": str(out)}

    key, iv = seed_key_iv(seed)
    params = {"lanes": 16, "uis_per_symbol": 2}
    rng = np.random.default_rng(seed)
    inputs = {"enable": rng.random(check_cycles) < 0.95,
              "log_ready": rng.random(check_cycles) < 0.8}
    settings = {"key": key, "iv": iv}
    got = run_transmitter(Transmitter(**params), check_cycles, settings, **inputs)
    want = TransmitterModel(**params).run(check_cycles, settings, **inputs)
    compare_transmitter(got, want)              # raises on the first difference
    summary["gateware_check"] = {"cycles": check_cycles, "seed": seed,
                                 "agrees_with_model": True,
                                 "log_words": int(want.log_valid.sum()),
                                 "log_dropped": int(want.log_dropped[-1])}
    return summary
