"""An endpoint that openpi's ``openpi-client`` (``WebsocketClientPolicy``) can use: ``vlart serve --protocol openpi``.

openpi's wire protocol: on connect the server sends a metadata frame; then each binary frame from the client is an
observation and each binary frame back its result, both msgpack with openpi's numpy dialect (arrays as
``{b"__ndarray__": True, b"data", b"dtype", b"shape"}``, numpy scalars as ``{b"__npgeneric__": True, ...}``, the
marker keys as bytes). An error is a text frame, which openpi-client raises as ``RuntimeError``.

Observation keys (``OBSERVATION_KEYS``): ``observation/image`` (H, W, 3) uint8 and ``prompt`` (str) are required;
``seed`` (int) makes the sample reproducible; ``reset`` (true) clears this connection's ensemble first (openpi's
``reset()`` sends nothing, so a new episode on the same connection asks for it this way); ``observation/state`` and
the other ``observation/...`` keys openpi's examples send (wrist camera, joints) are accepted and not used by CogACT.
The reply: ``actions`` (16, 7) float32 unnormalised, ``action`` (7,) the ensembled action for this step,
``server_timing`` (``infer_ms``, ``prev_total_ms`` as openpi's server reports them, and vlart's stages).

Errors, as text frames starting with vlart's error code: ``bad_request (observation/image): expected dtype uint8,
got float32``. A request's error leaves the connection open; a frame that cannot be decoded (not msgpack, a refused
dtype, a text frame) gets its error and then the close openpi's server uses (1011), since the stream is broken.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional

import msgpack
import numpy as np

from bridge import protocol
from bridge.codec import CodecError, array_from_fields, unpack_with
from bridge.protocol import ProtocolError
from bridge.server.websocket import CLOSE_INTERNAL_ERROR, VlartSession, fail_connection
from runtime.core.safe_repr import describe_exception

log = logging.getLogger("vlart.bridge.openpi")

IMAGE_KEY = "observation/image"
PROMPT_KEY = "prompt"
OBSERVATION_KEYS = {IMAGE_KEY: "(H, W, 3) uint8, the camera CogACT sees (required)",
                    PROMPT_KEY: "the instruction, a non-empty string (required)",
                    "seed": "a non-negative integer: the same seed, the same sample (optional)",
                    "reset": "true: clear this connection's action ensemble first (optional)",
                    "observation/state": "proprioception, a 1-D numeric array (optional; CogACT ignores it)"}
NDARRAY, NPGENERIC = b"__ndarray__", b"__npgeneric__"


def _object_hook(obj: dict[Any, Any]) -> Any:
    if obj.get(NDARRAY) is True:
        return array_from_fields(obj.get(b"dtype"), obj.get(b"shape"), obj.get(b"data"))
    if obj.get(NPGENERIC) is True:
        value = obj.get(b"data")
        if not isinstance(value, (bool, int, float)):
            raise CodecError(f"numpy scalar data must be a number, got {type(value).__name__}")
        return value
    return obj


def decode(frame: bytes) -> Any:
    """An openpi-client frame -> values with numpy arrays (read-only), or ``CodecError``."""
    return unpack_with(frame, _object_hook)


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        return {NDARRAY: True, b"data": array.tobytes(), b"dtype": array.dtype.str, b"shape": list(array.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise CodecError(f"cannot encode object of type {type(obj).__name__}")


def encode(value: Any) -> bytes:
    return msgpack.packb(value, default=_encode_default, use_bin_type=True)


def error_text(error: ProtocolError) -> str:
    where = f" ({error.field.removeprefix('payload.')})" if error.field else ""
    return f"{error.code}{where}: {error.message}"


def _bad(field: str, message: str) -> ProtocolError:
    return ProtocolError(protocol.BAD_REQUEST, f"{field}: {message}", field=field)


class OpenPIProtocol:
    name = "openpi"
    health_path = "/healthz"

    def __init__(self, metadata: dict[str, Any], image_key: str) -> None:
        """``metadata``: the frame sent on connect (the model and its conventions); ``image_key``: the vlart
        camera key the observation's image goes to."""
        self.metadata = metadata
        self.image_key = image_key

    def health_body(self, problem: Optional[str]) -> tuple[str, str]:
        return ("OK\n" if problem is None else f"UNAVAILABLE: {problem}\n"), "text/plain"

    def to_infer_payload(self, observation: Any) -> tuple[dict[str, Any], bool]:
        """An openpi observation -> (vlart infer payload, whether to reset first); ``bad_request`` naming the key."""
        if not isinstance(observation, dict):
            raise ProtocolError(protocol.BAD_MESSAGE, f"expected an observation map, got {type(observation).__name__}")
        if IMAGE_KEY not in observation:
            raise _bad(IMAGE_KEY, f"missing; expected keys: {json.dumps(OBSERVATION_KEYS)}")
        if PROMPT_KEY not in observation:
            raise _bad(PROMPT_KEY, "missing; expected the instruction as a string")
        payload: dict[str, Any] = {"images": {self.image_key: observation[IMAGE_KEY]},
                                   "instruction": observation[PROMPT_KEY]}
        if observation.get("seed") is not None:
            payload["seed"] = observation["seed"]
        reset = observation.get("reset", False)
        if not isinstance(reset, bool):
            raise _bad("reset", f"expected true or false, got {type(reset).__name__}")
        return payload, reset

    def field_name(self, error: ProtocolError) -> ProtocolError:
        """A vlart error with its field renamed to the openpi key the client sent."""
        names = {f"payload.images.{self.image_key}": IMAGE_KEY, "payload.instruction": PROMPT_KEY,
                 "payload.seed": "seed"}
        if error.field in names:
            field = names[error.field]
            return ProtocolError(error.code, error.message.replace(error.field, field, 1), field=field)
        return error

    async def serve_connection(self, websocket: Any, session: VlartSession, max_message_bytes: int) -> None:
        from websockets.exceptions import ConnectionClosed

        await websocket.send(encode(self.metadata))
        previous_total_ms: Optional[float] = None
        try:
            async for frame in websocket:
                started = time.perf_counter()
                reply, broken = await self._answer(frame, session, max_message_bytes, previous_total_ms)
                await websocket.send(reply)
                if broken:
                    await fail_connection(websocket, CLOSE_INTERNAL_ERROR,
                                          "the frame could not be decoded; see the error frame")
                    return
                previous_total_ms = (time.perf_counter() - started) * 1e3
        except ConnectionClosed:
            return

    async def _answer(self, frame: Any, session: VlartSession, max_message_bytes: int,
                      previous_total_ms: Optional[float]) -> tuple[Any, bool]:
        """(reply frame, whether the connection is broken) for one frame; never raises: a failure becomes an
        ``internal_error`` frame."""
        try:
            return await self._reply(frame, session, max_message_bytes, previous_total_ms)
        except Exception as exc:
            log.exception("openpi frame failed")
            return error_text(ProtocolError(protocol.INTERNAL_ERROR, describe_exception(exc))), False

    async def _reply(self, frame: Any, session: VlartSession, max_message_bytes: int,
                     previous_total_ms: Optional[float]) -> tuple[Any, bool]:
        if isinstance(frame, str):
            return error_text(ProtocolError(protocol.BAD_MESSAGE, "expected a binary msgpack frame, got text")), True
        if len(frame) > max_message_bytes:
            error = ProtocolError(protocol.TOO_LARGE,
                                  f"frame of {len(frame)} bytes exceeds the limit of {max_message_bytes}")
            return error_text(error), False
        try:
            observation = decode(frame)
        except CodecError as exc:
            return error_text(ProtocolError(protocol.BAD_MESSAGE, str(exc))), True
        try:
            payload, reset = self.to_infer_payload(observation)
        except ProtocolError as error:
            return error_text(error), False
        if reset:
            answer = await session.call(protocol.RESET, {})
            if answer.error is not None:
                return error_text(answer.error), False
        started = time.perf_counter()
        answer = await session.call(protocol.INFER, payload, len(frame))
        if answer.error is not None:
            return error_text(self.field_name(answer.error)), False
        result = answer.payload
        timing = dict(result.get("server_timing", {}))
        timing["infer_ms"] = round((time.perf_counter() - started) * 1e3, 4)
        if previous_total_ms is not None:
            timing["prev_total_ms"] = round(previous_total_ms, 4)
        reply = {"actions": np.asarray(result["actions"], dtype=np.float32),
                 "action": np.asarray(result["action"], dtype=np.float32), "server_timing": timing}
        return encode(reply), False
