"""The virtual lab's RTL-in-the-loop session (sim/lab_rtl.py): Alice's and Bob's whole-board
gateware in one Amaranth simulation with the channel model between them, both host clients
over a pseudo-terminal (Alice) and TCP (Bob), distillation over the authenticated channel
into the key stores. Its records equal the reference level's (transmitter model, the same
channel path, receiver model) on the same seeds, field by field; the hosts sift what the
host sifter makes of the captured log and records. Bob's auto-alignment: from wrong nominal
delays, his host finds the right ones on Alice's training light before the key run."""

import numpy as np
import pytest
from amaranth.hdl import Signal
from timebin.host.distill.sift import sift
from timebin.host.keystore import KeyStore
from timebin.sim.channel import channel_roles, expected_delays
from timebin.sim.lab_rtl import (
    ChannelFeed,
    _ChannelPlayer,
    alice_model,
    lab_setup,
    reference_records_of,
    rtl_session,
)

# 6000 symbols of 625 MS/s (lanes 4, S = 2) at 10 km, gated InGaAs: about 250 records;
# the session takes about 30 s (a 2048-word symbol memory clears first).
SHAPE = {"lanes": 4, "uis_per_symbol": 2}
SYMBOLS = 6000
SEED = 5
FIELDS = ("index", "phase", "channel", "cls", "alarm")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    store = tmp_path_factory.mktemp("rtl-keys")
    summary = rtl_session(symbols=SYMBOLS, seed=SEED, transport=("pty", "tcp"),
                          store_dir=store, keep_data=True, timeout=300, **SHAPE)
    summary["store_dir"] = store
    return summary


@pytest.fixture(scope="module")
def reference():
    return reference_records_of(symbols=SYMBOLS, seed=SEED, **SHAPE)


def test_rtl_records_equal_the_reference_level(session, reference):
    data = session["data"]
    assert session["starved"] == 0
    assert data["origin_cycle"] < data["epoch_cycle"] < data["light_done_cycle"]
    # Alice's gateware emitted the transmitter model's words on the same seed ...
    for name in ("carver", "im", "pm"):
        np.testing.assert_array_equal(data["alice_words"][name],
                                      reference["alice_words"][name], err_msg=name)
    for name in ("index", "basis", "bit", "intensity", "valid", "dark"):
        np.testing.assert_array_equal(data["alice_log"][name], reference["alice_log"][name],
                                      err_msg=name)
    # ... the channel made the same words of them, and Bob's detectors played them all ...
    np.testing.assert_array_equal(data["bob_words"], reference["bob_words"])
    np.testing.assert_array_equal(data["played_words"], reference["bob_words"])
    assert data["counters"] == reference["counters"]
    # ... and Bob's gateware, through his link and host, gave the receiver model's records.
    want = reference["records"]
    assert len(want["index"]) > 100
    for name in FIELDS:
        np.testing.assert_array_equal(data["records"][name],
                                      want[name].astype(data["records"][name].dtype),
                                      err_msg=name)
    assert session["bob"]["records_out"] == len(want["index"])
    assert session["bob"]["overflow"] == 0


def test_the_comparison_sees_other_seeds(session, reference):
    """Another channel seed (or Alice's seed) changes the reference level's records: the
    equality above is not a vacuous one."""
    got = session["data"]["records"]
    other_channel = reference_records_of(symbols=SYMBOLS, seed=SEED, channel_seed=SEED + 1,
                                         **SHAPE)
    assert other_channel["alice_words"]["im"].tobytes() == \
        reference["alice_words"]["im"].tobytes()
    other_alice = reference_records_of(symbols=SYMBOLS, seed=SEED + 1, channel_seed=SEED,
                                       **SHAPE)
    assert not np.array_equal(other_alice["alice_words"]["im"], reference["alice_words"]["im"])
    for other in (other_channel, other_alice):
        records = other["records"]
        same = len(records["index"]) == len(got["index"]) and all(
            np.array_equal(got[name], records[name].astype(got[name].dtype))
            for name in FIELDS)
        assert not same


def test_session_runs_through_both_transports_to_the_key_stores(session):
    s = session
    assert s["transport"] == ["pty", "tcp"]
    assert s["blocks"] == 1 and s["status"][0] in ("key", "empty"), s["reason"]
    assert s["records"] == [len(s["data"]["session_records"]["index"])]
    assert s["records_beyond"] == 0 and s["clicks"] >= sum(s["records"])
    # every lookup went to Alice's board and found her symbol there
    measured = s["detections"][0]
    assert s["lookups"]["indices"] == measured > 50
    assert s["alice"]["lookups"] == measured and s["alice"]["lookup_unavailable"] == 0
    assert s["alice"]["log_missed"] == 0 and s["alice"]["underflow"] == 0
    assert 0 <= s["alice_overrun_words"] < s["symbol_depth"] - SYMBOLS // SHAPE["lanes"]
    for role in ("alice", "bob"):
        stats = s["link_stats"][role]
        assert stats["lost_frames"] == 0 and stats["crc_errors"] == 0, role
        assert stats["board"]["link_bad_requests"] == 0, role
    # both key stores hold what both hosts stored (nothing on a block without key)
    assert s["keys_match"] and s["key_bits"] == s["alice_key_bits"]
    with KeyStore(s["store_dir"] / "alice.keys") as ka, \
            KeyStore(s["store_dir"] / "bob.keys") as kb:
        blocks_a = [(r["block_id"], r["key_bits"]) for r in ka.blocks()]
        blocks_b = [(r["block_id"], r["key_bits"]) for r in kb.blocks()]
    assert blocks_a == blocks_b
    assert len(blocks_b) == len(s["key_blocks"]) == s["stores"]["bob"]
    assert s["cycles"] > s["light_done_cycle"] and s["cycles_per_s"] > 0


def test_hosts_sift_as_the_host_sifter(session):
    s, data = session, session["data"]
    params = data["setup"].params
    _, counts = sift(data["alice_log"], data["session_records"], channel_roles(params))
    assert counts["unavailable"] == 0
    assert s["sifted_z"][0] == counts["sifted"][0].sum() > 0
    assert s["sifted_x"][0] == counts["sifted"][1].sum()
    assert s["errors_x"][0] == counts["errors"][1].sum()
    if s["status"][0] != "aborted":             # error correction found every Z error
        assert s["errors_z"][0] == counts["errors"][0].sum()


def test_qrng_session_equals_the_model_replaying_its_entropy():
    """Alice on her QRNG port (health tests on), both hosts over TCP: the records equal the
    reference level's whose transmitter model replays the seeded QRNG words from the cycle
    her host enabled her; a cycle later they differ."""
    s = rtl_session(symbols=2000, seed=SEED + 2, entropy="qrng", transport="tcp",
                    keep_data=True, timeout=300, **SHAPE)
    data = s["data"]
    assert s["entropy"] == "qrng" and s["transport"] == "tcp" and s["starved"] == 0
    assert s["alice"]["alarm"] == 0 and s["alice"]["health_fail_cycles"] == 0
    assert s["alice"]["lookup_unavailable"] == 0
    with pytest.raises(ValueError, match="needs enable_cycle"):
        reference_records_of(symbols=2000, seed=SEED + 2, entropy="qrng", **SHAPE)
    want = reference_records_of(symbols=2000, seed=SEED + 2, entropy="qrng",
                                enable_cycle=s["enable_cycle"], **SHAPE)
    for name in ("carver", "im", "pm"):
        np.testing.assert_array_equal(data["alice_words"][name], want["alice_words"][name],
                                      err_msg=name)
    np.testing.assert_array_equal(data["played_words"], want["bob_words"])
    assert len(want["records"]["index"]) > 20
    for name in FIELDS:
        np.testing.assert_array_equal(data["records"][name],
                                      want["records"][name].astype(data["records"][name].dtype),
                                      err_msg=name)
    late = reference_records_of(symbols=2000, seed=SEED + 2, entropy="qrng",
                                enable_cycle=s["enable_cycle"] + 1, **SHAPE)
    assert not np.array_equal(late["alice_words"]["im"], want["alice_words"]["im"])


def test_starved_words_are_played_silent_and_counted():
    """Bob's player counts every word the channel has not made yet when Bob needs it, and
    plays silence then; after the flushed light, silence is not starvation."""
    setup = lab_setup(symbols=64, seed=1, chunk_cycles=8, **SHAPE)
    feed = ChannelFeed(setup)
    top = type("Top", (), {})()
    top.samples = Signal(setup.params.channels * 8)
    top.receiver = type("Receiver", (), {"epoch_load": Signal()})()
    played = []

    class Ctx:
        def get(self, signal):
            return 1                            # the epoch is loaded in cycle 0

        def set(self, signal, value):
            played.append(value)

    player, ctx = _ChannelPlayer(top, feed), Ctx()
    player.drive(ctx, 0)                        # the strobe
    for cycle in range(1, 4):
        player.drive(ctx, cycle)
    assert player.starved == 3 and player.played_ints == [0, 0, 0]
    carver = np.ones((16, 8), np.uint8)
    feed.send(carver, np.full((16, 8), 255, np.uint8), np.zeros((16, 8), np.uint8))
    assert len(feed.word_ints) > 3
    for cycle in range(4, 4 + len(feed.word_ints) - 3):
        player.drive(ctx, cycle)
    assert player.starved == 3
    assert player.played_ints[3:] == feed.word_ints[3:]
    feed.end()
    for cycle in range(100):
        player.drive(ctx, 100 + cycle)
    assert player.starved == 3
    assert len(player.played_ints) == len(feed.word_ints)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="symbols must be a multiple of lanes \\(4\\), not 1001"):
        lab_setup(symbols=1001, **SHAPE)
    with pytest.raises(ValueError, match="symbols must be an integer >= 1, not 0"):
        lab_setup(symbols=0, **SHAPE)
    with pytest.raises(ValueError, match="chunk_cycles must be an integer >= 1, not 0"):
        lab_setup(symbols=400, chunk_cycles=0, **SHAPE)
    with pytest.raises(ValueError, match="symbol_depth must be a power of two .* 100 words, "
                                         "not 64"):
        lab_setup(symbols=400, symbol_depth=64, **SHAPE)
    with pytest.raises(ValueError, match="detector must be 'gated' or 'snspd', not 'pmt'"):
        lab_setup(symbols=400, detector="pmt", **SHAPE)
    with pytest.raises(ValueError, match="dead_mode must be an integer in 0..1, not 2"):
        lab_setup(symbols=400, dead_mode=2, **SHAPE)
    with pytest.raises(ValueError, match="P\\(Z\\) must be within \\[0, 1\\], not 1.5"):
        lab_setup(symbols=400, p_z=1.5, **SHAPE)
    with pytest.raises(ValueError, match="entropy must be one of \\('csprng', 'qrng'\\), "
                                         "not 'trng'"):
        lab_setup(symbols=400, entropy="trng", **SHAPE)
    with pytest.raises(ValueError, match="transport must be 'pty', 'tcp' or a pair"):
        rtl_session(symbols=400, transport="usb", **SHAPE)
    with pytest.raises(ValueError, match="block_symbols must divide symbols \\(400\\), not 300"):
        rtl_session(symbols=400, block_symbols=300, **SHAPE)


# --- Bob's auto-alignment (issue 6) -------------------------------------------------------

# The lab's link (S = 8: 4 UIs per bin, 2-UI pulses centred in them); Bob's nominal delays
# wrong by a few UIs (less than a symbol) on every channel. 2000 symbols of key run after
# the training: the session takes 40 to 60 s (the start-up histogram's 100 clicks per
# channel, some 2000 cycles of training light, and its read-out over Bob's link, two round
# trips for each of 48 bins, some 6000 cycles; a tracking step would read it once more).
ALIGN_SHAPE = {"lanes": 4, "uis_per_symbol": 8}
ALIGN_SYMBOLS = 2000
NOMINAL_ERRORS = (3, -4, 5)


def qber(alice_log, records, params):
    """``(qber_z, qber_x, sifted_z)`` of ``records`` against Alice's log (host sifter)."""
    _, counts = sift(alice_log, records, channel_roles(params))
    sifted, errors = counts["sifted"].sum(axis=1), counts["errors"].sum(axis=1)
    return errors[0] / sifted[0], errors[1] / max(sifted[1], 1), int(sifted[0])


def held(replay, delays):
    """``replay`` with Bob's delays held at ``delays`` from reset on (his windows as set)."""
    settings = replay["bob_settings"]
    return {**replay, "bob_settings": {"cycle": [0], "delay": [list(delays)],
                                       "windows": [settings["windows"][-1]]}}


def key_run(records, session):
    keep = (records["index"] >= session["data_start"]) & (
        records["index"] < session["data_start"] + session["symbols"])
    return {name: values[keep] for name, values in records.items()}


@pytest.fixture(scope="module")
def right_delays():
    return expected_delays(lab_setup(symbols=ALIGN_SYMBOLS, **ALIGN_SHAPE).params).tolist()


@pytest.fixture(scope="module")
def aligned(right_delays):
    nominal = [d + e for d, e in zip(right_delays, NOMINAL_ERRORS, strict=True)]
    return rtl_session(symbols=ALIGN_SYMBOLS, seed=SEED, align=True, nominal_delays=nominal,
                       align_clicks=100, keep_data=True, timeout=400, **ALIGN_SHAPE)


def test_alignment_finds_the_right_delays(aligned, right_delays):
    s, data = aligned, aligned["data"]
    S = ALIGN_SHAPE["uis_per_symbol"]
    assert s["aligned"] and s["starved"] == 0
    nominal = s["nominal_delays"]
    assert all(0 < abs(n - r) < S for n, r in zip(nominal, right_delays, strict=True))
    # Bob's delay registers after the start-up are the right ones
    assert s["delays"] == right_delays
    startup = s["timeline"][0]
    assert startup["kind"] == "startup" and startup["delays"] == right_delays
    assert min(startup["counts"]) >= 100
    # his receiver binned with the nominal delays from his epoch, then with the right ones,
    # changed before the key run's light reached him (Bob's word p carries Alice's word p)
    settings = s["replay"]["bob_settings"]
    cycles, delays = np.array(settings["cycle"]), np.array(settings["delay"])
    at_epoch = np.searchsorted(cycles, data["epoch_cycle"], side="right") - 1
    assert delays[at_epoch].tolist() == nominal and delays[-1].tolist() == right_delays
    assert cycles[-1] < data["epoch_cycle"] + 1 + data["training_words"]
    # the key run starts where Alice's symbol source left training, as the host found it
    assert s["data_start"] == s["training_symbols"] == data["training_words"] * 4 > 0
    assert s["alignment_cycles"] == data["data_cycle"] - data["enable_cycle"] > 0
    assert s["records_training"] > 0 and s["records"] == [len(data["session_records"]["index"])]
    assert len(s["timeline"]) == 1                            # no tracking asked


def test_aligned_records_equal_the_reference_level(aligned):
    """The reference level replays the run (Alice's training words, Bob's delays as his
    receiver saw them cycle by cycle): the records of the training, across the delay writes
    and of the key run are the receiver model's."""
    s, data = aligned, aligned["data"]
    setup = data["setup"]
    with pytest.raises(ValueError, match="needs its replay"):
        reference_records_of(setup=setup)
    want = reference_records_of(setup=setup, replay=s["replay"])
    for name in ("carver", "im", "pm"):
        np.testing.assert_array_equal(data["alice_words"][name], want["alice_words"][name],
                                      err_msg=name)
    for name in ("index", "basis", "bit", "intensity", "valid", "dark"):
        np.testing.assert_array_equal(data["alice_log"][name], want["alice_log"][name],
                                      err_msg=name)
    np.testing.assert_array_equal(data["played_words"], want["bob_words"])
    assert len(want["records"]["index"]) > s["records_training"] > 0
    for name in FIELDS:
        np.testing.assert_array_equal(data["records"][name],
                                      want["records"][name].astype(data["records"][name].dtype),
                                      err_msg=name)


def test_aligned_key_run_has_the_qber_of_a_right_link(aligned, right_delays):
    """The key run's records are those of a link given the right delays from the start; held
    at the nominal ones (no alignment), the same light gives a useless QBER."""
    s, data = aligned, aligned["data"]
    params, log = data["setup"].params, data["alice_log"]
    got = data["session_records"]
    q_z, q_x, n_z = qber(log, got, params)
    # a handful of X bits (one error in eight happens): a misaligned X reads about 50 %.
    # How many key symbols the run gets depends on when the hosts' threads act (24 to 40
    # sifted Z bits seen). The right link's Z errors (dark counts, afterpulses: a few %) made
    # 2 in 37 once, so the bound is 15 %: at 16 bits or more a misaligned Z (about 50 %)
    # passes it with a chance of 0.2 %; the records are then checked one by one below.
    assert n_z >= 16 and q_z <= 0.15 and q_x <= 0.25
    assert s["sifted_z"][0] == n_z and s["qber_x"][0] == pytest.approx(q_x)
    right = reference_records_of(setup=data["setup"], replay=held(s["replay"], right_delays))
    right_run = key_run(right["records"], s)
    for name in FIELDS:
        np.testing.assert_array_equal(got[name], right_run[name].astype(got[name].dtype),
                                      err_msg=name)
    # (the training records differ: the replay of the delay writes is not vacuous)
    assert len(right["records"]["index"]) != len(data["records"]["index"]) or not all(
        np.array_equal(right["records"][n], data["records"][n]) for n in FIELDS)
    wrong = reference_records_of(setup=data["setup"],
                                 replay=held(s["replay"], s["nominal_delays"]))
    w_z, _, _ = qber(log, key_run(wrong["records"], s), params)
    assert w_z > 0.25


def test_alignment_options_are_checked():
    with pytest.raises(ValueError, match="nominal_delays need align=True"):
        lab_setup(symbols=400, nominal_delays=10, **ALIGN_SHAPE)
    with pytest.raises(ValueError, match="nominal_delays must be one value or one per channel"):
        lab_setup(symbols=400, align=True, nominal_delays=[10, 10], **ALIGN_SHAPE)
    with pytest.raises(ValueError, match="pulse_width must be an integer in 1..4, not 5"):
        lab_setup(symbols=400, pulse_width=5, **ALIGN_SHAPE)
    with pytest.raises(ValueError, match="align must be True or False, not 1"):
        lab_setup(symbols=400, align=1, **ALIGN_SHAPE)
    with pytest.raises(ValueError, match="track needs align=True"):
        rtl_session(symbols=400, track="end", **ALIGN_SHAPE)
    with pytest.raises(ValueError, match="track must be 'end' or a multiple of lanes"):
        rtl_session(symbols=400, align=True, track=402, **ALIGN_SHAPE)
    setup = lab_setup(symbols=400, align=True, **ALIGN_SHAPE)
    assert setup.nominal_delays == tuple(expected_delays(setup.params).tolist())
    assert setup.receiver_params["histogram_period"] == 2
    assert setup.alice_registers()["training"] == 3           # alternating
    qrng = lab_setup(symbols=400, align=True, entropy="qrng", **ALIGN_SHAPE)
    with pytest.raises(ValueError, match="QRNG session with training words is not modelled"):
        alice_model(qrng, enable_cycle=10, training_words=5)
