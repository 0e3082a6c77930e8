"""Hostile inputs for the servers, as Hypothesis strategies, and the checks every answer to them must pass.

Shared by the property tests (tests/bridge/test_hostile_input.py, a fixed number of examples) and the long fuzz run
(benchmarks/fuzz_servers.py, 10,000+ examples). Each ``send_*`` function delivers one generated input to a real
server (ZeroMQ, openpi or vla-eval endpoint) and asserts what a client must be able to rely on: a typed error or a
valid reply, and never a silent close.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any, Optional

import msgpack
import numpy as np
from hypothesis import strategies as st

from bridge import protocol

DTYPES = ["|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"]
HOSTILE_DTYPES = DTYPES + ["|O", "|V8", "<c16", ">f4", "<M8[s]", "<U4", "S3", "", "|u1|u1"]
REPLY_TIMEOUT_MS = 60_000

# -- values ---------------------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.binary(max_size=64),
)


def nested(depth: int, leaf: Any, kind: str = "list") -> Any:
    """``leaf`` wrapped ``depth`` times in one-element lists (or maps), built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


deep_values = st.builds(nested, st.integers(min_value=100, max_value=1000), scalars, st.sampled_from(["list", "map"]))


def array_marker(tag: Any = "__ndarray__") -> st.SearchStrategy:
    """The numpy marker maps of vlart's (and vla-eval's) dialect: consistent, inconsistent or absurd fields."""
    dims = st.integers(min_value=-2, max_value=2**40)
    return st.fixed_dictionaries({
        tag: st.one_of(st.just(True), scalars),
        "dtype": st.one_of(st.sampled_from(HOSTILE_DTYPES), scalars, deep_values),
        "shape": st.one_of(st.lists(st.integers(min_value=0, max_value=8), max_size=4), st.lists(dims, max_size=10),
                           scalars, deep_values),
        "data": st.one_of(st.binary(max_size=256), scalars),
    })


def valid_array() -> st.SearchStrategy:
    """Well-formed markers (any allowed dtype and shape, zero-size ones included) that decode to arrays."""
    def build(dtype: str, shape: list[int], seed: int) -> dict:
        data = np.random.default_rng(seed).integers(0, 256, int(np.prod(shape)) * np.dtype(dtype).itemsize,
                                                    dtype=np.uint8).tobytes()
        return {"__ndarray__": True, "dtype": dtype, "shape": shape, "data": data}

    return st.builds(build, st.sampled_from(DTYPES), st.lists(st.integers(0, 5), max_size=4), st.integers(0, 2**16))


values = st.recursive(
    st.one_of(scalars, array_marker(), valid_array()),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.text(max_size=12), st.binary(max_size=8)), children,
                                               max_size=4)),
    max_leaves=12,
) | deep_values


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


# -- images ---------------------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_chunk_between_idats(chunk_kind: bytes = b"\x00abc") -> bytes:
    """A 2x2 PNG whose image data is split in two IDAT chunks with a chunk of a non-letter id between them (Pillow
    raised SyntaxError on it)."""
    raw = zlib.compress(b"".join(b"\x00" + b"\x10\x20\x30" * 2 for _ in range(2)))
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
    return (b"\x89PNG\r\n\x1a\n" + header + _png_chunk(b"IDAT", raw[:5]) + _png_chunk(chunk_kind, b"x")
            + _png_chunk(b"IDAT", raw[5:]) + _png_chunk(b"IEND", b""))


def dds_bytes() -> bytes:
    """A minimal DDS header (a format Pillow sniffs and opens, and cannot always decode)."""
    header = bytearray(124)
    struct.pack_into("<IIII", header, 0, 124, 0x1007, 4, 4)
    struct.pack_into("<I", header, 72, 32)  # pixel format size
    struct.pack_into("<I", header, 76, 0x4)  # DDPF_FOURCC
    header[80:84] = b"DX10"
    return b"DDS " + bytes(header) + b"\0" * 20 + b"\0" * 64


def real_png(seed: int, width: int, height: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def mutate(data: bytes, seed: int, flips: int) -> bytes:
    """``data`` with ``flips`` bytes overwritten at random, or cut short when ``flips`` is 0."""
    rng = np.random.default_rng(seed)
    if not data:
        return data
    if flips == 0:
        return data[: int(rng.integers(0, len(data)))]
    out = bytearray(data)
    for position in rng.integers(0, len(out), flips):
        out[position] = int(rng.integers(0, 256))
    return bytes(out)


image_bytes = st.one_of(
    st.binary(max_size=200),
    st.builds(real_png, st.integers(0, 1000), st.integers(1, 24), st.integers(1, 24)),
    st.builds(mutate, st.builds(real_png, st.integers(0, 1000), st.integers(1, 16), st.integers(1, 16)),
              st.integers(0, 1000), st.integers(0, 6)),
    st.just(png_with_chunk_between_idats()), st.builds(png_with_chunk_between_idats, st.binary(min_size=4, max_size=4)),
    st.just(dds_bytes()), st.just(b"\xff\xd8\xff\xe0" + b"\0" * 40),
)
image_markers = st.fixed_dictionaries({
    "__image__": st.one_of(st.just(True), scalars),
    "format": st.one_of(st.sampled_from(["png", "jpeg", "raw", "PNG", "dds", "gif"]), scalars, deep_values),
    "data": st.one_of(image_bytes, scalars),
    "dtype": st.one_of(st.sampled_from(HOSTILE_DTYPES), scalars),
    "shape": st.one_of(st.lists(st.integers(0, 40), max_size=4), scalars),
})
images = st.one_of(values, array_marker(), valid_array(), image_markers,
                   st.builds(lambda s, h, w: {"__ndarray__": True, "dtype": "|u1", "shape": [h, w, 3],
                                              "data": np.random.default_rng(s).bytes(h * w * 3)},
                             st.integers(0, 99), st.integers(1, 32), st.integers(1, 32)))

instructions = st.one_of(st.sampled_from(["pick coke can", "<image>", " ", ""]), st.text(max_size=60), values)

# -- envelopes ------------------------------------------------------------------------------------------------------

infer_payloads = st.fixed_dictionaries(
    {"images": st.one_of(st.dictionaries(st.sampled_from(["primary", "wrist"]), images, max_size=2), values),
     "instruction": instructions},
    optional={"seed": st.one_of(st.integers(-5, 2**64 - 1), values), "proprio": st.one_of(images, values),
              "prefix": st.one_of(images, values), "delay_ticks": st.one_of(st.integers(-3, 20), values)},
)
vlart_envelopes = st.fixed_dictionaries(
    {"v": st.one_of(st.just(1), values), "type": st.one_of(st.sampled_from(list(protocol.REQUEST_TYPES)), values),
     "seq": st.one_of(st.integers(0, 2**63 - 1), values)},
    optional={"payload": st.one_of(infer_payloads, values), "request_id": st.one_of(st.integers(0, 2**20), values)},
)
infer_envelopes = st.builds(lambda seq, payload: {"v": 1, "type": "infer", "seq": seq, "payload": payload},
                            st.integers(0, 2**63 - 1), infer_payloads)
zmq_bodies = st.one_of(
    st.builds(pack, vlart_envelopes), st.builds(pack, infer_envelopes), st.builds(pack, values),
    st.binary(max_size=300),
    st.builds(mutate, st.builds(pack, vlart_envelopes), st.integers(0, 10_000), st.integers(0, 4)),
)

openpi_observations = st.fixed_dictionaries(
    {"observation/image": st.one_of(images, st.builds(
        lambda marker: {b"__ndarray__": True, **{k.encode(): v for k, v in marker.items() if k != "__ndarray__"}},
        array_marker())), "prompt": instructions},
    optional={"seed": st.one_of(st.integers(-5, 2**64 - 1), values), "reset": values,
              "observation/state": values},
)
openpi_frames = st.one_of(st.builds(pack, openpi_observations), st.builds(pack, values), st.binary(max_size=300),
                          st.text(max_size=30))

VLA_EVAL_TYPES = ["hello", "episode_start", "observation", "action", "episode_end", "error"]
vla_eval_payloads = st.one_of(
    st.fixed_dictionaries({"images": st.one_of(st.dictionaries(st.sampled_from(["primary", "agentview"]), images,
                                                               max_size=2), values),
                           "task_description": instructions}),
    st.fixed_dictionaries({"harness_version": st.one_of(st.text(max_size=80), values),
                           "protocol_version": values}),
    values,
)
vla_eval_messages = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(VLA_EVAL_TYPES), values), "seq": st.one_of(st.integers(-2**63, 2**63), values),
     "payload": vla_eval_payloads, "timestamp": st.one_of(st.floats(), values)})
vla_eval_sequences = st.lists(st.one_of(st.builds(pack, vla_eval_messages), st.binary(max_size=200)),
                              min_size=1, max_size=4)


# -- the checks -----------------------------------------------------------------------------------------------------

def send_zmq(socket: Any, body: bytes) -> protocol.Message:
    """One body over a DEALER socket; the reply must come and be a well-formed vlart message."""
    socket.send(body)
    assert socket.poll(REPLY_TIMEOUT_MS), "no reply from the ZeroMQ server"
    reply = protocol.unpack(socket.recv())
    assert reply.type in (protocol.ERROR, *protocol.REQUEST_TYPES), reply
    if reply.type == protocol.ERROR:
        assert reply.payload["code"] in protocol.ERROR_CODES, reply.payload
        assert isinstance(reply.payload["message"], str)
        assert reply.payload["code"] != protocol.INTERNAL_ERROR, reply.payload
    return reply


def send_openpi(url: str, frame: Any) -> str:
    """One frame on a new openpi connection: a result frame, or an error text frame and, where the stream broke,
    the close openpi's server uses (1011) with a reason. Returns "reply", "error" or "error+close"."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(url, compression=None, max_size=None, open_timeout=60) as ws:
        ws.recv(timeout=60)  # the metadata frame
        ws.send(frame)
        reply = ws.recv(timeout=60)
        if isinstance(reply, bytes):
            result = msgpack.unpackb(reply)
            assert np.asarray(result["actions"]).shape[-1] == 7, result
            return "reply"
        code = reply.split(":", 1)[0].split(" ", 1)[0]
        assert code in protocol.ERROR_CODES and code != protocol.INTERNAL_ERROR, reply
        try:
            ws.send(pack({"observation/image": "probe"}))
            probe = ws.recv(timeout=60)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1011 and closed.rcvd.reason, closed
            return "error+close"
        assert isinstance(probe, str) and probe.startswith("bad_request"), probe
        return "error"


def send_vla_eval(url: str, frames: list[bytes]) -> list[str]:
    """A sequence of frames on a new vla-eval connection, each followed by a ``hello`` probe: every answer is a
    well-formed vla-eval message, every message the client sent is answered before the probe (or needs no answer),
    and a close comes only after an error message, with vla-eval's code 1003 and a reason. Returns the kinds of the
    answers ("action", "hello", "error:<code>", "close")."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    outcomes: list[str] = []
    with connect(url, compression=None, max_size=None, open_timeout=60) as ws:
        for index, frame in enumerate(frames):
            probe_seq = 1_000_000 + index
            try:
                ws.send(frame)
                ws.send(pack({"type": "hello", "seq": probe_seq, "payload": {"harness_version": "probe"},
                              "timestamp": 0.0}))
            except ConnectionClosed:  # closed after the frame: its answer is still to be read below
                pass
            try:
                while True:
                    message = msgpack.unpackb(ws.recv(timeout=60), strict_map_key=False)
                    kind = message["type"]
                    assert kind in ("action", "hello", "error"), message
                    if kind == "error":
                        code = message["payload"]["code"]
                        assert code in protocol.ERROR_CODES and code != protocol.INTERNAL_ERROR, message
                        outcomes.append(f"error:{code}")
                    else:
                        outcomes.append(kind)
                    if kind == "hello" and message["seq"] == probe_seq:
                        break
            except ConnectionClosed as closed:
                assert outcomes and outcomes[-1].startswith("error:"), (outcomes, closed)
                assert closed.rcvd is not None and closed.rcvd.code == 1003 and closed.rcvd.reason, closed
                outcomes.append("close")
                return outcomes
    return outcomes


def valid_zmq_infer(frame: np.ndarray, seed: int = 0) -> bytes:
    return protocol.pack(protocol.INFER, 1, {"images": {"primary": frame}, "instruction": "pick coke can",
                                             "seed": seed})


def first_error(outcomes: list[str]) -> Optional[str]:
    return next((o for o in outcomes if o.startswith("error:")), None)
