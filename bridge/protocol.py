"""The vlart wire protocol, version 1 (specified in ``docs/protocol.md``): message envelope, types, error codes and
the validation of each payload. Shared by the server and the thin client; imports only numpy, msgpack and the
numpy-only ``policies.api.interface``."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Optional

import msgpack
import numpy as np

from bridge.codec import CodecError, decode, encode
from policies.api.interface import (ChunkContinuation, Conventions, continuation_problem, image_problem,
                                    instruction_problem)
from runtime.core.safe_repr import bounded_repr

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

HELLO = "hello"
INFER = "infer"
RESET = "reset"
PING = "ping"
ERROR = "error"
REQUEST_TYPES = (HELLO, INFER, RESET, PING)

# Error codes (payload.code of an "error" reply).
BAD_MESSAGE = "bad_message"  # not msgpack, not a map, or envelope fields missing/wrong
UNSUPPORTED_VERSION = "unsupported_version"
TOO_LARGE = "too_large"
UNKNOWN_TYPE = "unknown_type"
BAD_REQUEST = "bad_request"  # a payload field is missing or invalid; payload.field names it
BUSY = "busy"  # the inference queue is full; retry later
INFERENCE_FAILED = "inference_failed"  # the policy (or the server around it) failed on a valid request
UNAVAILABLE = "unavailable"  # the inference worker has stopped; the server must be restarted
INTERNAL_ERROR = "internal_error"  # the server failed on a valid hello or ping
ERROR_CODES = (BAD_MESSAGE, UNSUPPORTED_VERSION, TOO_LARGE, UNKNOWN_TYPE, BAD_REQUEST, BUSY, INFERENCE_FAILED,
               UNAVAILABLE, INTERNAL_ERROR)

# What ``hello`` announces about chunk continuation (``infer``'s ``prefix`` and ``delay_ticks``), with RTC's
# exponential soft mask; ``method`` is the served policy's (``policies.continuation``: repaint or x0_guidance).
CONTINUATION = {"fields": ["prefix", "delay_ticks"], "soft_mask": "rtc_exponential"}

MAX_IMAGE_SIDE = 4096
MAX_INSTRUCTION_CHARS = 2048
UNKNOWN_SEQ = -1


@dataclass
class Message:
    """``request_id`` (optional) names the logical request: every retry of it carries the same id and a new ``seq``,
    so the server runs it once and answers each attempt with the one result."""

    v: int
    type: str
    seq: int
    payload: dict[str, Any]
    request_id: Optional[int] = None


class ProtocolError(Exception):
    """A request the server refuses: becomes an ``error`` reply with ``code``, ``message`` and ``field``."""

    def __init__(self, code: str, message: str, field: Optional[str] = None, seq: int = UNKNOWN_SEQ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.seq = seq

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            payload["field"] = self.field
        return payload


def pack(type_: str, seq: int, payload: dict[str, Any], request_id: Optional[int] = None) -> bytes:
    message = {"v": PROTOCOL_VERSION, "type": type_, "seq": seq, "payload": payload}
    if request_id is not None:
        message["request_id"] = request_id
    return encode(message)


def error_reply(error: ProtocolError) -> bytes:
    return pack(ERROR, error.seq, error.payload())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def peek_seq(raw: bytes, max_keys: int = 16) -> int:
    """The envelope's ``seq`` read without decoding the rest (other values are skipped, not built), so that a message
    refused for its size can still be answered under its ``seq``; ``UNKNOWN_SEQ`` when it cannot be read."""
    unpacker = msgpack.Unpacker(io.BytesIO(raw), raw=False, strict_map_key=True, read_size=4096)
    try:
        for _ in range(min(unpacker.read_map_header(), max_keys)):
            if unpacker.unpack() == "seq":
                seq = unpacker.unpack()
                return seq if _is_int(seq) and 0 <= seq < 2**63 else UNKNOWN_SEQ
            unpacker.skip()
    except Exception:  # anything malformed: the seq is simply unknown
        return UNKNOWN_SEQ
    return UNKNOWN_SEQ


def unpack(raw: bytes) -> Message:
    """Bytes -> Message, or ``ProtocolError`` (carrying the seq whenever it could be read). Unknown envelope keys are
    ignored so that later minor versions can add some."""
    try:
        data = decode(raw)
    except CodecError as exc:
        raise ProtocolError(BAD_MESSAGE, str(exc)) from None
    if not isinstance(data, dict):
        raise ProtocolError(BAD_MESSAGE, f"message must be a msgpack map, got {type(data).__name__}")
    seq = data.get("seq")
    if not _is_int(seq) or not UNKNOWN_SEQ <= seq < 2**63:
        raise ProtocolError(BAD_MESSAGE, "seq: expected an integer in [0, 2^63)", field="seq")
    version = data.get("v")
    if not _is_int(version):
        raise ProtocolError(BAD_MESSAGE, "v: expected the protocol version as an integer", field="v", seq=seq)
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            UNSUPPORTED_VERSION,
            f"v: protocol version {version} is not supported; this side speaks {list(SUPPORTED_VERSIONS)}",
            field="v",
            seq=seq,
        )
    type_ = data.get("type")
    if not isinstance(type_, str):
        raise ProtocolError(BAD_MESSAGE, "type: expected a string", field="type", seq=seq)
    payload = data.get("payload", {})
    if not isinstance(payload, dict):
        raise ProtocolError(BAD_MESSAGE, "payload: expected a map", field="payload", seq=seq)
    request_id = data.get("request_id")
    if request_id is not None and (not _is_int(request_id) or not 0 <= request_id < 2**63):
        raise ProtocolError(BAD_MESSAGE, "request_id: expected an integer in [0, 2^63)", field="request_id", seq=seq)
    return Message(version, type_, seq, payload, request_id)


@dataclass
class InferRequest:
    """A validated ``infer`` payload: images by key, (H, W, 3) uint8 each; ``continuation`` only when the payload
    has a ``prefix``."""

    images: dict[str, np.ndarray]
    instruction: str
    proprio: Optional[np.ndarray]
    seed: Optional[int]
    continuation: Optional[ChunkContinuation] = None


def _bad(field: str, message: str, seq: int) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, f"{field}: {message}", field=field, seq=seq)


def validate_image(value: Any, field: str, seq: int) -> np.ndarray:
    problem = image_problem(value, max_side=MAX_IMAGE_SIDE)
    if problem is not None:
        raise _bad(field, problem, seq)
    return value


def validate_continuation(payload: dict[str, Any], conventions: Conventions, seq: int) -> Optional[ChunkContinuation]:
    """``prefix`` (P, action_dim) and ``delay_ticks`` (default 0) -> the continuation, or None without a prefix.
    ``delay_ticks`` alone may only be 0: without a prefix there are no actions to freeze."""
    prefix, delay_ticks = payload.get("prefix"), payload.get("delay_ticks")
    if prefix is None:
        if delay_ticks is None or (_is_int(delay_ticks) and delay_ticks == 0):
            return None
        raise _bad("payload.delay_ticks",
                   f"expected 0 or no delay_ticks without a prefix, got {bounded_repr(delay_ticks)}", seq)
    delay_ticks = 0 if delay_ticks is None else delay_ticks
    problem = continuation_problem(prefix, delay_ticks, conventions.chunk_length, conventions.action_dim)
    if problem is not None:
        raise _bad(f"payload.{problem[0]}", problem[1], seq)
    return ChunkContinuation(prefix, delay_ticks)


def validate_infer(payload: dict[str, Any], conventions: Conventions, seq: int) -> InferRequest:
    """The ``infer`` payload checked against the policy's ``conventions`` (image keys, chunk shape), or a
    ``bad_request`` naming the field."""
    image_keys = conventions.image_keys
    images = payload.get("images")
    if not isinstance(images, dict) or not images:
        raise _bad("payload.images", f"expected a map from camera key to image; required keys: {list(image_keys)}", seq)
    missing = [key for key in image_keys if key not in images]
    if missing:
        raise _bad(f"payload.images.{missing[0]}", f"missing; required keys: {list(image_keys)}", seq)
    checked = {key: validate_image(images[key], f"payload.images.{key}", seq) for key in image_keys}
    instruction = payload.get("instruction")
    problem = instruction_problem(instruction, max_chars=MAX_INSTRUCTION_CHARS)
    if problem is not None:
        raise _bad("payload.instruction", problem, seq)
    proprio = payload.get("proprio")
    if proprio is not None:
        if not isinstance(proprio, np.ndarray) or proprio.ndim != 1 or proprio.dtype.kind not in "fiu":
            raise _bad("payload.proprio", "expected a 1-D numeric array", seq)
        if not np.all(np.isfinite(proprio)):
            raise _bad("payload.proprio", "contains NaN or infinity", seq)
    seed = payload.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise _bad("payload.seed", "expected a non-negative integer", seq)
    return InferRequest(checked, instruction, proprio, seed, validate_continuation(payload, conventions, seq))
