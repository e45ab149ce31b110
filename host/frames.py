"""Frames of the board-host link: a streaming decoder that survives a faulty byte stream,
and an encoder that numbers what the host sends.

The frame format is defined once in :mod:`timebin.gateware.frames` (plain Python, no
Amaranth). A byte stream may lose, flip, repeat or insert bytes anywhere (a UART overrun,
a reset mid-frame, a USB packet lost); :class:`FrameDecoder` delivers exactly the frames
that pass both checks and counts everything else in :class:`LinkStats`.
"""

import dataclasses
import struct

from timebin.gateware.frames import (
    HEADER_BYTES,
    MAX_PAYLOAD,
    SEQ_MODULUS,
    SYNC,
    TRAILER_BYTES,
    FrameType,
    crc32,
    encode_frame,
    header_check,
)

__all__ = ["Frame", "LinkStats", "FrameDecoder", "FrameEncoder"]

_KNOWN_TYPES = {int(member): member for member in FrameType}
_HEADER = struct.Struct("<BHHB")
_TRAILER = struct.Struct("<I")
_SYNC_BYTES = len(SYNC)
# Consumed buffer bytes are dropped once this many have piled up (or half the buffer).
_COMPACT_BYTES = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One frame that passed its checks.

    Members
    -------
    type : FrameType
    seq : int
        Sequence number, ``0 .. 2**16 - 1``.
    payload : bytes
    """
    type: FrameType
    seq: int
    payload: bytes


@dataclasses.dataclass(slots=True)
class LinkStats:
    """Counters of one direction of the link, as seen by a :class:`FrameDecoder`.

    Once the decoder is flushed, every byte fed is either in a delivered frame or
    skipped: ``bytes_in == frame_bytes + garbage_bytes``.

    Members
    -------
    frames : int
        Frames delivered.
    frame_bytes : int
        Bytes of the delivered frames, headers and trailers included.
    bytes_in : int
        Bytes fed.
    garbage_bytes : int
        Bytes skipped: while hunting for a sync word, the first byte of every sync word that
        failed a check, and the whole of every frame of an unknown type.
    header_errors : int
        Sync words whose header check failed.
    oversize : int
        Headers that passed their check but claimed more than ``MAX_PAYLOAD`` bytes.
    crc_errors : int
        Frames whose header passed but whose CRC-32 failed, with no good header in their span.
    truncated : int
        Frames whose header passed but whose CRC-32 failed with another good header inside
        their span (the frame was cut short and the link restarted), and
        incomplete frames given up by :meth:`FrameDecoder.flush`.
    unknown_type : int
        Frames that passed both checks but whose type is not a :class:`FrameType` (from a
        newer sender, say); dropped, as nothing here could interpret them.
    sequence_gaps : int
        Times a frame's sequence number was ahead of the expected one.
    lost_frames : int
        Frames missing in those gaps: the sum of ``(seq - expected) mod 2**16``.
    sequence_rewinds : int
        Times a frame's sequence number was behind the expected one by up to ``2**15``:
        a repeated frame or a sender restart rather than ``2**16 - 1`` lost frames; such a
        frame is delivered, and the sequence continues from it.
    """
    frames: int = 0
    frame_bytes: int = 0
    bytes_in: int = 0
    garbage_bytes: int = 0
    header_errors: int = 0
    oversize: int = 0
    crc_errors: int = 0
    truncated: int = 0
    unknown_type: int = 0
    sequence_gaps: int = 0
    lost_frames: int = 0
    sequence_rewinds: int = 0

    def as_dict(self):
        """The counters as a ``{name: int}`` dictionary (for ``--json`` output)."""
        return dataclasses.asdict(self)


class FrameDecoder:
    """Streaming decoder of one direction of the link.

    Feed it the bytes as they arrive, in chunks of any size; it returns the frames that
    became complete. The result does not depend on how the stream is split into chunks.

    Rules:

    - Hunt for ``SYNC``; skipped bytes count as ``garbage_bytes``.
    - At a sync word, check the header (its CRC-8, then ``length <= MAX_PAYLOAD``), then
      the CRC-32 once the whole frame is in. A frame that passes both is delivered if its
      type is known, else counted as ``unknown_type`` and skipped as a whole; either way it
      advances the sequence check.
    - On any failed check, resume the hunt at the byte after the failed sync word, never
      after the length it claimed: the claim may be wrong, and the start of a good frame may
      lie inside it.
    - A frame whose header passed waits for its remaining bytes, holding back anything
      behind it; :meth:`flush` (end of stream, or a link idle for longer than a frame takes)
      gives it up and decodes what follows it.
    - Sequence numbers are checked across all types, modulo ``2**16``, from the first frame
      delivered on.

    A frame is delivered only if both of its checks pass. A corrupted frame still passes
    with probability about 2**-32 for a random error (the CRC-32; 2**-40 if the error also
    hits the header), and never if its error is one the CRC-32 always detects: up to 3
    flipped bits in a frame of up to ``MAX_PAYLOAD`` (Hamming distance 4 up to 91607 bits,
    Koopman 2002), or any burst of up to 32 bits.

    Members
    -------
    stats : LinkStats
        The counters, updated as bytes are fed.
    """

    def __init__(self):
        self.stats = LinkStats()
        self._buffer = bytearray()
        self._start = 0             # first byte of the buffer not yet consumed
        self._expected_seq = None   # sequence number of the next frame, once one is seen

    @property
    def pending_bytes(self):
        """Bytes held back: a partial sync word or an incomplete frame."""
        return len(self._buffer) - self._start

    def feed(self, data):
        """Decode the bytes ``data`` that followed those fed before.

        Parameters
        ----------
        data : bytes-like

        Returns
        -------
        list of Frame
            The frames completed by ``data``, in stream order.
        """
        try:
            data = memoryview(data).cast("B")
        except TypeError:
            raise TypeError(f"Link data must be bytes-like, not {data!r}") from None
        self.stats.bytes_in += len(data)
        self._buffer += data
        frames = self._decode(final=False)
        self._compact()
        return frames

    def flush(self):
        """Give up waiting: decode what is held back as if the stream ended here.

        An incomplete frame is counted as ``truncated`` and the hunt resumes at the byte
        after its sync word; what is left at the end counts as ``garbage_bytes``. Feeding
        may continue afterwards.

        Returns
        -------
        list of Frame
            The frames found behind the incomplete ones.
        """
        frames = self._decode(final=True)
        self._compact()
        return frames

    def _compact(self):
        start = self._start
        if start >= _COMPACT_BYTES or 2 * start >= len(self._buffer):
            del self._buffer[:start]
            self._start = 0

    def _header_at(self, buffer, at):
        """``(type, seq, length)`` of the header at ``at`` if it passes its check, else None."""
        fields = buffer[at + _SYNC_BYTES:at + HEADER_BYTES - 1]
        if header_check(fields) != buffer[at + HEADER_BYTES - 1]:
            return None
        type_, seq, length, _ = _HEADER.unpack_from(buffer, at + _SYNC_BYTES)
        return type_, seq, length

    def _good_header_within(self, buffer, begin, end):
        """Whether a whole good header lies in ``begin .. end - 1`` (which the buffer holds,
        so that the answer does not depend on how the stream was split into chunks)."""
        stop = end - HEADER_BYTES + _SYNC_BYTES
        at = buffer.find(SYNC, begin, stop)
        while at >= 0:
            header = self._header_at(buffer, at)
            if header is not None and header[2] <= MAX_PAYLOAD:
                return True
            at = buffer.find(SYNC, at + 1, stop)
        return False

    def _decode(self, final):
        stats = self.stats
        buffer = self._buffer
        size = len(buffer)
        at = self._start
        frames = []
        with memoryview(buffer) as view:
            while True:
                found = buffer.find(SYNC, at)
                if found < 0:
                    # Keep a tail that may be the start of a sync word, unless at the end.
                    keep = 0 if final else min(size - at, _SYNC_BYTES - 1)
                    stats.garbage_bytes += size - keep - at
                    at = size - keep
                    break
                stats.garbage_bytes += found - at
                at = found
                if size - at < HEADER_BYTES:
                    if final:
                        stats.garbage_bytes += size - at
                        at = size
                    break
                header = self._header_at(buffer, at)
                if header is None:
                    stats.header_errors += 1
                    stats.garbage_bytes += 1
                    at += 1
                    continue
                type_, seq, length = header
                if length > MAX_PAYLOAD:
                    stats.oversize += 1
                    stats.garbage_bytes += 1
                    at += 1
                    continue
                end = at + HEADER_BYTES + length + TRAILER_BYTES
                if end > size:
                    if not final:
                        break
                    stats.truncated += 1
                    stats.garbage_bytes += 1
                    at += 1
                    continue
                body_end = end - TRAILER_BYTES
                if crc32(view[at:body_end]) != _TRAILER.unpack_from(buffer, body_end)[0]:
                    if self._good_header_within(buffer, at + 1, end):
                        stats.truncated += 1
                    else:
                        stats.crc_errors += 1
                    stats.garbage_bytes += 1
                    at += 1
                    continue
                self._check_seq(seq)
                known = _KNOWN_TYPES.get(type_)
                if known is None:
                    stats.unknown_type += 1
                    stats.garbage_bytes += end - at
                else:
                    frames.append(Frame(known, seq, bytes(view[at + HEADER_BYTES:body_end])))
                    stats.frames += 1
                    stats.frame_bytes += end - at
                at = end
        self._start = at
        return frames

    def _check_seq(self, seq):
        expected = self._expected_seq
        if expected is not None and seq != expected:
            ahead = (seq - expected) % SEQ_MODULUS
            if ahead < SEQ_MODULUS // 2:
                self.stats.sequence_gaps += 1
                self.stats.lost_frames += ahead
            else:
                self.stats.sequence_rewinds += 1
        self._expected_seq = (seq + 1) % SEQ_MODULUS


class FrameEncoder:
    """Encoder of one direction of the link: numbers the frames it encodes.

    Parameters
    ----------
    seq : int
        Sequence number of the first frame.

    Members
    -------
    seq : int
        Sequence number of the next frame; wraps from ``2**16 - 1`` to 0.
    """

    def __init__(self, seq=0):
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < SEQ_MODULUS:
            raise ValueError(f"Sequence number must be in 0 .. {SEQ_MODULUS - 1}, not {seq!r}")
        self.seq = seq

    def encode(self, type, payload=b""):
        """The next frame, of ``type`` carrying ``payload``, as bytes (see
        :func:`timebin.gateware.frames.encode_frame`, whose errors it raises). The sequence
        number advances only when a frame is returned."""
        frame = encode_frame(type, self.seq, payload)
        self.seq = (self.seq + 1) % SEQ_MODULUS
        return frame

