"""Simulated detection data for key distillation: Alice's symbol log and Bob's detection
records of a weak-coherent-pulse time-bin link, block by block, without the gateware.

The model is the one of the distillation's tests and benchmarks; the virtual lab's physical
channel model (fibre drift, afterpulsing, dead time, jitter) drives the gateware itself.
Per symbol: Alice picks the basis (Z with ``p_z``), the bit (random in Z; in X ``|+>`` only
for the 3-state protocol, ``|+>`` or ``|->`` for 4 states) and the intensity class
(``probabilities``). A pulse of mean photon number ``mu`` is detected with probability
``1 - exp(-mu * eta)`` (``eta``: channel and detector transmittance), and a dark count adds
``p_dark`` per symbol; Bob's beam splitter sends the light to the Z arm with ``bob_p_z``.

- Z arm (channel 0, role Z): a Z state lands in its bin, in the other with ``e_z``; an X state
  in either bin at random.
- X arm (channel 1 at the ``+`` port, channel 2 at the ``-`` port, behind the one-bin
  interferometer): the photon lands in a side slot (early or late class: not measured) with
  probability 1/2, or in the middle slot; there an X state leaves by its port with
  probability ``(1 + visibility) / 2``, a Z state by either port at random.
- Dark counts: a random class on a random channel.

Records carry the fields Bob's board sends (``index``, ``channel``, ``cls``, ``alarm``),
sorted by index; the symbol log the fields Alice's board logs (``basis``, ``bit``,
``intensity``, ``valid``), symbol ``i`` at global index ``start + i``.
"""

import numpy as np

from ..gateware.records import (
    BASIS_X,
    BASIS_Z,
    CLASS_DISCARD,
    CLASS_EARLY,
    CLASS_LATE,
    CLASS_MIDDLE,
)

__all__ = ["LINK_DEFAULTS", "roles_for", "generate_block", "blocks"]

#: Defaults: a 3-state one-decoy link (Boaron et al. PRL 2018 style) at a few km; the bases
#: are near balance because blocks of 10^7 symbols leave the X basis few counts otherwise.
LINK_DEFAULTS = {
    "states": 3,
    "intensities": (0.5, 0.1),
    "probabilities": (0.7, 0.3),
    "p_z": 0.6,
    "bob_p_z": 0.6,
    "eta": 0.2,                     # a 25 % detector behind about 5 km of fibre
    "p_dark": 1e-6,
    "e_z": 0.01,
    "visibility": 0.98,
}

#: Detector roles per channel (gateware.sifting's numbers: 0 Z, 1 X+, 2 X-).
_ROLES = {3: (0, 1, 2), 4: (0, 1, 2)}


def roles_for(states):
    """The role of each channel: a Z detector and the X detectors at both ports."""
    if states not in _ROLES:
        raise ValueError(f"States must be 3 or 4, not {states!r}")
    return np.array(_ROLES[states], np.uint8)


def _check(params):
    unknown = set(params) - set(LINK_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown link parameter(s) {sorted(unknown)}")
    p = {**LINK_DEFAULTS, **params}
    if len(p["intensities"]) != len(p["probabilities"]) or not 1 <= len(p["intensities"]) <= 4:
        raise ValueError(f"Intensities {p['intensities']!r} and probabilities "
                         f"{p['probabilities']!r} must have the same 1..4 entries")
    if abs(sum(p["probabilities"]) - 1) > 1e-9:
        raise ValueError(f"Intensity probabilities {p['probabilities']!r} must sum to 1")
    for name in ("p_z", "bob_p_z", "eta", "p_dark", "e_z", "visibility"):
        if not 0 <= p[name] <= 1:
            raise ValueError(f"{name} must be in [0, 1], not {p[name]!r}")
    roles_for(p["states"])
    return p


def generate_block(n, start, rng, **params):
    """``(symbols, records)`` of ``n`` symbols from global index ``start``.

    ``symbols``: ``{basis, bit, intensity, valid}`` uint8 (n,); ``records``: ``{index
    (uint64), channel, cls, alarm}`` of the detections, sorted by index.
    """
    p = _check(params)
    basis = (rng.random(n) >= p["p_z"]).astype(np.uint8)          # 0 Z, 1 X
    bit = rng.integers(0, 2, n, dtype=np.uint8)
    if p["states"] == 3:
        bit[basis == BASIS_X] = 0
    intensity = rng.choice(len(p["intensities"]), n, p=p["probabilities"]).astype(np.uint8)
    mu = np.asarray(p["intensities"], float)[intensity]
    light = rng.random(n) < -np.expm1(-mu * p["eta"])
    dark = ~light & (rng.random(n) < p["p_dark"])
    at = np.flatnonzero(light | dark)
    k = len(at)
    b, x, lit = basis[at], bit[at], light[at]
    z_arm = rng.random(k) < p["bob_p_z"]
    u = rng.random(k)
    # Z arm: the state's bin, or the other one.
    z_bin = np.where(b == BASIS_Z, x ^ (u < p["e_z"]), u < 0.5).astype(np.uint8)
    # X arm: side slots half the time; the middle slot's port by interference.
    side = rng.random(k) < 0.5
    right = rng.random(k) < (1 + p["visibility"]) / 2
    port = np.where(b == BASIS_X, x ^ ~right, rng.random(k) < 0.5).astype(np.uint8)
    channel = np.where(z_arm, 0, 1 + port).astype(np.uint8)
    cls = np.where(z_arm, np.where(z_bin == 1, CLASS_LATE, CLASS_EARLY),
                   np.where(side, np.where(rng.random(k) < 0.5, CLASS_EARLY, CLASS_LATE),
                            CLASS_MIDDLE)).astype(np.uint8)
    # Dark counts: any channel, any class.
    d = ~lit
    channel[d] = rng.integers(0, 3, int(d.sum()), dtype=np.uint8)
    cls[d] = rng.choice(np.array([CLASS_EARLY, CLASS_LATE, CLASS_MIDDLE, CLASS_DISCARD],
                                 np.uint8), int(d.sum()))
    symbols = {"basis": basis, "bit": bit, "intensity": intensity,
               "valid": np.ones(n, np.uint8)}
    records = {"index": (at + start).astype(np.uint64), "channel": channel, "cls": cls,
               "alarm": np.zeros(k, np.uint8)}
    assert BASIS_Z == 0
    return symbols, records


def blocks(n_blocks, block_symbols, seed, **params):
    """Yield ``(start, symbols, records)`` for consecutive blocks of ``block_symbols``."""
    rng = np.random.default_rng(seed)
    for b in range(n_blocks):
        start = b * block_symbols
        symbols, records = generate_block(block_symbols, start, rng, **params)
        yield start, symbols, records
