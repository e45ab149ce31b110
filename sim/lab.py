"""The virtual lab's reference-model session: Alice's bit-exact transmitter model, the
physical channel model, Bob's detections binned into records, and the distillation
pipeline of both hosts over the authenticated channel, block by block.

Issue 6, "Sessions", the reference-model level (no gateware simulated, no board transports):

* **Alice** (:func:`timebin.sim.tx.run.run_tx`): one transmitter run per block. Each block is
  a fresh run of the model keyed with its own seed (``seed * 2**20 + block``): the model runs
  from reset, so a block re-keys the keystream; the symbol indices are global (``start +
  local index``). Her IM levels are the ones a lab writes after calibration
  (:func:`~timebin.sim.channel.calibrated_im_levels`) for the asked mean photon numbers.
* **Channel** (:class:`~timebin.sim.channel.Channel`, symbol fast path): one channel for the
  whole session, so the fibre's and the detectors' state (dead time, afterpulses, light in
  flight) carries over from block to block.
* **Bob's records**: :func:`~timebin.sim.channel.classify_detections` (Bob's binner without the
  gateware's own dead time), ``{index (uint64), channel, cls, alarm}`` sorted by index; clicks
  before symbol 0 or beyond the last symbol sent are dropped. A block's records are handed on
  once the next block's light has gone through the channel (or at the end, after the flush),
  so that every click on the block's symbols is in.
* **Distillation** (:func:`timebin.host.distill.session.run_pair`): ``DistillConfig`` with
  the 1-decoy 3-state bound, the mean photon numbers per symbol that the calibrated DAC codes
  realise (:func:`~timebin.sim.channel.symbol_mean_photons`, averaged over the three
  states), Alice's class probabilities and basis probability.

Memory is bounded by two blocks (Alice's logs of the current and the next block).
"""

import math
import time

import numpy as np

from .channel import (
    Calibration,
    Channel,
    calibrated_im_levels,
    channel_roles,
    classify_detections,
    gated_ingaas,
    link_figures,
    snspd,
    symbol_mean_photons,
)
from .tx.run import run_tx

__all__ = ["LAB_DEFAULTS", "lab_params", "alice_block", "bob_records", "session_blocks",
           "reference_session"]

#: Defaults of the reference session: a 3-state one-decoy link at 625 MS/s (``lanes=4``,
#: two UIs per symbol; the gated detector's 10 ns hold-off is about 6 symbols), bases near
#: balance (blocks of 10^7 symbols leave the X basis few counts otherwise).
LAB_DEFAULTS = {
    "lanes": 4,
    "uis_per_symbol": 2,
    "p_z": 0.6,
    "intensities": (0.5, 0.1),          # mean photon numbers per symbol of the classes
    "probabilities": (0.7, 0.3),        # class probabilities
}


def lab_params(detector="gated", *, distance_km=10.0, lanes=LAB_DEFAULTS["lanes"],
               uis_per_symbol=LAB_DEFAULTS["uis_per_symbol"], bob_p_z=LAB_DEFAULTS["p_z"],
               **overrides):
    """The link of a reference session: :func:`~timebin.sim.channel.gated_ingaas` or
    :func:`~timebin.sim.channel.snspd` at ``distance_km`` with Bob's basis split
    ``bob_p_z``, without slow drifts (the reference level keeps Bob's delays fixed)."""
    make = {"gated": gated_ingaas, "snspd": snspd}
    if detector not in make:
        raise ValueError(f"detector must be 'gated' or 'snspd', not {detector!r}")
    base = dict(lanes=lanes, uis_per_symbol=uis_per_symbol, length_km=float(distance_km),
                bob_p_z=bob_p_z, drift_ps_per_hour_per_km=0.0)
    return make[detector](**{**base, **overrides})


def alice_block(block, start, n, *, seed, lanes, uis_per_symbol, p_z, probabilities,
                settings):
    """Alice's symbol log of one block (``n`` symbols from global index ``start``): a run of
    the transmitter model keyed for this block. Returns the log (``index`` global, uint64;
    ``basis``, ``bit``, ``intensity``, ``valid``, ``dark``) and the run's meta."""
    result, meta = run_tx(lanes=lanes, uis_per_symbol=uis_per_symbol, symbols=n,
                          seed=seed * (1 << 20) + block, protocol="3", p_z=p_z,
                          intensities=tuple(probabilities), settings=settings)
    log = {name: result[name] for name in ("basis", "bit", "intensity", "valid", "dark")}
    log["index"] = result["index"] + np.uint64(start)
    return log, meta


def bob_records(detections, params, start, stop):
    """Bob's records of the detections whose symbol index is in ``[start, stop)``, sorted by
    index: ``{index (uint64), channel, cls, alarm}`` (uint8 but the index)."""
    cl = classify_detections(detections, params)
    keep = (cl["index"] >= start) & (cl["index"] < stop)
    order = np.argsort(cl["index"][keep], kind="stable")
    return {"index": cl["index"][keep][order].astype(np.uint64),
            "channel": np.asarray(detections["channel"])[keep][order].astype(np.uint8),
            "cls": cl["cls"][keep][order].astype(np.uint8),
            "alarm": np.zeros(int(keep.sum()), np.uint8)}


def _concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def session_blocks(n_blocks, block_symbols, params, *, seed, p_z, probabilities, settings,
                   calibration, stats=None):
    """Yield ``(start, symbols, records)`` of consecutive blocks through one channel: the
    data :func:`~timebin.host.distill.session.run_pair` takes. ``stats`` (a dict), if given,
    collects ``detections`` (clicks of the session), ``records`` per block, ``counters``
    (the channel's), ``tx_seconds`` and ``channel_seconds``."""
    stats = stats if stats is not None else {}
    stats.update(detections=0, records=[], tx_seconds=0.0, channel_seconds=0.0)
    channel = Channel(params, seed=np.random.default_rng(seed), calibration=calibration,
                      tx_settings=settings)
    pending = []                           # detections not yet handed on
    prev = None                            # (start, log) of the block waiting for its clicks
    total = n_blocks * block_symbols
    for block in range(n_blocks + 1):
        if block < n_blocks:
            start = block * block_symbols
            t0 = time.perf_counter()
            log, _ = alice_block(block, start, block_symbols, seed=seed, lanes=params.lanes,
                                 uis_per_symbol=params.uis_per_symbol, p_z=p_z,
                                 probabilities=probabilities, settings=settings)
            t1 = time.perf_counter()
            pending.append(channel.send_symbols(log["basis"], log["bit"], log["intensity"],
                                                log["dark"]))
        else:
            t0 = t1 = time.perf_counter()
            log = None
            pending.append(channel.flush())
        stats["tx_seconds"] += t1 - t0
        stats["channel_seconds"] += time.perf_counter() - t1
        if prev is not None:
            det = _concat(pending)
            stats["detections"] += len(det["channel"])
            p_start = prev[0]
            p_stop = p_start + block_symbols
            records = bob_records(det, params, p_start, p_stop)
            # clicks on later symbols (or, at the end, beyond the log: dropped) wait
            cl_index = classify_detections(det, params)["index"]
            later = cl_index >= p_stop if block < n_blocks else np.zeros(len(cl_index), bool)
            pending = [{k: v[later] for k, v in det.items()}]
            stats["detections"] -= int(later.sum())
            stats["records"].append(len(records["index"]))
            yield p_start, prev[1], records
        prev = None if log is None else (start, log)
    stats["counters"] = {k: v.copy() for k, v in channel.counters.items()}
    stats["symbols"] = total


def reference_session(*, distance_km=10.0, symbols=20_000_000, block_symbols=10_000_000,
                      detector="gated", seed=1, reconciler="cascade", p_z=LAB_DEFAULTS["p_z"],
                      intensities=LAB_DEFAULTS["intensities"],
                      probabilities=LAB_DEFAULTS["probabilities"], lanes=LAB_DEFAULTS["lanes"],
                      uis_per_symbol=LAB_DEFAULTS["uis_per_symbol"], params=None,
                      calibration=None, eps_sec=1e-9, eps_cor=1e-15, replenish_bytes=512,
                      keep_data=False,
                      **channel_overrides):
    """A whole reference-model session (module docstring); returns a summary dict.

    ``symbols`` is rounded down to whole blocks of ``block_symbols``. ``params``: a
    :class:`~timebin.sim.channel.ChannelParams` that replaces the one :func:`lab_params`
    makes from ``detector``, ``distance_km``, ``lanes``, ``uis_per_symbol`` and
    ``channel_overrides``. ``keep_data``: also return the blocks handed to the hosts (for
    tests; memory grows with the session) under ``"data"``.

    Summary: ``symbols``, ``blocks``, ``clicks`` (all detections of the session),
    ``records`` (Bob's, per block); per block (lists, from Bob's host) ``detections``,
    ``sifted_z``, ``sifted_x``, ``qber_z``, ``qber_x``, ``efficiency``, ``key_bits``,
    ``stored_bits``, ``status``, ``bounds`` and Alice's ``alice_key_bits``,
    ``alice_stored_bits``; totals ``key_bits_total``, ``stored_bits_total``, ``keys_match``
    (the stored keys of both sides), ``key_blocks``; ``eps_sec``, ``eps_cor``;
    ``intensities`` (realised mean photon numbers), ``probabilities``, ``p_z``; ``link``
    (:func:`link_figures`), ``counters`` (channel); ``seconds`` (wall, the whole session),
    ``tx_seconds``, ``channel_seconds`` (parts of it); ``symbol_rate_hz``,
    ``key_per_symbol``, ``key_rate_bps`` (at the modelled clock).
    """
    from ..host.distill.session import DistillConfig, run_pair

    if params is None:
        params = lab_params(detector, distance_km=distance_km, lanes=lanes,
                            uis_per_symbol=uis_per_symbol, bob_p_z=p_z, **channel_overrides)
    if calibration is None:
        calibration = Calibration()
    n_blocks = symbols // block_symbols
    if n_blocks < 1:
        raise ValueError(f"symbols ({symbols!r}) must hold at least one block of "
                         f"{block_symbols!r}")
    S = params.uis_per_symbol
    settings = {"im_levels": calibrated_im_levels(calibration, tuple(intensities),
                                                  uis_per_symbol=S)}
    mu_table = symbol_mean_photons(calibration, S, settings)          # (class, state)
    realised = tuple(float(mu_table[c, [0, 1, 2]].mean()) for c in range(len(intensities)))
    config = DistillConfig(protocol="1decoy-3state", intensities=realised,
                           probabilities=tuple(probabilities), p_z=p_z, eps_sec=eps_sec,
                           eps_cor=eps_cor, reconciler=reconciler,
                           replenish_bytes=replenish_bytes)
    stats = {}
    data = session_blocks(n_blocks, block_symbols, params, seed=seed, p_z=p_z,
                          probabilities=probabilities, settings=settings,
                          calibration=calibration, stats=stats)
    kept = []
    if keep_data:
        def tap(gen):
            for item in gen:
                kept.append(item)
                yield item
        data = tap(data)
    secret = np.random.default_rng([seed, 6]).bytes(65536)
    t0 = time.perf_counter()
    alice, bob, keys = run_pair(data, config, roles=channel_roles(params), secret=secret,
                                seed=seed)
    seconds = time.perf_counter() - t0

    results = [bob.results[b] for b in sorted(bob.results)] if isinstance(bob.results, dict) \
        else list(bob.results)
    per = {name: [getattr(r, name) for r in results]
           for name in ("status", "detections", "sifted_z", "sifted_x", "errors_z", "errors_x",
                        "qber_z", "qber_x", "efficiency", "key_bits", "stored_bits",
                        "bounds")}
    key_bits = int(sum(per["key_bits"]))
    total = n_blocks * block_symbols
    rate = 1e12 / params.symbol_ps
    summary = {
        "symbols": total, "blocks": n_blocks, "block_symbols": block_symbols,
        "detector": params.detector, "distance_km": params.length_km,
        "clicks": int(stats["detections"]), "records": list(stats["records"]),
        **per, "alice_key_bits": [r.key_bits for r in alice.results],
        "alice_stored_bits": [r.stored_bits for r in alice.results],
        "key_bits_total": key_bits, "stored_bits_total": int(sum(per["stored_bits"])),
        "keys_match": keys["alice"] == keys["bob"],
        "key_blocks": sorted(keys["bob"]),
        "eps_sec": eps_sec, "eps_cor": eps_cor, "intensities": realised,
        "probabilities": tuple(probabilities), "p_z": p_z, "reconciler": reconciler,
        "link": link_figures(params), "counters": {k: v.tolist()
                                                   for k, v in stats["counters"].items()},
        "seconds": seconds, "tx_seconds": stats["tx_seconds"],
        "channel_seconds": stats["channel_seconds"], "symbol_rate_hz": rate,
        "key_per_symbol": key_bits / total, "key_rate_bps": key_bits / total * rate,
        "symbols_per_second": total / seconds if seconds > 0 else math.inf,
    }
    if keep_data:
        summary["data"] = kept
        summary["keys"] = keys
    return summary
