"""The gateway's JSON codec: with orjson (the gateway extra) and without it, a body parses to the same value and
what is written parses back to what was written; what orjson refuses is handled by the standard library."""

from __future__ import annotations

import json
import math

import pytest

from agent_router.providers import jsonbody

BODIES = [
    b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}',
    '{"messages": [{"role": "user", "content": "caf\u00e9 \u2014 \U0001f600 \\u00e9 \\ud83d\\ude00"}]}'.encode(),
    b'{"a": [1, -2, 3.5, 1e300, -0.0, true, false, null], "b": {"c": {"d": []}}, "e": ""}',
    b'{"dup": 1, "dup": 2}',  # the last wins in both
    b' \n{"spaced" :\t"out"}\n ',
    # beyond strict JSON, which the standard library takes and orjson refuses:
    b'{"x": NaN, "y": Infinity, "z": -Infinity}',
    b'{"big": 123456789012345678901234567890}',  # orjson would read it as a float: it must not change
    b'{"neg": -9223372036854775809, "max": 18446744073709551615, "s": "id 12345678901234567890"}',
    b'{"lone": "\\ud800 and \\udfff"}',
]
NOT_JSON = [b"", b"{", b'{"a": 1} trailing', b"\xff\xfe{}", b'{"a": "\x01"}', b"[" * 100_000]


@pytest.fixture(params=["orjson", "stdlib"])
def codec(request, monkeypatch):
    if request.param == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(jsonbody, "orjson", None)
    return jsonbody


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN and -0.0 told from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("raw", BODIES)
def test_a_body_parses_as_the_standard_library_parses_it(codec, raw):
    assert _same(codec.loads(raw), json.loads(raw))


@pytest.mark.parametrize("raw", NOT_JSON)
def test_what_is_not_json_raises_what_the_standard_library_raises(codec, raw):
    with pytest.raises((ValueError, RecursionError)):
        codec.loads(raw)


@pytest.mark.parametrize("raw", BODIES[:5])
def test_what_is_written_parses_back_to_the_same_value(codec, raw):
    data = json.loads(raw)
    out = codec.dumps(data)
    assert isinstance(out, bytes)
    assert _same(json.loads(out), data)
    out.decode("utf-8")  # valid UTF-8 on the wire


def test_what_orjson_cannot_write_is_written_by_the_standard_library(codec):
    for data in ({"lone": "\ud800"}, {1: "int key"}, {"big": 2**70}):
        out = codec.dumps(data)
        out.decode("ascii")  # escaped: a lone surrogate cannot go out as UTF-8
        assert json.loads(out) == json.loads(json.dumps(data))


@pytest.mark.parametrize("raw", [
    b"", b"1234567890123456789", b"123456789012345678", b"x123456789012345678y", b"x1234567890123456789y",
    "\u0661".encode() * 19,  # Arabic-Indic digits: not ASCII, not a run
    b"12345678901234567\xff89", b"0" * 18 + b"." + b"0" * 18, b"9" * 40,
])
def test_a_run_of_19_digits_is_found_as_the_regex_finds_it(raw):
    import re

    assert jsonbody.long_number(raw) == bool(re.search(rb"\d{19}", raw))


@pytest.mark.parametrize("start", [2**20 - 19, 2**20 - 10, 2**20 - 1, 2**20, 2 * 2**20 - 5])
def test_a_long_integer_across_the_scans_1_mib_pieces_keeps_every_digit(codec, start):
    # a body over 1 MiB is scanned piece by piece: a number cut by a piece's end is still found
    number = 12345678901234567891
    head = b'{"pad": "' + b"x" * (start - len(b'{"pad": "') - len(b'", "n": ')) + b'", "n": '
    raw = head + str(number).encode() + b"}"
    assert raw.index(b"1234567890") == start
    assert jsonbody.long_number(raw)
    got = codec.loads(raw)["n"]
    assert type(got) is int and got == number
