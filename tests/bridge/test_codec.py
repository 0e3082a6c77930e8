import msgpack
import numpy as np
import pytest

from bridge.codec import ALLOWED_DTYPES, CodecError, decode, encode


@pytest.mark.parametrize("dtype", sorted(ALLOWED_DTYPES))
def test_every_allowed_dtype_round_trips(dtype):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 2)) * 50).astype(np.dtype(dtype))
    back = decode(encode({"a": array}))["a"]
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_nested_payloads_round_trip():
    image = np.arange(224 * 224 * 3, dtype=np.uint8).reshape(224, 224, 3)
    message = {
        "v": 1, "type": "infer", "seq": 2**62,
        "payload": {
            "images": {"primary": image, "wrist": image[:10, :20]},
            "instruction": "put the carrot on the plate ✓",
            "list": [np.zeros(0, np.float32), {"deep": [1, 2.5, None, True, b"raw"]}],
            "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True)],
            "tuple": (1, 2),
        },
    }
    back = decode(encode(message))
    payload = back["payload"]
    np.testing.assert_array_equal(payload["images"]["primary"], image)
    np.testing.assert_array_equal(payload["images"]["wrist"], image[:10, :20])  # non-contiguous view
    assert payload["list"][0].shape == (0,)
    assert payload["list"][1] == {"deep": [1, 2.5, None, True, b"raw"]}
    assert payload["scalars"] == [1.5, -3, True] and payload["tuple"] == [1, 2]
    assert back["seq"] == 2**62 and payload["instruction"].endswith("✓")


def test_big_endian_arrays_travel_little_endian():
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    back = decode(encode(array))
    assert back.dtype.str == "<i4"
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    "value",
    [
        np.array([object(), 1], dtype=object),
        np.zeros(3, dtype=np.complex64),
        np.zeros(2, dtype="V4"),
        np.array(["a", "b"]),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
        np.complex128(1j),
        object(),
    ],
)
def test_forbidden_values_are_refused_on_encode(value):
    with pytest.raises(CodecError):
        encode({"x": value})


def raw_array(dtype, shape, data):
    return msgpack.packb({"__ndarray__": True, "dtype": dtype, "shape": shape, "data": data})


@pytest.mark.parametrize(
    "raw, message",
    [
        (raw_array("|O", [1], b"\0" * 8), "dtype '|O' is not allowed"),
        (raw_array("<c8", [1], b"\0" * 8), "dtype '<c8' is not allowed"),
        (raw_array("|V4", [1], b"\0" * 4), "is not allowed"),
        (raw_array(">f4", [1], b"\0" * 4), "is not allowed"),
        (raw_array("<f4", [2, 2], b"\0" * 12), "has 12 bytes"),
        (raw_array("<f4", [-1], b""), "non-negative integers"),
        (raw_array("<f4", [1] * 9, b"\0" * 4), "at most 8"),
        (raw_array("<f4", "3", b"\0" * 12), "shape must be a list"),
        (raw_array("<f4", [3], "text"), "data must be msgpack bin"),
        (msgpack.packb(msgpack.ExtType(5, b"x")), "extension type 5"),
        (b"\xc1", "not a valid msgpack message"),
        (msgpack.packb({"a": 1})[:-1], "not a valid msgpack message"),
        (msgpack.packb({1: 2}), "not a valid msgpack message"),
        (b"\x91" * 100_000, "not a valid msgpack message"),
    ],
)
def test_forbidden_or_malformed_input_is_refused_on_decode(raw, message):
    with pytest.raises(CodecError, match=message):
        decode(raw)


def test_pickle_is_never_used():
    import pickle

    with pytest.raises(CodecError):
        decode(pickle.dumps({"a": 1}))
