"""``timebin bench distill``: the speed of each distillation stage and of the whole pipeline,
on one core (the numba and FFT stages run single-threaded; the end-to-end session runs
Alice's and Bob's hosts as two threads of one process over a socket pair)."""

import os
import platform
import time

__all__ = ["bench_distill"]

#: Published standalone figures of a real-time system (Toshiba, Yuan et al., JLT 36, 3427
#: (2018)), and the issue's target of twice them.
TOSHIBA_2018 = {"sifting_records_per_s": 60e6, "error_correction_mbps": 55.0,
                "privacy_amplification_mbps": 108.0}


def bench_distill(*, quick=False, seed=0):
    """``{"sifting", "error_correction", "privacy_amplification", "end_to_end", ...}``."""
    from ...sim.keydata import blocks, roles_for
    from .privacy import bench_privacy
    from .reconcile import bench_reconcile
    from .session import DistillConfig, run_pair
    from .sift import bench_sift

    out = {"bench": "distill", "machine": {"python": platform.python_version(),
                                           "machine": platform.machine(),
                                           "cpus": os.cpu_count()},
           "seed": seed, "reference": TOSHIBA_2018,
           "targets": {k: 2 * v for k, v in TOSHIBA_2018.items()}}
    out["sifting"] = bench_sift(records=10**6 if quick else 10**7, seed=seed)
    out["error_correction"] = bench_reconcile(n=10**5 if quick else 10**6, seed=seed)
    sizes = (10**6,) if quick else (10**6, 10**7, 10**8)
    out["privacy_amplification"] = bench_privacy(sizes=sizes, seed=seed)
    end = {}
    for reconciler in ("cascade", "ldpc"):
        n_blocks, symbols = (1, 10**7) if quick else (3, 10**7)
        data = list(blocks(n_blocks, symbols, seed, eta=0.2))
        started = time.perf_counter()
        alice, bob, keys = run_pair(data, DistillConfig(reconciler=reconciler),
                                    roles=roles_for(3), secret=os.urandom(1 << 16), seed=seed)
        seconds = time.perf_counter() - started
        stored = 8 * sum(len(k) for k in keys["bob"].values())
        end[reconciler] = {
            "blocks": n_blocks, "symbols": n_blocks * symbols, "seconds": seconds,
            "detections": sum(r.detections for r in bob.results),
            "sifted_z": sum(r.sifted_z for r in bob.results),
            "final_key_bits": sum(r.key_bits for r in bob.results),
            "stored_key_bits": stored,
            "auth_bits_consumed": sum(p.consumed_bits for p in bob.channel.pools.values()),
            "secret_bits_per_s": stored / seconds,
            "efficiency": [r.efficiency for r in bob.results],
            "qber_z": [r.qber_z for r in bob.results],
            "status": [r.status for r in bob.results],
            "keys_equal": keys["alice"] == keys["bob"],
        }
    out["end_to_end"] = end
    return out
