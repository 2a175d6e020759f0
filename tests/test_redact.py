"""The worker's redaction, driven directly: every form of every secret it ever held."""

from __future__ import annotations

import base64
import itertools
import json
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snworker.worker.redact import FRAGMENT, REDACTED, Redactor

TOKEN = secrets.token_urlsafe(64)  # 86 characters, as ServiceNow's tokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live(token: str = TOKEN) -> Redactor:
    redactor = Redactor(Clock())
    redactor.add(token, live_until=1e9)
    return redactor


def test_a_token_is_replaced_wherever_it_stands():
    redactor = live()
    body = f'{{"a":"{TOKEN}","b":"x{TOKEN}y{TOKEN}"}}'.encode()
    clean = redactor.body(body)
    assert TOKEN.encode() not in clean
    assert clean.count(REDACTED.encode()) == 3
    assert clean.startswith(b'{"a":"[redacted') and clean.endswith(b'"}')


@pytest.mark.parametrize("prefix", [b"", b"B", b"Be", b"Bearer ", b"Authorization: Bearer "])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_of_the_token_or_its_header_value_at_any_alignment(prefix, encode):
    redactor = live()
    encoded = encode(prefix + TOKEN.encode() + b"\r\n")
    clean = redactor.body(b"echo=" + encoded)
    assert REDACTED.encode() in clean
    decoded = base64.b64decode(_b64_run(clean), altchars=b"-_", validate=False)
    assert TOKEN.encode() not in decoded
    assert TOKEN[10:40].encode() not in decoded  # what is left does not give the token away


def _b64_run(data: bytes) -> bytes:
    tail = data.split(b"]")[-1]
    return tail[: len(tail) - len(tail) % 4]


@pytest.mark.parametrize(("start", "length"), [
    (0, FRAGMENT), (0, len(TOKEN) - 1), (1, len(TOKEN) - 1), (5, FRAGMENT), (30, 40),
    (len(TOKEN) - FRAGMENT, FRAGMENT), (17, FRAGMENT + 1),
])
def test_any_run_of_24_or_more_characters_of_a_live_token_is_replaced(start, length):
    fragment = TOKEN[start:start + length]
    clean = live().body(f'{{"echo":"<{fragment}>"}}'.encode())
    assert clean == f'{{"echo":"<{REDACTED}>"}}'.encode()


def test_every_start_and_end_of_a_fragment_is_caught():
    redactor = live()
    for start in range(len(TOKEN) - FRAGMENT + 1):
        fragment = TOKEN[start:start + FRAGMENT]
        assert fragment.encode() not in redactor.body(b"x" + fragment.encode() + b"y"), start


def test_shorter_runs_and_other_text_are_left_alone():
    redactor = live()
    short = TOKEN[3:3 + FRAGMENT - 1]
    body = f'{{"echo":"{short}","n":"INC0010001"}}'.encode()
    assert redactor.body(body) is body


def test_fragments_are_searched_only_while_the_token_may_be_accepted():
    clock = Clock()
    redactor = Redactor(clock)
    redactor.add(TOKEN, live_until=clock.now + 10)
    fragment = TOKEN[:40].encode()
    assert fragment not in redactor.body(fragment)
    clock.now += 11
    assert redactor.body(fragment) == fragment
    assert TOKEN.encode() not in redactor.body(TOKEN.encode())  # whole, it is still caught


def test_secrets_stay_in_for_the_workers_whole_life():
    redactor = Redactor(Clock())
    old, new = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    redactor.add(old)
    redactor.add(new)
    body = f"{old} {new}".encode()
    assert redactor.body(body) == f"{REDACTED} {REDACTED}".encode()
    assert len(redactor) == 2


def test_json_unicode_escapes_are_looked_through():
    redactor = live()
    escaped = "".join(f"\\u{ord(c):04x}" for c in TOKEN)
    body = ('{"error":{"message":"token ' + escaped + '","detail":null},"status":"failure"}')
    clean = redactor.body(body.encode())
    assert TOKEN not in json.loads(clean)["error"]["message"]
    assert REDACTED in json.loads(clean)["error"]["message"]
    partly = TOKEN[:20] + "".join(f"\\u{ord(c):04x}" for c in TOKEN[20:])
    clean = redactor.body(('{"result":["' + partly + '"]}').encode())
    assert json.loads(clean) == {"result": [REDACTED]}


def test_escaped_json_without_a_secret_is_passed_as_it_is():
    body = b'{"result":{"name":"caf\\u00e9"}}'
    assert live().body(body) is body


def test_header_values_and_texts():
    redactor = live()
    assert redactor.header(f"<x?t={TOKEN}>") == f"<x?t={REDACTED}>"
    assert redactor.text(f"refused {TOKEN[:30]}") == f"refused {REDACTED}"
    pairs = (("X-Echo", f"Bearer {TOKEN}"), ("X-Ok", "1"))
    assert redactor.pairs(pairs) == (("X-Echo", f"Bearer {REDACTED}"), ("X-Ok", "1"))
    untouched = (("X-Ok", "1"),)
    assert redactor.pairs(untouched) is untouched


def test_error_texts_leave_the_worker_redacted():
    # An instance can quote anything in an error (a token endpoint's error_description, say):
    # every Error message is redacted on its way out, whatever built it.
    from snworker.worker.failures import TokenExpired
    from snworker.worker.main import Worker

    worker = Worker(())
    worker._redactor.add(TOKEN, live_until=1e12)
    failure = TokenExpired(f"the instance refused ({TOKEN[:-1]})", detail=f"was {TOKEN}",
                           headers=(("X-Echo", TOKEN[5:50]),))
    error = worker._error(7, failure)
    text = f"{error.message} {error.detail} {error.headers}"
    assert TOKEN[5:40] not in text
    assert text.count(REDACTED) == 3


# --- bodies in pieces: a secret split over two pieces is still found ----------------------

def _leaks(token: str) -> dict[str, bytes]:
    escaped = "".join(f"\\u{ord(c):04x}" for c in token[:40]) + token[40:]
    return {
        "whole": token.encode(),
        "fragment": token[9:9 + FRAGMENT + 3].encode(),
        "base64_header": base64.b64encode(f"Bearer {token}".encode()),
        "urlsafe": base64.urlsafe_b64encode(b"x" + token.encode()),
        "json_escaped": escaped.encode(),
    }


def _streamed(redactor: Redactor, pieces: list[bytes]) -> bytes:
    stream = redactor.stream()
    return b"".join(stream.feed(piece) for piece in pieces) + stream.finish()


@pytest.mark.parametrize("leak", ["whole", "fragment", "base64_header", "urlsafe",
                                  "json_escaped"])
def test_a_secret_split_at_every_offset_between_two_pieces_is_found(leak):
    redactor = live()
    echo = _leaks(TOKEN)[leak]
    body = b'{"a":"' + b"q" * 5000 + echo + b'","b":"' + b"z" * 3000 + b'"}'
    start = body.index(echo)
    whole = redactor.body(body)
    assert REDACTED.encode() in whole
    for offset in range(start - 1, start + len(echo) + 2):
        clean = _streamed(redactor, [body[:offset], body[offset:]])
        assert clean == whole, (leak, offset - start)


@pytest.mark.parametrize("size", [1, 13, 700, 4097])
def test_pieces_of_any_size_give_what_the_whole_body_gives(size):
    redactor = live()
    leaks = _leaks(TOKEN)
    body = b"<" + b" | ".join(leaks.values()) + b"> " + bytes(range(256)) * 40
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    assert _streamed(redactor, pieces) == redactor.body(body)
    for echo in leaks.values():
        assert echo not in _streamed(redactor, pieces)


def test_a_stream_holds_back_no_more_than_its_last_piece_its_overlap_and_a_match():
    redactor = live()
    stream = redactor.stream()
    first, second = b"x" * 100_000, b"w" * 100_000
    assert stream.feed(first) == b"" and stream.held == len(first)
    assert stream.feed(second) is first  # nothing found: passed on as it came, uncopied
    assert stream.held == len(second)
    out = stream.feed(b"y" * 10 + TOKEN.encode()[:50])  # a token begins at the border
    # Joined with what is held, searched, and cut `overlap()` before the end (past 60 bytes).
    assert out == second[:len(second) + 60 - redactor.overlap()]
    assert stream.held <= redactor.overlap() + len(TOKEN)
    assert stream.finish().endswith(REDACTED.encode())


def test_a_piece_with_a_secret_is_held_until_the_next_shows_where_the_secret_ends():
    redactor = live()
    stream = redactor.stream()
    body = b"a" * 50_000 + TOKEN.encode() + b"b" * 50_000
    cut = 50_000 + len(TOKEN) // 2
    out = stream.feed(body[:cut]) + stream.feed(body[cut:]) + stream.finish()
    assert out == redactor.body(body) and TOKEN.encode()[:FRAGMENT] not in out


def test_a_secret_added_while_a_piece_is_held_is_found_in_it():
    # A piece found clean is held until the next comes; a secret the worker learns meanwhile
    # (a renewed token the instance already echoes) is searched for in it before it leaves.
    redactor = live()
    stream = redactor.stream()
    fresh = secrets.token_urlsafe(64)
    piece = b"a" * 10_000 + fresh.encode() + b"b" * 10_000
    assert stream.feed(piece) == b""
    redactor.add(fresh, live_until=1e9)
    out = stream.feed(b"c" * 10_000) + stream.finish()
    assert fresh.encode()[:FRAGMENT] not in out and REDACTED.encode() in out


def test_a_body_without_secrets_passes_as_it_is():
    redactor = live()
    body = bytes(range(256)) * 4096
    assert redactor.body(body) is body
    assert _streamed(redactor, [body[:300_000], body[300_000:]]) == body


@settings(max_examples=80, deadline=None)
@given(layout=st.lists(st.tuples(st.sampled_from(["whole", "fragment", "base64_header",
                                                  "urlsafe", "json_escaped"]),
                                 st.integers(0, 30_000)), min_size=1, max_size=4),
       near=st.lists(st.integers(-300, 300), max_size=8),
       cuts=st.lists(st.integers(0, 40_000), max_size=6))
def test_a_body_cut_anywhere_streams_to_what_the_whole_body_gives(layout, near, cuts):
    # Pieces both shorter and longer than the overlap, cut at random and close around the
    # secrets, so that a piece is passed on uncopied where nothing is near and joined where a
    # secret is, however many pieces the secret is spread over.
    redactor = live()
    leaks = _leaks(TOKEN)
    body = bytes(range(256)) * 160
    for leak, at in sorted(layout, key=lambda item: -item[1]):
        body = body[:at] + leaks[leak] + body[at:]
    around = [at + offset for _, at in layout for offset in near]
    edges = sorted({0, len(body), *(cut for cut in cuts + around if 0 < cut < len(body))})
    pieces = [body[a:b] for a, b in itertools.pairwise(edges)]
    clean = _streamed(redactor, pieces)
    assert clean == redactor.body(body)
    for leak, _ in layout:
        assert leaks[leak] not in clean
