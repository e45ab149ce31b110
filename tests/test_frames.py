"""The link frame format (timebin.gateware.frames) and the host's streaming decoder
(timebin.host.frames): layout, checks, resynchronisation, counters, and fuzzing with faulty
byte streams."""

import itertools
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from timebin.gateware.frames import (
    CRC32_RESIDUE,
    HEADER_BYTES,
    MAX_PAYLOAD,
    OVERHEAD_BYTES,
    SEQ_MODULUS,
    SYNC,
    FrameType,
    crc32,
    crc32_bitwise,
    encode_frame,
    header_check,
    header_check_bitwise,
)
from timebin.host.frames import Frame, FrameDecoder, FrameEncoder, LinkStats

SEED = 20240611


def raw_frame(type_, seq, payload, length=None, good_header=True, good_crc=True):
    """A frame built by hand from the documented layout, with any type or length, and
    either check made to fail on request."""
    length = len(payload) if length is None else length
    fields = struct.pack("<BHH", type_, seq, length)
    check = header_check_bitwise(fields) ^ (0 if good_header else 1)
    body = SYNC + fields + bytes([check]) + payload
    crc = zlib.crc32(body) ^ (0 if good_crc else 1)
    return body + struct.pack("<I", crc)


def decode(stream, cuts=()):
    """Frames and counters of ``stream`` fed in chunks split at ``cuts``, then flushed."""
    decoder = FrameDecoder()
    frames = []
    edges = [0, *sorted(cuts), len(stream)]
    for begin, end in itertools.pairwise(edges):
        frames += decoder.feed(stream[begin:end])
    frames += decoder.flush()
    assert decoder.pending_bytes == 0
    return frames, decoder.stats


def frames_of(stream):
    return decode(stream)[0]


def sample_frames(count, seq=0, size=40, seed=SEED):
    """``count`` consecutive frames of all types, with random payloads of ``size`` bytes:
    ``(Frame, bytes)``."""
    rng = np.random.default_rng(seed)
    types = list(FrameType)
    out = []
    for i in range(count):
        payload = rng.bytes(size)
        frame = Frame(types[i % len(types)], (seq + i) % SEQ_MODULUS, payload)
        out.append((frame, encode_frame(frame.type, frame.seq, frame.payload)))
    return out


# --- format ------------------------------------------------------------------------------

def test_layout_matches_the_documented_bytes():
    frame = encode_frame(FrameType.DETECTIONS, 0x1234, b"abc")
    assert frame == raw_frame(0x90, 0x1234, b"abc")
    assert frame[:4] == bytes.fromhex("a55ac33c")
    assert frame[4:9] == bytes.fromhex("90 3412 0300")
    assert len(frame) == 3 + OVERHEAD_BYTES and HEADER_BYTES == 10
    assert frame[-4:] == struct.pack("<I", zlib.crc32(frame[:-4]))


def test_crc_definitions_agree():
    """The table-free definitions, the ones in use and the catalogued check values."""
    assert crc32(b"123456789") == crc32_bitwise(b"123456789") == 0xCBF43926
    assert header_check(b"123456789") == header_check_bitwise(b"123456789") == 0xA1
    rng = np.random.default_rng(SEED)
    for size in range(0, 64):
        data = rng.bytes(size)
        assert crc32_bitwise(data) == crc32(data) == zlib.crc32(data)
        assert header_check_bitwise(data) == header_check(data)


def test_crc32_residue_of_good_frames():
    for _, data in sample_frames(20):
        assert crc32(data) == CRC32_RESIDUE


def test_header_check_detects_every_error_of_up_to_3_bits():
    for _, data in sample_frames(4):
        word = int.from_bytes(data[4:HEADER_BYTES], "little")
        for flips in itertools.chain.from_iterable(
                itertools.combinations(range(48), k) for k in (1, 2, 3)):
            bad = (word ^ sum(1 << bit for bit in flips)).to_bytes(6, "little")
            assert header_check(bad[:5]) != bad[5], flips


def test_sync_word_cannot_overlap_itself():
    assert not any(SYNC[:k] == SYNC[-k:] for k in range(1, len(SYNC)))


@pytest.mark.parametrize("type_", list(FrameType))
def test_round_trip_of_every_type(type_):
    payloads = [b"", b"\x00", bytes(range(256)), bytes(MAX_PAYLOAD)]
    seqs = [65534, 65535, 0, 1]
    stream = b"".join(encode_frame(type_, s, p) for s, p in zip(seqs, payloads, strict=True))
    frames, stats = decode(stream)
    assert frames == [Frame(type_, s, p) for s, p in zip(seqs, payloads, strict=True)]
    assert all(type(f.type) is FrameType for f in frames)
    assert stats == LinkStats(frames=4, frame_bytes=len(stream), bytes_in=len(stream))


def test_directions_of_types():
    assert FrameType.DETECTIONS.from_board and not FrameType.REG_WRITE_REQ.from_board
    assert {t & 0x7F for t in FrameType if t.from_board} >= \
        {t for t in FrameType if not t.from_board}


def test_encode_refuses_bad_values():
    with pytest.raises(ValueError, match=r"not 0x55"):
        encode_frame(0x55, 0, b"")
    with pytest.raises(TypeError, match=r"not 'x'"):
        encode_frame("x", 0, b"")
    with pytest.raises(TypeError, match=r"not True"):
        encode_frame(True, 0, b"")
    for seq in (-1, SEQ_MODULUS):
        with pytest.raises(ValueError, match=rf"not {seq}$"):
            encode_frame(FrameType.ALARM, seq, b"")
    with pytest.raises(TypeError, match=r"not 1.0"):
        encode_frame(FrameType.ALARM, 1.0, b"")
    with pytest.raises(TypeError, match=r"not 'text'"):
        encode_frame(FrameType.ALARM, 0, "text")
    with pytest.raises(ValueError, match=rf"{MAX_PAYLOAD + 1} bytes.*MAX_PAYLOAD"):
        encode_frame(FrameType.DETECTIONS, 0, bytes(MAX_PAYLOAD + 1))
    assert encode_frame(0x90, 0, bytearray(3)) == encode_frame(FrameType.DETECTIONS, 0, b"\0" * 3)


def test_encoder_numbers_frames_and_wraps():
    encoder = FrameEncoder(seq=65534)
    stream = b"".join(encoder.encode(FrameType.REG_READ_REQ, bytes([i])) for i in range(3))
    with pytest.raises(ValueError, match="4097"):
        encoder.encode(FrameType.REG_READ_REQ, bytes(MAX_PAYLOAD + 1))
    stream += encoder.encode(FrameType.REG_WRITE_REQ)
    assert [f.seq for f in frames_of(stream)] == [65534, 65535, 0, 1]
    assert decode(stream)[1].sequence_gaps == 0
    for seq in (-1, 65536, "0"):
        with pytest.raises(ValueError, match=f"not {seq!r}"):
            FrameEncoder(seq)


def test_feed_refuses_text():
    with pytest.raises(TypeError, match="not 'abc'"):
        FrameDecoder().feed("abc")


def test_host_module_does_not_import_amaranth():
    """DESIGN.md section 5: the frame decoder runs without Amaranth loaded."""
    code = ("import sys, timebin.host.frames;"
            "assert not [m for m in sys.modules if m.startswith('amaranth')], 'amaranth'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- decoder: garbage, chunking ----------------------------------------------------------

def test_garbage_before_between_and_after():
    sample = sample_frames(3)
    garbage = [b"\xa5\x5a\xc3", b"noise" + SYNC + b"\x00" * 7, SYNC[:3] + b"\xff" * 20, SYNC]
    stream = garbage[0] + sample[0][1] + garbage[1] + sample[1][1] + sample[2][1]
    stream += garbage[2] + garbage[3]
    frames, stats = decode(stream)
    assert frames == [frame for frame, _ in sample]
    assert stats.garbage_bytes == sum(map(len, garbage))
    assert stats.header_errors == 1     # the sync word followed by zeros
    assert stats.bytes_in == stats.frame_bytes + stats.garbage_bytes


def test_result_does_not_depend_on_chunking():
    sample = sample_frames(4, size=30)
    stream = b"xx" + sample[0][1] + SYNC + b"\x01" + sample[1][1][:15] + sample[2][1]
    stream += sample[3][1] + SYNC[:2]
    whole = decode(stream)
    assert len(whole[0]) == 3 and whole[1].truncated == 1 and whole[1].header_errors == 1
    for cut in range(len(stream) + 1):
        assert decode(stream, [cut]) == whole, cut
    assert decode(stream, range(len(stream))) == whole


def test_incomplete_frame_waits_until_flushed():
    cut = encode_frame(FrameType.DETECTIONS, 0, bytes(200))[:100]
    tail = encode_frame(FrameType.DETECTIONS, 1, b"")
    decoder = FrameDecoder()
    assert decoder.feed(cut + tail) == []      # the cut frame's length still claims the tail
    assert decoder.pending_bytes == len(cut) + len(tail)
    assert decoder.flush() == [Frame(FrameType.DETECTIONS, 1, b"")]
    assert decoder.stats.truncated == 1 and decoder.stats.garbage_bytes == len(cut)


# --- decoder: corruption -----------------------------------------------------------------

def test_corrupted_payload_byte_is_a_crc_error():
    sample = sample_frames(3, size=0)
    bad = bytearray(encode_frame(FrameType.DETECTIONS, 1, bytes(range(50))))
    bad[30] ^= 0x10
    frames, stats = decode(sample[0][1] + bytes(bad) + sample[2][1])
    assert frames == [sample[0][0], sample[2][0]]
    assert stats.crc_errors == 1 and stats.truncated == stats.header_errors == 0
    assert stats.garbage_bytes == len(bad)
    assert (stats.sequence_gaps, stats.lost_frames) == (1, 1)


@pytest.mark.parametrize("bit", range(16))
def test_corrupted_length_fails_the_header_and_resyncs(bit):
    sample = sample_frames(3, size=100)
    bad = bytearray(sample[1][1])
    bad[7 + bit // 8] ^= 1 << (bit % 8)
    frames, stats = decode(sample[0][1] + bytes(bad) + sample[2][1])
    assert frames == [sample[0][0], sample[2][0]]
    assert stats.header_errors == 1 and stats.crc_errors == stats.truncated == 0


@pytest.mark.parametrize("length", [0, 39, 41, 44, 50, 200, MAX_PAYLOAD])
def test_wrong_length_with_a_good_header_resyncs(length):
    """A length that passes the header check (a sender bug, or a 2**-8 coincidence) costs
    its frame, never the next one."""
    sample = sample_frames(3, size=300)
    bad = raw_frame(0x90, 1, bytes(40), length=length)
    frames, stats = decode(sample[0][1] + bad + sample[2][1])
    assert frames == [sample[0][0], sample[2][0]]
    # With the next frame's whole header inside the claimed span, the bad frame counts as
    # cut short (at MAX_PAYLOAD, once flush gives up waiting for it).
    if HEADER_BYTES + length + 4 >= len(bad) + HEADER_BYTES:
        assert (stats.truncated, stats.crc_errors) == (1, 0)
    else:
        assert (stats.truncated, stats.crc_errors) == (0, 1)


def test_cut_frame_followed_by_a_good_one_is_truncated():
    sample = sample_frames(3, size=300, seed=1)
    assert len(sample[1][1]) > 100
    frames, stats = decode(sample[0][1] + sample[1][1][:60] + sample[2][1])
    assert frames == [sample[0][0], sample[2][0]]
    assert (stats.truncated, stats.crc_errors, stats.header_errors) == (1, 0, 0)


def test_lost_bytes_are_counted_and_later_frames_delivered():
    sample = sample_frames(6, size=60)
    stream = b"".join(data for _, data in sample)
    ends = list(itertools.accumulate(len(data) for _, data in sample))
    begin, end = ends[0] + 20, ends[2] + 5      # from inside frame 1 to inside frame 3
    frames, stats = decode(stream[:begin] + stream[end:])
    assert frames == [sample[0][0], sample[4][0], sample[5][0]]
    assert (stats.sequence_gaps, stats.lost_frames) == (1, 3)
    assert stats.truncated + stats.crc_errors + stats.header_errors >= 1
    assert stats.bytes_in == stats.frame_bytes + stats.garbage_bytes


def test_oversize_length_is_refused():
    sample = sample_frames(2, size=0)
    big = raw_frame(0x90, 9, bytes(MAX_PAYLOAD + 1))
    frames, stats = decode(sample[0][1] + big + sample[1][1])
    assert frames == [sample[0][0], sample[1][0]]
    assert stats.oversize == 1 and stats.crc_errors == stats.header_errors == 0
    decoder = FrameDecoder()    # refused at once, without waiting for the claimed bytes
    assert decoder.feed(big[:HEADER_BYTES] + sample[1][1]) == [sample[1][0]]


def test_unknown_type_is_counted_and_dropped():
    sample = sample_frames(3, size=10)
    foreign = raw_frame(0x42, 1, encode_frame(FrameType.ALARM, 7, b"inner"))
    frames, stats = decode(sample[0][1] + foreign + sample[2][1])
    assert frames == [sample[0][0], sample[2][0]]       # not the frame inside it either
    assert stats.unknown_type == 1 and stats.sequence_gaps == 0
    assert stats.garbage_bytes == len(foreign)


def test_sync_inside_a_payload():
    inner = encode_frame(FrameType.ALARM, 500, b"inner")
    outer = encode_frame(FrameType.DETECTIONS, 1, SYNC * 3 + inner + SYNC)
    tail = encode_frame(FrameType.DETECTIONS, 501, b"")
    assert frames_of(outer + tail) == [Frame(FrameType.DETECTIONS, 1, SYNC * 3 + inner + SYNC),
                                       Frame(FrameType.DETECTIONS, 501, b"")]
    # Once the outer frame fails, the hunt resumes inside it and finds what it carries.
    broken = bytearray(outer)
    broken[HEADER_BYTES] ^= 1
    frames, stats = decode(bytes(broken) + tail)
    assert frames == [Frame(FrameType.ALARM, 500, b"inner"),
                      Frame(FrameType.DETECTIONS, 501, b"")]
    assert stats.truncated == 1 and stats.header_errors == 3     # the other syncs inside
    assert stats.sequence_gaps == stats.sequence_rewinds == 0


def test_sequence_gaps_wrap_and_rewinds():
    def seq_stats(seqs):
        stream = b"".join(encode_frame(FrameType.DETECTIONS, s, b"") for s in seqs)
        stats = decode(stream)[1]
        return stats.sequence_gaps, stats.lost_frames, stats.sequence_rewinds

    assert seq_stats([65533, 65534, 65535, 0, 1]) == (0, 0, 0)
    assert seq_stats([65534, 65535, 2, 3]) == (1, 2, 0)
    assert seq_stats([65530, 1]) == (1, 6, 0)
    assert seq_stats([10, 12, 15, 16]) == (2, 3, 0)
    assert seq_stats([5, 6, 5, 6, 7]) == (0, 0, 1)      # a repeated frame is not 65535 lost
    assert seq_stats([3, 0]) == (0, 0, 1)               # a sender restart
    assert seq_stats([0, 32768]) == (1, 32767, 0)


# --- fuzzing -----------------------------------------------------------------------------

def faulty_stream(pieces, ops):
    """Apply ``ops`` to the concatenation of ``pieces``.

    ``pieces`` are ``(bytes, is_frame)``; ``ops`` are ``(kind, a, b, c)`` with non-negative
    integers ``a, b, c`` reduced into range here: ``flip`` bit ``b % 8`` of byte ``a``,
    ``delete`` ``b % 40 + 1`` bytes at ``a``, ``cut`` the frame holding byte ``a`` there,
    ``insert`` ``c`` garbage bytes at ``a``, ``dup`` licate ``b % 300 + 1`` bytes from ``c``
    at ``a``, ``end`` the stream at ``a``.

    Returns the stream and the frames (bytes) of ``pieces`` that no op touched, in order.
    """
    stream = bytearray()
    spans = []      # [begin, end, intact] of every frame
    for data, is_frame in pieces:
        if is_frame:
            spans.append([len(stream), len(stream) + len(data), True])
        stream += data

    def damage(begin, end, shift_from, shift):
        for span in spans:
            if span[0] < end and begin < span[1]:
                span[2] = False
            if span[0] >= shift_from:
                span[0] += shift
                span[1] += shift

    for kind, a, b, c in ops:
        size = len(stream)
        if size == 0:
            break
        at = a % size
        if kind == "flip":
            stream[at] ^= 1 << (b % 8)
            damage(at, at + 1, size, 0)
        elif kind in ("delete", "cut"):
            end = min(size, at + b % 40 + 1)
            if kind == "cut":
                end = next((s[1] for s in spans if s[0] <= at < s[1]), end)
            del stream[at:end]
            damage(at, end, end, at - end)
        elif kind == "end":
            del stream[at:]
            damage(at, size, size, 0)
        else:
            if kind == "insert":
                data = bytes((c + 77 * i) % 256 for i in range(b % 24)) or SYNC
            else:
                source = c % size
                data = bytes(stream[source:source + b % 300 + 1])
            stream[at:at] = data
            for span in spans:
                if span[0] < at < span[1]:      # an insertion at a frame's edge spares it
                    span[2] = False
                if span[0] >= at:
                    span[0] += len(data)
                    span[1] += len(data)
    intact = [bytes(stream[begin:end]) for begin, end, ok in spans if ok]
    return bytes(stream), intact


def check_stream(stream, encoded, intact, cuts=()):
    """The fuzz properties of one faulty stream; returns the decoded frames and counters."""
    frames, stats = decode(stream, cuts)
    delivered = [encode_frame(f.type, f.seq, f.payload) for f in frames]
    # Never a frame that was not sent.
    assert all(data in encoded for data in delivered), stream.hex()
    # Every frame that no fault touched, in order.
    remaining = iter(delivered)
    assert all(any(data == d for d in remaining) for data in intact), stream.hex()
    assert stats.frames == len(frames)
    assert stats.frame_bytes == sum(map(len, delivered))
    assert stats.bytes_in == len(stream) == stats.frame_bytes + stats.garbage_bytes
    gaps = lost = rewinds = 0
    for previous, frame in itertools.pairwise(frames):
        ahead = (frame.seq - previous.seq - 1) % SEQ_MODULUS
        if 0 < ahead < SEQ_MODULUS // 2:
            gaps, lost = gaps + 1, lost + ahead
        elif ahead:
            rewinds += 1
    assert (stats.sequence_gaps, stats.lost_frames, stats.sequence_rewinds) == \
        (gaps, lost, rewinds), stream.hex()
    assert stats.unknown_type == 0
    return frames, stats


FAULT_KINDS = ("flip", "delete", "cut", "insert", "dup", "end")


@st.composite
def faulty_streams(draw):
    """Random frames, garbage between them (some of it a good header claiming any length)
    and faults over them."""
    seq = draw(st.integers(0, SEQ_MODULUS - 1))
    pieces, encoded = [], set()
    for _ in range(draw(st.integers(0, 5))):
        garbage = draw(st.binary(max_size=12) | st.binary(max_size=12).map(SYNC.__add__)
                       | st.integers(0, 5000).map(lambda n: raw_frame(0x90, 0, b"", n)[:10]))
        pieces.append((garbage, False))
        seq = (seq + draw(st.sampled_from([1, 1, 1, 2, 40000]))) % SEQ_MODULUS
        data = encode_frame(draw(st.sampled_from(list(FrameType))), seq,
                            draw(st.binary(max_size=80) | st.just(SYNC * 2)))
        pieces.append((data, True))
        encoded.add(data)
    pieces.append((draw(st.binary(max_size=12)), False))
    index = st.integers(0, 1 << 16)
    ops = draw(st.lists(st.tuples(st.sampled_from(FAULT_KINDS), index, index, index),
                        max_size=4))
    stream, intact = faulty_stream(pieces, ops)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=4))
    return stream, encoded, intact, cuts, not ops and not any(g for g, f in pieces if not f)


@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(faulty_streams())
def test_fuzz_hypothesis(case):
    stream, encoded, intact, cuts, clean = case
    frames, stats = check_stream(stream, encoded, intact, cuts)
    assert decode(stream) == (frames, stats)           # chunking changes nothing
    if clean:
        assert len(frames) == len(encoded) and stats.garbage_bytes == 0
        assert stats == LinkStats(frames=len(frames), frame_bytes=len(stream),
                                  bytes_in=len(stream), sequence_gaps=stats.sequence_gaps,
                                  lost_frames=stats.lost_frames,
                                  sequence_rewinds=stats.sequence_rewinds)


FUZZ_STREAMS = 100_000


def test_fuzz_seeded_streams():
    """10^5 faulty streams from one seeded generator (the fast path next to hypothesis)."""
    rng = np.random.default_rng(SEED)
    types = list(FrameType)
    pool = []
    for i in range(512):
        size = int(rng.choice([0, 1, 8, 30, 120, 700]))
        payload = rng.bytes(size) if i % 16 else SYNC + rng.bytes(size)
        pool.append(encode_frame(types[i % len(types)], (7 * i) % SEQ_MODULUS, payload))
    noise = rng.bytes(1 << 16) + SYNC + bytes(8) + SYNC
    draws = rng.integers(0, 1 << 30, size=(FUZZ_STREAMS, 24)).tolist()
    totals = LinkStats()
    for draw in draws:
        count = draw[0] % 5
        pieces, encoded = [], set()
        for i in range(count):
            frame = pool[(draw[1] + i * (1 + draw[2] % 3)) % len(pool)]
            encoded.add(frame)
            garbage_size = draw[3 + i] % 20 if draw[3 + i] % 3 == 0 else 0
            start = draw[8 + i] % (len(noise) - garbage_size)
            pieces += [(noise[start:start + garbage_size], False), (frame, True)]
        ops = [(FAULT_KINDS[draw[13 + 3 * j] % 6], draw[14 + 3 * j], draw[15 + 3 * j],
                draw[13 + 3 * j] // 8) for j in range(draw[23] % 4)]
        stream, intact = faulty_stream(pieces, ops)
        cuts = [draw[2] % (len(stream) + 1)] if draw[2] % 2 else []
        stats = check_stream(stream, encoded, intact, cuts)[1]
        for name, value in stats.as_dict().items():
            setattr(totals, name, getattr(totals, name) + value)
    # Every kind of fault was met, in quantity.
    for name in ("header_errors", "crc_errors", "truncated", "sequence_gaps",
                 "sequence_rewinds"):
        assert getattr(totals, name) > 1000, totals
    assert totals.frames > 100_000, totals
