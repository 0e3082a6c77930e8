"""msgpack codec with numpy arrays as raw bytes (never pickle).

An array travels as the map ``{"__ndarray__": true, "dtype": "<f4", "shape": [16, 7], "data": <bin>}``: C order,
little-endian, dtype from an allowlist (bool, signed/unsigned integers, float16/32/64). Object, void, complex,
datetime and string dtypes are refused on both sides. numpy scalars become plain msgpack numbers.
Imports only numpy and msgpack.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from runtime.core.safe_repr import bounded_repr, describe_exception

ARRAY_TAG = "__ndarray__"
ALLOWED_DTYPES = frozenset(
    ["|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"]
)
MAX_NDIM = 8


class CodecError(ValueError):
    """A message cannot be encoded or decoded; the text names the offending field or value."""


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        dtype = obj.dtype
        if dtype.byteorder == ">":
            dtype = dtype.newbyteorder("<")
            obj = obj.astype(dtype)
        if dtype.str not in ALLOWED_DTYPES:
            raise CodecError(f"array dtype {obj.dtype} is not allowed; allowed: {', '.join(sorted(ALLOWED_DTYPES))}")
        array = np.ascontiguousarray(obj)
        # Flattened first: a memoryview with a zero in its shape cannot be cast, and zero-size arrays are valid.
        data = memoryview(array.reshape(-1)).cast("B")
        return {ARRAY_TAG: True, "dtype": dtype.str, "shape": list(array.shape), "data": data}
    if isinstance(obj, np.generic):
        value = obj.item()
        if isinstance(value, (bool, int, float)):
            return value
        raise CodecError(f"numpy scalar of dtype {obj.dtype} cannot be encoded")
    if isinstance(obj, tuple):
        return list(obj)
    raise CodecError(f"cannot encode object of type {type(obj).__name__}")


def _decode_array(obj: dict[str, Any]) -> np.ndarray:
    return array_from_fields(obj.get("dtype"), obj.get("shape"), obj.get("data"))


def array_from_fields(dtype: Any, shape: Any, data: Any) -> np.ndarray:
    """An array's decoded fields -> the array (a read-only view of ``data``), checked against the allowlist, the
    rank limit and the byte count; ``CodecError`` otherwise. Shared by the websocket endpoints' dialects."""
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
        allowed = ", ".join(sorted(ALLOWED_DTYPES))
        raise CodecError(f"array dtype {bounded_repr(dtype)} is not allowed; allowed: {allowed}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise CodecError(
            f"array shape must be a list of at most {MAX_NDIM} non-negative integers, got {bounded_repr(shape)}")
    if not isinstance(data, bytes):
        raise CodecError("array data must be msgpack bin")
    np_dtype = np.dtype(dtype)
    expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
    if len(data) != expected:
        raise CodecError(f"array data has {len(data)} bytes, dtype {dtype} and shape {shape} need {expected}")
    return np.frombuffer(data, dtype=np_dtype).reshape(shape)


def _object_hook(obj: dict[str, Any]) -> Any:
    if obj.get(ARRAY_TAG) is True:
        return _decode_array(obj)
    return obj


def refuse_ext(code: int, data: bytes) -> Any:
    raise CodecError(f"msgpack extension type {code} is not allowed")


def unpack_with(data: bytes, object_hook: Any) -> Any:
    """msgpack bytes -> values, maps passed through ``object_hook``; ``CodecError`` for anything malformed. The one
    decoding entry of every dialect: extension types refused, map keys str or bytes only."""
    try:
        return msgpack.unpackb(
            data, raw=False, object_hook=object_hook, ext_hook=refuse_ext, strict_map_key=True, timestamp=0
        )
    except CodecError:
        raise
    except Exception as exc:  # whatever a hostile message makes the unpacker or a hook raise, RecursionError included
        raise CodecError(f"not a valid msgpack message: {describe_exception(exc)}") from None


def encode(message: Any) -> bytes:
    """Python/numpy value -> msgpack bytes."""
    try:
        return msgpack.packb(message, default=_encode_default, use_bin_type=True)
    except CodecError:
        raise
    except Exception as exc:
        raise CodecError(f"cannot encode message: {describe_exception(exc)}") from None


def decode(data: bytes) -> Any:
    """msgpack bytes -> Python values with numpy arrays (read-only views of ``data``).

    Anything that is not valid msgpack in this dialect raises ``CodecError``.
    """
    return unpack_with(data, _object_hook)
