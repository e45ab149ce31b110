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
* **Bob's records**: each click binned as Bob's binner does (without the gateware's own
  dead time), with the delays in force when it reaches Bob, ``{index (uint64), channel, cls,
  alarm}`` sorted by index; clicks before the block's first symbol or beyond the last symbol
  sent are dropped (counted). A block's records are handed on once the next block's light has
  gone through the channel (or at the end, after the flush), so that every click on the
  block's symbols is in.
* **Alignment** (``align=True``): Bob's host aligner (:class:`timebin.host.align.Aligner`)
  sets the delays from the histogram of a burst of Alice's alternating training pattern and
  tracks the drift of the fibre and the clocks on the data histograms; without it, the
  delays are the right ones (:func:`~timebin.sim.channel.expected_delays`), fixed.
* **Distillation** (:func:`timebin.host.distill.session.run_pair`): ``DistillConfig`` with
  the 1-decoy 3-state bound, the mean photon numbers per symbol that the calibrated DAC codes
  realise (:func:`~timebin.sim.channel.symbol_mean_photons`, averaged over the three
  states), Alice's class probabilities and basis probability.

Memory is bounded by two blocks (Alice's logs of the current and the next block).
"""

import math
import time

import numpy as np

from ..host.align import TRAINING_PATTERN, Aligner
from .channel import (
    Calibration,
    Channel,
    calibrated_im_levels,
    channel_roles,
    classify_detections,
    gated_ingaas,
    link_figures,
    receiver_settings,
    snspd,
    symbol_mean_photons,
)
from .tx.run import run_tx

__all__ = ["LAB_DEFAULTS", "default_pulse_width", "lab_params", "alice_block",
           "alice_training", "stuck_qrng", "phase_histogram", "bob_records", "session_blocks",
           "reference_session"]

#: Defaults of the reference session: a 3-state one-decoy link at 625 MS/s (``lanes=4``) with
#: 200 ps UIs (``S = 8``: 4 UIs per 800 ps time bin, each pulse 2 UIs centred in its bin, so
#: that Bob's 1-UI delay steps can follow a drift before it costs errors); the gated
#: detector's 10 ns hold-off is about 6 symbols; bases near balance (blocks of 10^7 symbols
#: leave the X basis few counts otherwise); Bob's aligner tracks every 10^6 symbols.
LAB_DEFAULTS = {
    "lanes": 4,
    "uis_per_symbol": 8,
    "p_z": 0.6,
    "intensities": (0.5, 0.1),          # mean photon numbers per symbol of the classes
    "probabilities": (0.7, 0.3),        # class probabilities
    "track_symbols": 1_000_000,
}


def default_pulse_width(uis_per_symbol):
    """UIs of light per time bin the lab uses: half the bin (centred), or the whole bin when
    it is one UI."""
    k = uis_per_symbol // 2
    return max(k // 2, 1)


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


def stuck_qrng(cycles, width):
    """A failed QRNG: its bits stuck at 0 (for ``qrng`` of :func:`alice_block`)."""
    return np.zeros((cycles, width), np.uint8)


def alice_block(block, start, n, *, seed, lanes, uis_per_symbol, p_z, probabilities,
                settings, qrng=None):
    """Alice's symbol log of one block (``n`` symbols from global index ``start``): a run of
    the transmitter model keyed for this block (``qrng``: entropy from the QRNG port
    instead, see :func:`~timebin.sim.tx.run.run_tx`). Returns the log (``index`` global,
    uint64; ``basis``, ``bit``, ``intensity``, ``valid``, ``dark``) and the run's meta."""
    result, meta = run_tx(lanes=lanes, uis_per_symbol=uis_per_symbol, symbols=n,
                          seed=seed * (1 << 20) + block, protocol="3", p_z=p_z,
                          intensities=tuple(probabilities), settings=settings, qrng=qrng,
                          serializer=False)
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


def phase_histogram(detections, delays, *, uis_per_symbol, period_symbols, channels):
    """Bob's phase histogram of ``detections`` (``channel``, ``ui``) under ``delays``, as
    :class:`~timebin.gateware.rx.histogram.PhaseHistogram` counts it (without the
    gateware's own dead time): ``(channels, period_symbols * S)`` int64, click ``(index mod
    P) * S + phase`` of its channel."""
    S, P = uis_per_symbol, period_symbols
    ch = np.asarray(detections["channel"], np.int64)
    shifted = np.asarray(detections["ui"], np.int64) - np.asarray(delays, np.int64)[ch]
    b = np.mod(np.floor_divide(shifted, S), P) * S + np.mod(shifted, S)
    return np.bincount(ch * (P * S) + b, minlength=channels * P * S).reshape(channels, P * S)


def alice_training(n, *, seed, lanes, uis_per_symbol, settings):
    """Alice's symbol log of ``n`` symbols of the alternating training pattern (Z basis, bit
    = index mod 2, never valid for key) from the transmitter model."""
    result, _ = run_tx(lanes=lanes, uis_per_symbol=uis_per_symbol, symbols=n, seed=seed,
                       protocol="3", training=TRAINING_PATTERN, settings=settings,
                       serializer=False)
    return {name: result[name] for name in ("index", "basis", "bit", "intensity", "valid",
                                            "dark")}


def session_blocks(n_blocks, block_symbols, params, *, seed, p_z, probabilities, settings,
                   calibration, stats=None, aligner=None, training_symbols=200_000,
                   track_symbols=None, progress=None, delay_errors=(),
                   qrng_failure_block=None):
    """Yield ``(start, symbols, records)`` of consecutive blocks through one channel: the
    data :func:`~timebin.host.distill.session.run_pair` takes.

    Bob's delays: without ``aligner``, the right ones (:func:`expected_delays`, fixed);
    with an :class:`~timebin.host.align.Aligner`, first ``training_symbols`` of Alice's
    alternating pattern (symbol indices ``0 ..``; the blocks follow them) whose histogram
    sets the delays (:meth:`~timebin.host.align.Aligner.startup`), then, every
    ``track_symbols`` (None: never), a tracking step on the histogram of the clicks since the
    last one. A click is binned with the delays in force when it reaches Bob, as the
    gateware bins it. ``progress(done, total)`` is called as each block is handed on.
    ``delay_errors``: misconfigurations, ``(symbols, channel, uis)``: once ``symbols`` data
    symbols have been sent, channel ``channel``'s delay is moved by ``uis`` (as a wrong
    register write would). ``qrng_failure_block``: from this block on, Alice's entropy comes
    from a failed QRNG (:func:`stuck_qrng`) under her health tests (the blocks before use her
    keystream).

    ``stats`` (a dict), if given, collects ``detections`` (clicks on the blocks' symbols),
    ``records`` per block, ``late`` (clicks binned, after a delay step, on a block already
    handed on: lost), ``training_clicks``, ``counters`` (the channel's), ``tx_seconds``,
    ``channel_seconds``, ``histogram`` (the session's, ``(C, P * S)``, and its
    ``training_histogram``), ``delays`` (the last), ``timeline`` (one dict per tracking
    step: ``symbols`` sent, ``time_s`` of the link, ``delays``, ``drift_uis``) and
    ``first_index`` (the first block's first symbol)."""
    stats = stats if stats is not None else {}
    stats.update(detections=0, records=[], late=0, training_clicks=0, tx_seconds=0.0,
                 channel_seconds=0.0, timeline=[], alice_alarm=[], alice_dark=[])
    channel = Channel(params, seed=np.random.default_rng(seed), calibration=calibration,
                      tx_settings=settings)
    S, C = params.uis_per_symbol, params.channels
    P = aligner.P if aligner is not None else 1
    windows = receiver_settings(params)["windows"]
    if aligner is None:
        delays = receiver_settings(params)["delay"]
        if track_symbols is not None:
            raise ValueError("track_symbols needs an aligner")
    else:
        delays = np.asarray(aligner.delays, np.int64)
        windows = np.asarray(aligner.windows(), np.uint8)
    chunk = block_symbols
    if track_symbols is not None:
        chunk = _int_arg("track_symbols", track_symbols, 1)
    errors = [(_int_arg("delay error symbols", at, 0), _int_arg("delay error channel", c, 0),
               int(uis)) for at, c, uis in delay_errors]
    for _, c, _ in errors:
        if c >= C:
            raise ValueError(f"delay error channel must be below {C}, not {c!r}")
    applied = {(at, c): False for at, c, _ in errors}
    delays = np.asarray(delays, np.int64)
    histogram = np.zeros((C, P * S), np.int64)
    step = np.zeros_like(histogram)
    pending = []                           # binned clicks not yet handed on
    sent = 0

    def arrive(det):
        nonlocal step
        cl = classify_detections(det, params, delays, windows)
        pending.append({"index": cl["index"], "channel": np.asarray(det["channel"], np.uint8),
                        "cls": cl["cls"]})
        step += phase_histogram(det, delays, uis_per_symbol=S, period_symbols=P, channels=C)

    first = 0
    if aligner is not None:
        first = _int_arg("training_symbols", training_symbols, 1)
        t0 = time.perf_counter()
        log = alice_training(first, seed=seed * (1 << 20) + (1 << 19), lanes=params.lanes,
                             uis_per_symbol=S, settings=settings)
        t1 = time.perf_counter()
        det = channel.send_symbols(log["basis"], log["bit"], log["intensity"], log["dark"])
        stats["tx_seconds"] += t1 - t0
        stats["channel_seconds"] += time.perf_counter() - t1
        training = phase_histogram(det, delays, uis_per_symbol=S, period_symbols=P,
                                   channels=C)
        stats["training_histogram"] = training
        stats["training_clicks"] = int(len(det["channel"]))
        delays = np.asarray(aligner.startup(training, delays.tolist()), np.int64)
        sent = first
        stats["timeline"].append(_timeline_entry(params, sent, delays, aligner))
    stats["first_index"] = first

    prev = None                            # (start, log) of the block waiting for its clicks
    total = n_blocks * block_symbols
    for block in range(n_blocks + 1):
        if block < n_blocks:
            start = first + block * block_symbols
            t0 = time.perf_counter()
            failed = qrng_failure_block is not None and block >= qrng_failure_block
            log, meta = alice_block(block, start, block_symbols, seed=seed,
                                    lanes=params.lanes, uis_per_symbol=S, p_z=p_z,
                                    probabilities=probabilities, settings=settings,
                                    qrng=stuck_qrng if failed else None)
            stats["alice_alarm"].append(bool(meta["alarm"]))
            stats["alice_dark"].append(int(np.count_nonzero(log["dark"])))
            stats["tx_seconds"] += time.perf_counter() - t0
            for lo in range(0, block_symbols, chunk):
                t1 = time.perf_counter()
                part = slice(lo, lo + chunk)
                arrive(channel.send_symbols(log["basis"][part], log["bit"][part],
                                            log["intensity"][part], log["dark"][part]))
                stats["channel_seconds"] += time.perf_counter() - t1
                sent += min(chunk, block_symbols - lo)
                if track_symbols is not None:
                    histogram += step
                    delays = np.asarray(aligner.track(step, delays.tolist()), np.int64)
                    step[:] = 0
                    stats["timeline"].append(_timeline_entry(params, sent, delays, aligner))
                for at, c, uis in errors:
                    if at <= sent - first and not applied[(at, c)]:
                        applied[(at, c)] = True
                        delays = delays.copy()
                        delays[c] = max(int(delays[c]) + int(uis), 0)
        else:
            t1 = time.perf_counter()
            log = None
            arrive(channel.flush())
            stats["channel_seconds"] += time.perf_counter() - t1
        if prev is not None:
            binned = _concat(pending)
            p_start = prev[0]
            p_stop = p_start + block_symbols
            index = binned["index"]
            keep = (index >= p_start) & (index < p_stop)
            before = index < p_start
            stats["late"] += int(np.count_nonzero(before & (index >= first)))
            order = np.argsort(index[keep], kind="stable")
            records = {"index": index[keep][order].astype(np.uint64),
                       "channel": binned["channel"][keep][order],
                       "cls": binned["cls"][keep][order].astype(np.uint8),
                       "alarm": np.zeros(len(order), np.uint8)}
            # clicks on later symbols wait (at the end, those beyond the log are dropped)
            later = index >= p_stop if block < n_blocks else np.zeros(len(index), bool)
            pending[:] = [{k: v[later] for k, v in binned.items()}]
            stats["detections"] += len(order)
            stats["records"].append(len(order))
            if progress is not None:
                progress(p_stop - first, total)
            yield p_start, prev[1], records
        prev = None if log is None else (start, log)
    histogram += step
    stats["histogram"] = histogram
    stats["delays"] = [int(d) for d in delays]
    stats["counters"] = {k: v.copy() for k, v in channel.counters.items()}
    stats["symbols"] = total


def _timeline_entry(params, sent, delays, aligner):
    return {"symbols": int(sent), "time_s": sent * params.symbol_ps * 1e-12
            * params.time_acceleration, "delays": [int(d) for d in delays],
            "drift_uis": float(aligner.drift)}


def _int_arg(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    return int(value)


def reference_session(*, distance_km=10.0, symbols=20_000_000, block_symbols=10_000_000,
                      detector="gated", seed=1, reconciler="cascade", p_z=LAB_DEFAULTS["p_z"],
                      intensities=LAB_DEFAULTS["intensities"],
                      probabilities=LAB_DEFAULTS["probabilities"], lanes=LAB_DEFAULTS["lanes"],
                      uis_per_symbol=LAB_DEFAULTS["uis_per_symbol"], params=None,
                      calibration=None, eps_sec=1e-9, eps_cor=1e-15, replenish_bytes=64,
                      keep_data=False, align=True, training_symbols=200_000,
                      track_symbols="auto", nominal_delays=None, pulse_width=None,
                      progress=None, delay_errors=(), qrng_failure_block=None,
                      **channel_overrides):
    """A whole reference-model session (module docstring); returns a summary dict.

    ``symbols`` is rounded down to whole blocks of ``block_symbols``. ``params``: a
    :class:`~timebin.sim.channel.ChannelParams` that replaces the one :func:`lab_params`
    makes from ``detector``, ``distance_km``, ``lanes``, ``uis_per_symbol`` and
    ``channel_overrides``. ``keep_data``: also return the blocks handed to the hosts (for
    tests; memory grows with the session) under ``"data"``.

    ``align``: Bob's delays come from the host's :class:`~timebin.host.align.Aligner`
    (``training_symbols`` of Alice's alternating pattern first, then a tracking step every
    ``track_symbols``), starting from ``nominal_delays`` (UIs; default: each channel's
    latency in whole UIs, as a lab knows it from cables and data sheets); otherwise they are
    the right ones, fixed. ``track_symbols="auto"``: every 10^6 symbols when a bin has 2 UIs
    or more, else never. ``pulse_width``: UIs of light per time bin (Alice's driver
    ``pulse_width``, centred in the bin; default :func:`default_pulse_width`).
    ``progress(done, total)``: called as each block's records are handed to the hosts.
    ``delay_errors``, ``qrng_failure_block``: misconfigurations and failures
    (:func:`session_blocks`).

    Summary: ``symbols``, ``blocks``, ``clicks`` (all detections of the session),
    ``records`` (Bob's, per block); per block (lists, from Bob's host) ``detections``,
    ``sifted_z``, ``sifted_x``, ``qber_z``, ``qber_x``, ``efficiency``, ``key_bits``,
    ``stored_bits``, ``status``, ``bounds`` and Alice's ``alice_key_bits``,
    ``alice_stored_bits``; totals ``key_bits_total``, ``stored_bits_total``, ``keys_match``
    (the stored keys of both sides), ``key_blocks``; ``eps_sec``, ``eps_cor``;
    ``intensities`` (realised mean photon numbers of the Z states; ``intensities_x`` of the
    X state), ``counts`` (per block, per basis and class, as the bound took them),
    ``probabilities``, ``p_z``; ``link``
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
    if pulse_width is None:
        pulse_width = default_pulse_width(S)
    settings = {"im_levels": calibrated_im_levels(calibration, tuple(intensities),
                                                  uis_per_symbol=S, pulse_width=pulse_width),
                "pulse_width": pulse_width, "pulse_offset": (S // 2 - pulse_width) // 2}
    if track_symbols == "auto":
        track_symbols = LAB_DEFAULTS["track_symbols"] if align and S >= 4 else None
    aligner = None
    if align:
        if nominal_delays is None:
            nominal_delays = np.round(params.latencies / params.ui_ps).astype(int).tolist()
        aligner = Aligner(channel_roles(params), S, period_symbols=2,
                          nominal_delays=nominal_delays)
    elif track_symbols is not None or nominal_delays is not None:
        raise ValueError("track_symbols and nominal_delays need align=True")
    mu_table = symbol_mean_photons(calibration, S, settings)          # (class, state)
    # what the calibrated codes realise, per basis: the Z states' and X+'s (the bound takes
    # each basis's own; finite_key.key_length, intensities_x)
    realised = tuple(float(mu_table[c, [0, 1]].mean()) for c in range(len(intensities)))
    realised_x = tuple(float(mu_table[c, 2]) for c in range(len(intensities)))
    config = DistillConfig(protocol="1decoy-3state", intensities=realised,
                           intensities_x=realised_x,
                           probabilities=tuple(probabilities), p_z=p_z, eps_sec=eps_sec,
                           eps_cor=eps_cor, reconciler=reconciler,
                           replenish_bytes=replenish_bytes)
    stats = {}
    data = session_blocks(n_blocks, block_symbols, params, seed=seed, p_z=p_z,
                          probabilities=probabilities, settings=settings,
                          calibration=calibration, stats=stats, aligner=aligner,
                          training_symbols=training_symbols, track_symbols=track_symbols,
                          progress=progress, delay_errors=delay_errors,
                          qrng_failure_block=qrng_failure_block)
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
        "intensities_x": realised_x, "counts": [r.counts for r in results],
        "probabilities": tuple(probabilities), "p_z": p_z, "reconciler": reconciler,
        "link": link_figures(params), "counters": {k: v.tolist()
                                                   for k, v in stats["counters"].items()},
        "seconds": seconds, "tx_seconds": stats["tx_seconds"],
        "channel_seconds": stats["channel_seconds"], "symbol_rate_hz": rate,
        "key_per_symbol": key_bits / total, "key_rate_bps": key_bits / total * rate,
        "symbols_per_second": total / seconds if seconds > 0 else math.inf,
        "histogram": {"counts": stats["histogram"].tolist(), "period_symbols": aligner.P
                      if aligner else 1, "uis_per_symbol": S, "ui_ps": params.ui_ps,
                      "windows": np.asarray(aligner.windows() if aligner else
                                            receiver_settings(params)["windows"]).tolist(),
                      "delays": stats["delays"],
                      "channels": ["Z", "X+", "X-"][:params.channels]},
        "timeline": stats["timeline"], "late_clicks": stats["late"],
        "training_clicks": stats["training_clicks"], "aligned": bool(align),
        "first_index": stats["first_index"], "alice_alarm": stats["alice_alarm"],
        "alice_dark_symbols": stats["alice_dark"],
    }
    if keep_data:
        summary["data"] = kept
        summary["keys"] = keys
    return summary
