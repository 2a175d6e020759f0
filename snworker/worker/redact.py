"""Redaction: no secret the worker ever held leaves it, in the forms a response could echo it in.

Every token, code and verifier is registered here the moment the worker has it, and never
removed: a response in flight when a token is replaced or wiped is still redacted for it. Each
secret is searched for as it is. A token the instance may still accept (an access token until
it expires) is also searched for as base64 (standard and URL-safe alphabets, at all three
alignments, which covers base64 of its `Authorization: Bearer <token>` header value too), and
as any run of FRAGMENT or more of its characters, so a reflection cut short by a character or
two is caught. JSON bodies with `\\u` escapes are searched after unescaping, since the parent
would unescape them on parsing.

This is best effort against an endpoint built to leak: such an endpoint can always encode a
token in a way no list of encodings foresees.
"""

from __future__ import annotations

import base64
import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_ahocorasick: Any
try:  # a native multi-pattern search: one pass finds whether a body holds anything at all
    import ahocorasick_rs as _ahocorasick
except ImportError:  # pragma: no cover - without it, one pass of bytes.find per pattern
    _ahocorasick = None

REDACTED = "[redacted by snworker]"
_REDACTED_BYTES = REDACTED.encode()
FRAGMENT = 24
# Blocks of _BLOCK characters taken every _STRIDE characters of a token: every window of
# FRAGMENT characters of the token holds one whole block, so finding the blocks finds every
# fragment. 12 and 13 make the fewest, longest blocks for FRAGMENT = 24; each costs one pass.
_BLOCK = 12
_STRIDE = FRAGMENT + 1 - _BLOCK


@dataclass(frozen=True, slots=True)
class _Token:
    """A secret and the byte strings that give it away."""

    raw: bytes = field(repr=False)
    encoded: tuple[bytes, ...] = field(repr=False)
    blocks: tuple[tuple[int, bytes], ...] = field(repr=False)

    @classmethod
    def of(cls, secret: str) -> _Token:
        raw = secret.encode()
        # A block at p lies inside the windows that start from p - _BLOCK to p: blocks at
        # _BLOCK, _BLOCK + _STRIDE, ... (the last one moved back to fit) cover every window.
        windows = len(raw) - FRAGMENT + 1
        starts = sorted({min(_BLOCK + _STRIDE * j, len(raw) - _BLOCK)
                         for j in range(-(-windows // _STRIDE))})
        blocks = tuple((p, raw[p:p + _BLOCK]) for p in starts)
        return cls(raw, tuple(_base64_forms(raw)), blocks)


def _base64_forms(raw: bytes) -> list[bytes]:
    """`raw` as it shows inside any base64 text, at each of the three alignments."""
    forms: list[bytes] = []
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        # Drop the 4-character groups that also depend on the bytes around the secret.
        start = 4 if pad else 0
        end = len(encoded) - (4 if (pad + len(raw)) % 3 else 0)
        core = encoded[start:end]
        if len(core) >= 16:
            for form in (core, core.replace(b"+", b"-").replace(b"/", b"_")):
                if form not in forms:
                    forms.append(form)
    return forms


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What the hot path reads: replaced whole on every change, so reads take no lock."""

    raw: tuple[bytes, ...] = field(default=(), repr=False)
    live: tuple[tuple[_Token, float], ...] = field(default=(), repr=False)
    # The longest byte string any secret can show as here, JSON-escaped (see `overlap`).
    longest: int = 0
    # One detector per set of live tokens (which tokens still count as live changes with time).
    detectors: dict[tuple[bool, ...], Any] = field(default_factory=dict, repr=False,
                                                  compare=False)

    def detector(self, live: tuple[bool, ...]) -> Any:
        """A multi-pattern matcher over every pattern searched for, or None without one."""
        found = self.detectors.get(live)
        if found is None and _ahocorasick is not None:
            patterns = list(self.raw)
            for (token, _), is_live in zip(self.live, live, strict=True):
                if is_live:
                    patterns += [*token.encoded, *(block for _, block in token.blocks)]
                else:
                    patterns.append(token.raw)
            found = self.detectors[live] = _ahocorasick.BytesAhoCorasick(
                patterns, matchkind=_ahocorasick.MatchKind.LeftmostLongest)
        return found


# Escaped in JSON, a character takes at most six bytes (\uXXXX); a stream keeps at least this
# much of its tail back, so a secret added while it runs is still found across a border.
_MIN_OVERLAP = 4096


class Redactor:
    """The secrets this worker has held, and the search that keeps them in."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._live_until: dict[str, float] = {}
        self._snapshot = _Snapshot()

    def add(self, secret: str, live_until: float | None = None) -> None:
        """Keep `secret` in for good, and its encodings and fragments until `live_until`.

        `live_until` is a time on the monotonic clock, for a token the instance accepts in
        requests until then; None for a secret no request carries.
        """
        if not secret:
            return
        with self._lock:
            if secret not in self._tokens:
                self._tokens[secret] = _Token.of(secret)
            if live_until is not None:
                self._live_until[secret] = max(live_until,
                                               self._live_until.get(secret, live_until))
            longest = max((len(f) for t in self._tokens.values() for f in (t.raw, *t.encoded)),
                          default=0)
            self._snapshot = _Snapshot(
                tuple(t.raw for s, t in self._tokens.items() if s not in self._live_until),
                tuple((self._tokens[s], until) for s, until in self._live_until.items()),
                longest,
            )

    def __len__(self) -> int:
        return len(self._tokens)

    # --- redacting ------------------------------------------------------------------------

    def body(self, data: bytes) -> bytes:
        """`data` with every secret replaced; JSON `\\u` escapes are looked through."""
        if not data:
            return data
        spans = _search(self, data, self._snapshot)
        return _replace(data, spans) if spans else data

    def stream(self) -> StreamRedactor:
        """A redactor for one body that comes in pieces: a secret split over two is found."""
        return StreamRedactor(self)

    def overlap(self) -> int:
        """How many bytes of a stream's tail to hold back until the next piece comes."""
        return max(_MIN_OVERLAP, 6 * self._snapshot.longest)

    def text(self, text: str) -> str:
        """`text` with every secret replaced."""
        data = text.encode("utf-8", "surrogatepass")
        clean = self._bytes(data, self._snapshot)
        return text if clean is data else clean.decode("utf-8", "replace")

    def header(self, value: str) -> str:
        """A header value (latin-1, as HTTP carries it) with every secret replaced."""
        data = value.encode("latin-1", "replace")
        clean = self._bytes(data, self._snapshot)
        return value if clean is data else clean.decode("latin-1")

    def pairs(self, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """Header pairs with every secret replaced in names and values."""
        if not pairs:
            return pairs
        # One scan of them all, joined by a byte no secret and no encoding of one contains;
        # only when it finds something is each name and value redacted on its own.
        joined = "\n".join(f"{n}\n{v}" for n, v in pairs).encode("latin-1", "replace")
        if self._bytes(joined, self._snapshot) is joined:
            return pairs
        return tuple((self.header(n), self.header(v)) for n, v in pairs)

    def _bytes(self, data: bytes, snapshot: _Snapshot) -> bytes:
        spans = self._spans(data, snapshot)
        return _replace(data, spans) if spans else data

    def _spans(self, data: bytes, snapshot: _Snapshot) -> list[tuple[int, int]]:
        """Where `data` gives a secret away, as (start, end) spans, possibly overlapping."""
        spans: list[tuple[int, int]] = []
        now = self._clock() if snapshot.live else 0.0
        live = tuple(now < until for _, until in snapshot.live)
        detector = snapshot.detector(live)
        # The detector reports the leftmost occurrence of any pattern when there is one, so
        # a body it finds nothing in holds none: the exact search below would find nothing.
        # Only a body that holds something pays for one pass per pattern.
        if detector is not None and not detector.find_matches_as_indexes(data):
            return spans
        for raw in snapshot.raw:
            _occurrences(data, raw, spans)
        for (token, _), is_live in zip(snapshot.live, live, strict=True):
            if is_live:  # the fragments include the whole token
                for form in token.encoded:
                    _occurrences(data, form, spans)
                _fragments(data, token, spans)
            else:
                _occurrences(data, token.raw, spans)
        return spans


class StreamRedactor:
    """Redacts one body piece by piece: a secret split over two pieces is still found.

    A piece is passed on once the next has come. Each piece is searched alone, and the border
    between two in a window of `overlap()` bytes either side, which holds whole any match that
    crosses it (no match is longer). A piece in which neither search finds anything is passed
    on as it came, uncopied. Otherwise the pieces are joined and searched together, and what is
    passed on ends before any match that reaches into the tail held back, so every occurrence is
    seen whole once. What is held is never more than the last piece, `overlap()` and one match.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._carry = b""
        # The secrets under which the carry, searched alone, held nothing (None: not clean).
        # A secret added since (a new snapshot) has the carry searched again before it leaves.
        self._clean: _Snapshot | None = redactor._snapshot

    @property
    def held(self) -> int:
        """Bytes held back for now."""
        return len(self._carry)

    def feed(self, data: bytes, last: bool = False) -> bytes:
        """What of the body before `data` (and all of it, when `last`) can be passed on."""
        redactor = self._redactor
        snapshot = redactor._snapshot
        overlap = redactor.overlap()
        carry = self._carry
        if self._clean is snapshot and (last or len(data) >= overlap):
            found = _search(redactor, data, snapshot)
            if not (carry and data and _search(redactor, carry[-overlap:] + data[:overlap],
                                               snapshot)):
                if found:
                    if not last:  # held, to be searched again with what follows
                        self._carry, self._clean = data, None
                        return carry
                    data = _replace(data, found)
                if last:
                    self._carry = b""
                    return carry + data if carry and data else carry or data
                self._carry, self._clean = data, snapshot
                return carry
        buffer = carry + data if carry else data
        if not buffer:
            return b""
        cut = len(buffer) if last else len(buffer) - overlap
        if cut <= 0:
            self._carry, self._clean = buffer, None
            return b""
        spans = _search(redactor, buffer, snapshot)
        if spans and not last:
            spans.sort()
            moved = True
            while moved:  # a match across the cut is held back whole, from its start
                moved = False
                for start, end in spans:
                    if start < cut < end:
                        cut, moved = start, True
            spans = [span for span in spans if span[1] <= cut]
        self._carry = buffer[cut:]
        self._clean = None if _search(redactor, self._carry, snapshot) else snapshot
        out = buffer[:cut] if cut < len(buffer) else buffer
        return _replace(out, spans) if spans else out

    def finish(self) -> bytes:
        """What is held back, redacted: the body has ended."""
        return self.feed(b"", last=True)


def _search(redactor: Redactor, data: bytes, snapshot: _Snapshot) -> list[tuple[int, int]]:
    """Every span of `data` that gives a secret away, JSON escapes looked through."""
    if not data:
        return []
    spans = redactor._spans(data, snapshot)
    if b"\\" in data:
        spans += _escaped_spans(data, lambda view: redactor._spans(view, snapshot))
    return spans


# The JSON escapes that can hide a character of a secret: \uXXXX, and \/ (base64 has "/").
# Found by searching for the two bytes that start them, rare even in binary data; each escape
# is decoded on its own (a \\ before one is not looked at: that may only find more).
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _escapes(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, decoded bytes) of each escape in `data` that could hide a secret."""
    found: list[tuple[int, int, bytes]] = []
    for at in _escape_starts(data):
        if data[at + 1] == 0x2F:  # \/
            found.append((at, at + 2, b"/"))
            continue
        digits = data[at + 2:at + 6]
        if len(digits) == 4 and all(c in _HEX for c in digits):
            point = int(digits, 16)
            # A lone surrogate stands for no character a secret has: a byte none contains.
            char = b"\xff" if 0xD800 <= point <= 0xDFFF else chr(point).encode()
            found.append((at, at + 6, char))
    return found


def _escape_starts(data: bytes) -> list[int]:
    """Where \\u and \\/ start in `data`, in order."""
    if _ESCAPE_STARTS is not None:
        return [start for _, start, _ in _ESCAPE_STARTS.find_matches_as_indexes(data)]
    starts: list[int] = []
    for needle in (b"\\u", b"\\/"):
        at = data.find(needle)
        while at >= 0:
            starts.append(at)
            at = data.find(needle, at + 2)
    return sorted(starts)


# One native pass finds both (two bytes.find passes cost 5 ns a byte on binary data).
_ESCAPE_STARTS: Any = None if _ahocorasick is None else _ahocorasick.BytesAhoCorasick(
    [b"\\u", b"\\/"])


def _escaped_spans(data: bytes, find: Callable[[bytes], list[tuple[int, int]]],
                   ) -> list[tuple[int, int]]:
    """Spans of `data` that give a secret away once its JSON escapes are decoded.

    The parent would decode them on parsing, so `data` is searched as it would read then; each
    span found there is mapped back to the escaped bytes it came from.
    """
    escapes = _escapes(data)
    if not escapes:
        return []
    pieces: list[bytes] = []
    # Per escape: where it starts and ends in `data`, and in the decoded view.
    marks: list[tuple[int, int, int, int]] = []
    kept = decoded = 0
    for start, end, char in escapes:
        if start < kept:
            continue  # overlapping candidates (\u followed by \/ inside its digits cannot be)
        plain = data[kept:start]
        pieces.append(plain)
        decoded += len(plain)
        pieces.append(char)
        marks.append((start, end, decoded, decoded + len(char)))
        decoded += len(char)
        kept = end
    if not marks:
        return []
    pieces.append(data[kept:])
    found = find(b"".join(pieces))
    if not found:
        return []
    starts = [mark[2] for mark in marks]

    def original(position: int, after: bool) -> int:
        """Where decoded byte `position` begins in `data` (or ends, when `after`)."""
        index = bisect.bisect_right(starts, position) - 1
        if index < 0:
            return position + after
        start, end, _, view_end = marks[index]
        if position < view_end:  # inside an escape: all of it
            return end if after else start
        return end + (position - view_end) + after

    return [(original(start, False), original(end - 1, True)) for start, end in found]


def _occurrences(data: bytes, needle: bytes, spans: list[tuple[int, int]]) -> None:
    at = data.find(needle)
    while at >= 0:
        spans.append((at, at + len(needle)))
        at = data.find(needle, at + 1)


def _fragments(data: bytes, token: _Token, spans: list[tuple[int, int]]) -> None:
    """Add the spans of `data` that hold FRAGMENT or more characters of `token` in a row."""
    raw = token.raw
    for offset, block in token.blocks:
        at = data.find(block)
        while at >= 0:
            # Grow the match outwards while data and token agree.
            start, first = at, offset
            while start > 0 and first > 0 and data[start - 1] == raw[first - 1]:
                start -= 1
                first -= 1
            end, last = at + _BLOCK, offset + _BLOCK
            while end < len(data) and last < len(raw) and data[end] == raw[last]:
                end += 1
                last += 1
            if end - start >= FRAGMENT:
                spans.append((start, end))
            at = data.find(block, at + 1)


def _replace(data: bytes, spans: list[tuple[int, int]]) -> bytes:
    spans.sort()
    out = bytearray()
    kept = 0
    for start, end in spans:
        if end <= kept:
            continue
        if start > kept:
            out += data[kept:start]
            out += _REDACTED_BYTES
        elif not out.endswith(_REDACTED_BYTES):
            out += _REDACTED_BYTES
        kept = end
    out += data[kept:]
    return bytes(out)
