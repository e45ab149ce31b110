"""PNG plots of a virtual-lab session (``timebin demo``): Bob's timing histogram with his
windows, QBER and key over the session, and the key rate versus distance (measured point,
theory curve of the same link, PLOB bound).

Headless: figures are drawn on matplotlib's Agg canvas (no pyplot, no display, no global
state), as :func:`timebin.host.distill.keyrate.plot_keyrate` draws them.
"""

import math

__all__ = ["WINDOW_CLASSES", "plot_histogram", "plot_timeline", "plot_session_keyrate"]

#: Window classes of Bob's binner (``gateware.rx.binning``) and how they are drawn.
WINDOW_CLASSES = (("early", "C0"), ("late", "C1"), ("middle", "C2"), ("discard", "0.6"))


def _figure(width, height, rows=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


def _need(summary, key, what):
    if key not in summary or summary[key] is None:
        raise ValueError(f"The session summary has no {key!r}: cannot plot {what}")
    return summary[key]


def plot_histogram(summary, path):
    """Bob's timing histogram of the session: per channel, clicks per phase bin (``(index
    mod P) * S + phase`` after his delays), bars over one period, each UI shaded by the
    window class it falls in (early, late, middle, discard). ``summary``: a session summary
    with ``histogram`` (:func:`~timebin.sim.lab.reference_session`). Returns ``path``."""
    h = _need(summary, "histogram", "Bob's timing histogram")
    counts = [list(c) for c in h["counts"]]
    P, S, ui_ps = int(h["period_symbols"]), int(h["uis_per_symbol"]), float(h["ui_ps"])
    windows = [list(w) for w in h["windows"]]
    channels = list(h.get("channels") or [f"channel {c}" for c in range(len(counts))])
    delays = list(h.get("delays") or [])
    if not counts or any(len(c) != P * S for c in counts):
        raise ValueError(f"histogram counts must be {len(channels)} rows of P * S = {P * S} "
                         f"bins, not {[len(c) for c in counts]}")
    if len(windows) != len(counts) or any(len(w) != S for w in windows):
        raise ValueError(f"histogram windows must be one row of S = {S} classes per channel, "
                         f"not {windows!r}")
    fig, axes = _figure(8, 2.0 + 1.6 * len(counts), rows=len(counts))
    x = [b * ui_ps / 1000 for b in range(P * S)]            # ns from the period's start
    width = ui_ps / 1000
    used = set()
    for c, ax in enumerate(axes):
        for b in range(P * S):
            cls = windows[c][b % S]
            name, colour = WINDOW_CLASSES[cls]
            label = None if cls in used else f"window: {name}"
            used.add(cls)
            ax.axvspan(x[b], x[b] + width, color=colour, alpha=0.15, lw=0, label=label)
        ax.bar(x, counts[c], width=width, align="edge", color="k", alpha=0.75,
               label="clicks" if c == 0 else None)
        title = channels[c] + (f" (delay {delays[c]} UI)" if c < len(delays) else "")
        ax.set_ylabel("clicks")
        ax.set_title(title, fontsize=9, loc="left")
        for s in range(1, P):
            ax.axvline(s * S * width, color="k", lw=0.6, ls=":")
    axes[-1].set_xlabel(f"time in the {P}-symbol histogram period (ns; UI = {ui_ps:g} ps)")
    handles, labels = [], []
    for ax in axes:
        for hd, lb in zip(*ax.get_legend_handles_labels(), strict=True):
            if lb not in labels:
                handles.append(hd)
                labels.append(lb)
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=len(labels))
    fig.suptitle("Bob's timing histogram and windows", fontsize=11, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    return str(path)


def _block_times(summary):
    """Modelled link time (s) at the end of each block."""
    rate = float(summary.get("symbol_rate_hz") or summary["link"]["symbol_rate_hz"])
    first = int(summary.get("first_index", 0))
    block = int(summary["block_symbols"])
    return [(first + (b + 1) * block) / rate for b in range(len(summary["status"]))]


def _finite(values):
    return [v if v is not None and isinstance(v, (int, float)) and math.isfinite(v)
            else float("nan") for v in values]


def plot_timeline(summary, path):
    """QBER Z and X per block and secret key bits per block against the modelled link time
    (block end: its last symbol over the symbol rate), and, when the session tracked Bob's
    delays (``timeline``), his delays (and the tracked QBER, if reported) at each step.
    Returns ``path``."""
    for key in ("status", "qber_z", "qber_x", "key_bits", "block_symbols"):
        _need(summary, key, "QBER and key over time")
    times = _block_times(summary)
    timeline = summary.get("timeline") or []
    rows = 3 if timeline else 2
    fig, axes = _figure(8, 2.2 * rows + 0.6, rows=rows)
    ax = axes[0]
    ax.plot(times, [100 * q for q in _finite(summary["qber_z"])], "o-", color="C0",
            label="QBER Z (per block)")
    ax.plot(times, [100 * q for q in _finite(summary["qber_x"])], "s-", color="C1",
            label="QBER X (per block)")
    tracked = [(t["time_s"], t.get("qber_z")) for t in timeline if t.get("qber_z") is not None]
    if tracked:
        ax.plot([t for t, _ in tracked], [100 * q for _, q in tracked], ".", color="C0",
                alpha=0.5, label="QBER Z (tracking steps)")
    ax.set_ylabel("QBER (%)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    ax = axes[1]
    block_s = summary["block_symbols"] / float(summary.get("symbol_rate_hz")
                                               or summary["link"]["symbol_rate_hz"])
    ax.bar([t - block_s for t in times], summary["key_bits"], width=block_s, align="edge",
           color="C2", alpha=0.8, edgecolor="k", label="secret key bits (per block)")
    if "stored_bits" in summary:
        ax.plot([t - block_s / 2 for t in times], summary["stored_bits"], "k_", ms=14,
                label="stored after authentication")
    ax.set_ylabel("key bits")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    if timeline:
        ax = axes[2]
        ts = [t["time_s"] for t in timeline]
        for c in range(len(timeline[0]["delays"])):
            name = (summary.get("histogram") or {}).get("channels", [])
            label = name[c] if c < len(name) else f"channel {c}"
            ax.step(ts, [t["delays"][c] for t in timeline], where="post", label=label)
        ax.set_ylabel("Bob's delay (UI)")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("modelled link time (s)")
    fig.suptitle(f"QKD session over time: {summary.get('distance_km', 0):g} km, "
                 f"{summary.get('detector', '')} detectors", fontsize=11, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    return str(path)


def plot_session_keyrate(curve, path, *, measured=None, title=None):
    """Key rate versus distance: ``curve`` (rows of :func:`~timebin.sim.keyrate_points.
    theory_curve`: the finite-key theory of the session's link, the asymptotic rate and
    PLOB) and ``measured`` points ``(distance_km, rate_bps, error_bps)``; points without key
    (rate 0) cannot sit on the log axis and are left out. Drawn by
    :func:`~timebin.host.distill.keyrate.plot_keyrate`. Returns ``path``."""
    from ..host.distill.keyrate import plot_keyrate

    points = [p for p in (measured or []) if p[1] > 0]
    return plot_keyrate(curve, path, measured=points or None,
                        title=title or "Secret key rate versus distance")
