"""Hypothesis strategies shared by the property tests and the state machines.

One home for the inputs several test modules draw: JSON values of a few flavours, the ids
the protocol machines use, error bodies, result shapes, and the noise a peer may send
between real frames. Strategies that only one module needs (frame builders, a machine's
own pools) stay in that module.

The JSON flavours differ on purpose, so each is named for what its tests need:
`EXACT_JSON` survives any JSON codec unchanged (what one core encodes the other must decode
to the same value), `FUZZ_JSON` includes NaN, infinities and unbounded integers (garbage
for the decoder), and `PAYLOADS` is what a worker must carry end to end unchanged (no lone
surrogates, which no codec can encode, and no `_caller_worker_id` key, which the engine
adds to object payloads).
"""

from __future__ import annotations

from typing import Any, Final

from hypothesis import strategies as st

from anyiii._protocol.codes import CALLER_WORKER_ID_KEY
from anyiii._protocol.frames import ErrorBody, Ping, Pong

# --- JSON values ------------------------------------------------------------------------------

#: The key the engine injects into object payloads: generated payloads never contain it, so a
#: payload that comes back with it has gained exactly that key.
CALLER_KEY: Final = CALLER_WORKER_ID_KEY


def json_scalars(
    *, integers: st.SearchStrategy[int], finite: bool, text: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    """JSON leaves: null, booleans, `integers`, floats (only finite ones if `finite`), `text`."""
    floats = st.floats(allow_nan=False, allow_infinity=False) if finite else st.floats()
    return st.none() | st.booleans() | integers | floats | text


def json_values(
    scalars: st.SearchStrategy[Any], *, size: int, keys: st.SearchStrategy[str], max_leaves: int
) -> st.SearchStrategy[Any]:
    """Nested JSON: `scalars` in lists and objects of at most `size` items, keyed by `keys`."""
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=size) | st.dictionaries(keys, children, max_size=size)
        ),
        max_leaves=max_leaves,
    )


#: Small JSON that every codec round-trips exactly: integers within a double's precision,
#: finite floats.
EXACT_JSON: Final = json_values(
    json_scalars(integers=st.integers(-(2**53), 2**53), finite=True, text=st.text(max_size=10)),
    size=3,
    keys=st.text(max_size=6),
    max_leaves=6,
)
#: Small JSON objects of `EXACT_JSON` values (configs, metadata, formats).
EXACT_OBJECTS: Final = st.dictionaries(st.text(max_size=6), EXACT_JSON, max_size=3)

#: Leaves for fuzzing: NaN and ±inf make `json.dumps` write non-JSON, which is good garbage.
FUZZ_SCALARS: Final = json_scalars(integers=st.integers(), finite=False, text=st.text(max_size=20))
#: Arbitrary JSON (and near-JSON) for the decoder.
FUZZ_JSON: Final = json_values(FUZZ_SCALARS, size=4, keys=st.text(max_size=8), max_leaves=12)
#: Smaller fuzz JSON, for the value of one field of a frame.
SMALL_FUZZ_JSON: Final = json_values(FUZZ_SCALARS, size=3, keys=st.text(max_size=6), max_leaves=4)

_ENCODABLE_TEXT: Final = st.characters(exclude_categories=["Cs"])  # no lone surrogates
#: Payloads a worker must get back exactly: 64-bit integers, finite floats, encodable text,
#: and never the engine's own caller key.
PAYLOADS: Final = json_values(
    json_scalars(
        integers=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        finite=True,
        text=st.text(_ENCODABLE_TEXT, max_size=20),
    ),
    size=5,
    keys=st.text(_ENCODABLE_TEXT, max_size=10).filter(lambda key: key != CALLER_KEY),
    max_leaves=30,
)

#: A handful of fixed JSON values (one of each kind), for machines that compare exact frames.
SAMPLE_JSON: Final = st.sampled_from([None, 0, "text", [1, 2], {"a": {"b": None}}])

# --- ids --------------------------------------------------------------------------------------

#: Function ids of the protocol machines: plain, namespaced-looking, and a built-in's.
FUNCTION_IDS: Final = st.sampled_from(["math::add", "greet", "engine::functions::list"])
#: Trigger type ids of the protocol machines.
TRIGGER_TYPES: Final = st.sampled_from(["webhook", "ticker"])


def uuid_text(prefix: str, n: int) -> str:
    """Readable, unique UUID text: `prefix` is 8 hex digits naming who made the id."""
    return f"{prefix}-0000-4000-8000-{n:012x}"


# --- errors and results -----------------------------------------------------------------------


def error_bodies(*codes: str) -> st.SearchStrategy[ErrorBody]:
    """Error bodies with one of `codes`, a message or none, and a stacktrace or none."""
    return st.builds(
        ErrorBody,
        code=st.sampled_from(codes),
        message=st.sampled_from(["boom", ""]),
        stacktrace=st.none() | st.just("Traceback ..."),
    )


#: What an invocation result carries: a value, an explicit null, nothing at all, or an error.
RESULT_SHAPES: Final = st.sampled_from(["value", "null", "absent", "error"])

# --- noise between real frames ----------------------------------------------------------------

#: Messages a core skips without a word: blank ones and telemetry (OTLP, MTRC, LOGS) prefixes.
SKIPPED: Final = st.sampled_from(
    [b"", b"   ", b"\r\n", " \t\n", b"OTLP\x00\x01\x02", b"MTRC{}", b"LOGS"]
)
#: Well-formed frames of types this SDK does not know: reported as unknown, not as errors.
UNKNOWN: Final = st.sampled_from(
    [b'{"type": "observe", "invocation_id": "x"}', b'{"type": "streamchunk", "n": [1]}']
)
#: Undecodable for either role and naming no invocation: not JSON, not an object, no
#: `type`, a `type` that is not text, an invokefunction without its required fields. None of
#: them starts like telemetry or is blank.
UNDECODABLE: Final = (
    b"\xff\xfe\x00garbage",
    b"{",
    b"[1, 2, 3]",
    b'"just a string"',
    b"{}",
    b'{"type": 5}',
    b'{"type": "invokefunction"}',
)


def noise(
    garbage: st.SearchStrategy[Any], foreign: st.SearchStrategy[Any]
) -> st.SearchStrategy[tuple[str, Any]]:
    """(kind, message) pairs a peer may send between real frames: pings and pongs, unknown
    types, `garbage`, frames of the other role (`foreign`), skipped messages."""
    return st.one_of(
        st.tuples(st.just("ping"), st.sampled_from([Ping(), Pong()])),
        st.tuples(st.just("unknown"), UNKNOWN),
        st.tuples(st.just("garbage"), garbage),
        st.tuples(st.just("foreign"), foreign),
        st.tuples(st.just("skipped"), SKIPPED),
    )
