"""Key distillation on the host: from Alice's and Bob's records to secret key.

The pipeline (DESIGN.md section 4): sifting (:mod:`.sift`), finite-key decoy-state
parameter estimation (:mod:`.finite_key`), error correction (:mod:`.reconcile`: Cascade and
rate-adaptive LDPC), verification and authentication (:mod:`.auth`), privacy amplification
(:mod:`.privacy`), over the authenticated classical channel (:mod:`.channel`).

Conventions: keys are numpy arrays of bits, ``uint8`` 0/1, one bit per element; every
random choice takes a seed or a ``numpy.random.Generator``. Nothing here imports Amaranth.
"""
