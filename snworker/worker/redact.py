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
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
            self._snapshot = _Snapshot(
                tuple(t.raw for s, t in self._tokens.items() if s not in self._live_until),
                tuple((self._tokens[s], until) for s, until in self._live_until.items()),
            )

    def __len__(self) -> int:
        return len(self._tokens)

    # --- redacting ------------------------------------------------------------------------

    def body(self, data: bytes) -> bytes:
        """`data` with every secret replaced; JSON `\\u` escapes are looked through."""
        if not data:
            return data
        data = self._bytes(data, self._snapshot)
        # One byte is found far faster than two: most bodies have no backslash at all.
        if b"\\" in data and b"\\u" in data:
            data = self._json_escapes(data)
        return data

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
        spans: list[tuple[int, int]] = []
        for raw in snapshot.raw:
            _occurrences(data, raw, spans)
        if snapshot.live:
            now = self._clock()
            for token, until in snapshot.live:
                if now < until:  # the fragments include the whole token
                    for form in token.encoded:
                        _occurrences(data, form, spans)
                    _fragments(data, token, spans)
                else:
                    _occurrences(data, token.raw, spans)
        return _replace(data, spans) if spans else data

    def _json_escapes(self, data: bytes) -> bytes:
        try:
            parsed = json.loads(data)
        except ValueError:
            return data
        changed = [False]
        clean = self._walk(parsed, changed)
        if not changed[0]:
            return data
        return json.dumps(clean, ensure_ascii=False, separators=(",", ":")).encode()

    def _walk(self, value: Any, changed: list[bool]) -> Any:
        if isinstance(value, str):
            clean = self.text(value)
            if clean != value:
                changed[0] = True
            return clean
        if isinstance(value, list):
            return [self._walk(item, changed) for item in value]
        if isinstance(value, dict):
            return {self._walk(k, changed): self._walk(v, changed) for k, v in value.items()}
        return value


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
