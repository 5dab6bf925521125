"""JSON bodies on the wire (a request as a client sent it, a provider's answer, what the gateway sends on): parsed
and written with orjson when it is installed (the `gateway` extra), else with the standard library.

orjson is ~5x faster on these bodies (~2 us for a call's four against ~14 us, more in place, where caches are
cold), which is most of what JSON costs a gateway call. What the two parse is the same: orjson refuses what the
standard library takes beyond strict JSON (NaN and Infinity, escapes of lone surrogates), and those bodies are
parsed again by the standard library, which also gives the error of a body neither takes. A body with 19 digits
in a row goes to the standard library at once: orjson reads an integer past 64 bits as a float, which would change
a number the client sent on to the provider.
Written bodies differ only in spacing and in non-ASCII text sent as UTF-8 rather than escaped; an object orjson
cannot write (a lone surrogate, a key that is not a string, a huge integer) is written by the standard library,
ASCII with escapes. One difference remains: a float NaN or infinity is written `null` (the standard library writes
`NaN`, which is not JSON and which providers refuse).
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # the gateway extra is not installed: the standard library throughout
    orjson = None  # type: ignore[assignment]


# 19 digits in a row: maybe an integer orjson would read as a float (it keeps 64 bits; 18 digits always fit).
# Found as a run of '0's in the body with every ASCII digit made '0' and every other byte ' ' (bytes.translate and
# a substring search, both in C): what re's \d{19} finds, ~7x faster on a short answer and ~14x on a 40 KB request
# (the regex tries a match at every byte: ~340 us there). Done in 1 MiB pieces, so the copy it makes stays small.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_RUN = b"0" * 19
_PIECE = 2**20


def long_number(raw: bytes) -> bool:
    """Whether `raw` holds 19 ASCII digits in a row."""
    if len(raw) <= _PIECE:
        return _RUN in raw.translate(_DIGITS)
    view = memoryview(raw)
    # pieces overlap by 18 bytes, so a run across a boundary is inside one of them
    return any(_RUN in bytes(view[i:i + _PIECE + 18]).translate(_DIGITS) for i in range(0, len(raw), _PIECE))


def loads(raw: bytes) -> Any:
    """The parsed body; ValueError (or RecursionError, nested too deep) when it is not JSON."""
    if orjson is None or long_number(raw):
        return json.loads(raw)
    try:  # (try/except, not contextlib.suppress: a context manager object per body costs ~0.3 us)
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # beyond strict JSON, or not JSON: json decides
        return json.loads(raw)


def dumps(data: Any) -> bytes:
    """`data` as UTF-8 JSON."""
    if orjson is None:
        return json.dumps(data).encode()
    try:
        return orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError):  # what orjson cannot write: json writes it
        return json.dumps(data).encode()
