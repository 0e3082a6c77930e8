"""vlart as a model server of allenai's vla-eval harness: ``vlart serve --protocol vla-eval``.

vla-eval's model-server wire protocol (version 1), spoken directly: one binary msgpack frame per message,
``{"type", "payload", "seq", "timestamp"}``. The client says ``hello`` (answered with ``hello`` under the same seq),
``episode_start`` (no answer; vlart clears the connection's ensemble), one ``observation`` per step (answered with
one ``action`` under its seq) and ``episode_end`` (no answer). Arrays use vla-eval's numpy dialect (string marker
keys, the same fields as vlart's codec), and images may come as ``{"__image__": True, "format": "png" | "jpeg" |
"raw", ...}``, which is how vla-eval sends every camera frame by default.

An observation: ``images`` (camera -> (H, W, 3) uint8; the policy's camera key, else the first camera: SIMPLER's
``primary``, LIBERO's ``agentview``) and ``task_description``. The action: ``actions`` (7,) float32, this step's
ensembled action (CogACT's protocol: a new chunk every step, adaptive ensemble), with the whole ``chunk`` (16, 7)
and ``server_timing``. Its conventions (announced in ``hello`` as ``action_spec``): delta xyz, delta Euler xyz,
gripper absolute with 1 = open; SIMPLER's Google robot needs CogACT's conversions on the benchmark side.

Errors are vla-eval ``error`` messages, ``{"error": "observation_failed: bad_request: images.primary: ..."}`` with
vlart's ``code`` and ``field`` beside it, under the seq of the message they answer; the connection stays open,
except after a frame that cannot be decoded at all.
"""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any, Optional

import numpy as np

from bridge import codec, protocol
from bridge.codec import CodecError, array_from_fields, unpack_with
from bridge.protocol import ProtocolError
from bridge.server.websocket import VlartSession, fail_connection
from runtime.core.safe_repr import bounded_repr, describe_exception

log = logging.getLogger("vlart.bridge.vla_eval")

PROTOCOL_VERSION = 1
HELLO, EPISODE_START, OBSERVATION, ACTION, EPISODE_END, ERROR = (
    "hello", "episode_start", "observation", "action", "episode_end", "error")
MESSAGE_TYPES = (HELLO, EPISODE_START, OBSERVATION, ACTION, EPISODE_END, ERROR)
IMAGE_TAG = "__image__"
MAX_IMAGE_PIXELS = protocol.MAX_IMAGE_SIDE**2
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG"}
MAX_HARNESS_VERSION_CHARS = 64


def _decode_image(obj: dict[str, Any]) -> np.ndarray:
    """vla-eval's encoded image -> (H, W, C) uint8, refusing sizes beyond vlart's limits before decompressing."""
    fmt, data = obj.get("format"), obj.get("data")
    if fmt == "raw":
        return array_from_fields(obj.get("dtype"), obj.get("shape"), data)
    if not isinstance(fmt, str) or fmt not in PILLOW_FORMATS:
        raise CodecError(f"image format must be png, jpeg or raw, got {bounded_repr(fmt)}")
    if not isinstance(data, bytes):
        raise CodecError("image data must be msgpack bin")
    from PIL import Image

    try:
        # Only the declared format's decoder: Pillow would otherwise open whatever format it recognises.
        with Image.open(io.BytesIO(data), formats=[PILLOW_FORMATS[fmt]]) as image:
            width, height = image.size
            if max(width, height) > protocol.MAX_IMAGE_SIDE:
                raise CodecError(f"image of {width}x{height} exceeds {protocol.MAX_IMAGE_SIDE} pixels a side")
            return np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    except CodecError:
        raise
    except Exception as exc:  # Pillow raises many kinds (SyntaxError, NotImplementedError, ...) on hostile bytes
        raise CodecError(f"image data is not a valid {fmt}: {describe_exception(exc)}") from None


def _object_hook(obj: dict[str, Any]) -> Any:
    if obj.get(IMAGE_TAG) is True:
        return _decode_image(obj)
    if obj.get(codec.ARRAY_TAG) is True:
        return array_from_fields(obj.get("dtype"), obj.get("shape"), obj.get("data"))
    return obj


def decode(frame: bytes) -> dict[str, Any]:
    """A vla-eval frame -> its message map (type, payload, seq), checked; ``ProtocolError`` otherwise."""
    try:
        message = unpack_with(frame, _object_hook)
    except CodecError as exc:
        raise ProtocolError(protocol.BAD_MESSAGE, str(exc)) from None
    if not isinstance(message, dict):
        raise ProtocolError(protocol.BAD_MESSAGE, f"message must be a msgpack map, got {type(message).__name__}")
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ProtocolError(protocol.BAD_MESSAGE, "seq: expected an integer", field="seq")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ProtocolError(protocol.UNKNOWN_TYPE, f"type: expected one of {list(MESSAGE_TYPES)}, got "
                            f"{bounded_repr(kind)}", field="type", seq=seq)
    if not isinstance(message.get("payload"), dict):
        raise ProtocolError(protocol.BAD_MESSAGE, "payload: expected a map", field="payload", seq=seq)
    return message


def encode(kind: str, seq: int, payload: dict[str, Any]) -> bytes:
    return codec.encode({"type": kind, "payload": payload, "seq": seq, "timestamp": time.time()})


def error_message(error: ProtocolError, stage: str, seq: int) -> bytes:
    where = f"{error.field}: " if error.field and not error.message.startswith(error.field) else ""
    payload: dict[str, Any] = {"error": f"{stage}: {error.code}: {where}{error.message}", "code": error.code}
    if error.field is not None:
        payload["field"] = error.field
    return encode(ERROR, seq, payload)


def _dim(name: str, dims: int, fmt: str, description: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "dims": dims, "format": fmt}
    if description:
        spec["description"] = description
    return spec


ACTION_SPEC = {
    "position": _dim("position", 3, "delta_xyz"),
    "rotation": _dim("rotation", 3, "euler_xyz", "delta roll, pitch, yaw"),
    "gripper": _dim("gripper", 1, "continuous_01", "absolute: 1 = open, 0 = closed"),
}
OBSERVATION_SPEC = {"image": _dim("image", 0, "rgb_hwc_uint8"), "language": _dim("language", 0, "language")}


class VlaEvalProtocol:
    name = "vla-eval"
    health_path = "/health"

    def __init__(self, model_name: str, image_key: str) -> None:
        self.model_name = model_name
        self.image_key = image_key

    def health_body(self, problem: Optional[str]) -> tuple[str, str]:
        status = {"status": "ok"} if problem is None else {"status": "unavailable", "reason": problem}
        return json.dumps(status), "application/json"

    def hello_payload(self, harness_version: Any, seq: int) -> dict[str, Any]:
        """The answer to ``hello``, echoing the harness's version once it is checked to be a short string."""
        if harness_version is not None and (not isinstance(harness_version, str)
                                            or len(harness_version) > MAX_HARNESS_VERSION_CHARS):
            raise ProtocolError(protocol.BAD_REQUEST, f"harness_version: expected a string of at most "
                                f"{MAX_HARNESS_VERSION_CHARS} characters, got {bounded_repr(harness_version)}",
                                field="harness_version", seq=seq)
        return {"harness_version": harness_version, "protocol_version": PROTOCOL_VERSION,
                "model_server": f"vlart ({self.model_name})", "capabilities": {},
                "action_spec": ACTION_SPEC, "observation_spec": OBSERVATION_SPEC}

    def to_infer_payload(self, observation: dict[str, Any], seq: int) -> tuple[dict[str, Any], str]:
        """A vla-eval observation -> (vlart infer payload, the camera its image came from)."""
        images = observation.get("images")
        if not isinstance(images, dict) or not images:
            raise ProtocolError(protocol.BAD_REQUEST, "images: expected a map from camera name to (H, W, 3) uint8",
                                field="images", seq=seq)
        camera = self.image_key if self.image_key in images else next(iter(images))
        instruction = observation.get("task_description")
        payload: dict[str, Any] = {"images": {self.image_key: images[camera]}, "instruction": instruction}
        if observation.get("seed") is not None:
            payload["seed"] = observation["seed"]
        return payload, camera

    def field_name(self, error: ProtocolError, camera: str) -> ProtocolError:
        names = {f"payload.images.{self.image_key}": f"images.{camera}", "payload.instruction": "task_description",
                 "payload.seed": "seed"}
        field = names.get(error.field or "", error.field)
        message = error.message.replace(error.field, field, 1) if error.field and field else error.message
        return ProtocolError(error.code, message, field=field, seq=error.seq)

    async def serve_connection(self, websocket: Any, session: VlartSession, max_message_bytes: int) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in websocket:
                reply, broken = await self._answer(frame, session, max_message_bytes)
                if reply is not None:
                    await websocket.send(reply)
                if broken:
                    await fail_connection(websocket, 1003, "the frame could not be decoded; see the error message")
                    return
        except ConnectionClosed:
            return

    async def _answer(self, frame: Any, session: VlartSession, max_message_bytes: int) -> tuple[Optional[bytes], bool]:
        """(reply or None, whether the connection is broken) for one frame; never raises: a failure becomes an
        ``internal_error`` message under the frame's seq when it can be read."""
        try:
            return await self._reply(frame, session, max_message_bytes)
        except Exception as exc:
            log.exception("vla-eval frame failed")
            seq = protocol.peek_seq(frame) if isinstance(frame, bytes) else protocol.UNKNOWN_SEQ
            error = ProtocolError(protocol.INTERNAL_ERROR, describe_exception(exc))
            return error_message(error, "internal_error", seq), False

    async def _reply(self, frame: Any, session: VlartSession, max_message_bytes: int) -> tuple[Optional[bytes], bool]:
        if isinstance(frame, str):
            error = ProtocolError(protocol.BAD_MESSAGE, "expected a binary msgpack frame, got text")
            return error_message(error, "bad_message", protocol.UNKNOWN_SEQ), True
        if len(frame) > max_message_bytes:
            error = ProtocolError(protocol.TOO_LARGE,
                                  f"frame of {len(frame)} bytes exceeds the limit of {max_message_bytes}")
            return error_message(error, "message_refused", protocol.peek_seq(frame)), False
        try:
            message = decode(frame)
        except ProtocolError as error:
            return error_message(error, "message_refused", error.seq), error.code == protocol.BAD_MESSAGE
        kind, seq, payload = message["type"], message["seq"], message["payload"]
        if kind == HELLO:
            try:
                return encode(HELLO, seq, self.hello_payload(payload.get("harness_version"), seq)), False
            except ProtocolError as error:
                return error_message(error, "hello_failed", seq), False
        if kind in (EPISODE_START, EPISODE_END):
            answer = await session.call(protocol.RESET, {})
            if answer.error is not None and kind == EPISODE_START:
                return error_message(answer.error, "episode_start_failed", seq), False
            return None, False
        if kind != OBSERVATION:  # a client's action or error: nothing to answer, as vla-eval's servers do
            return None, False
        try:
            request, camera = self.to_infer_payload(payload, seq)
        except ProtocolError as error:
            return error_message(error, "observation_failed", seq), False
        started = time.perf_counter()
        answer = await session.call(protocol.INFER, request, len(frame))
        if answer.error is not None:
            return error_message(self.field_name(answer.error, camera), "observation_failed", seq), False
        result = answer.payload
        timing = dict(result.get("server_timing", {}))
        timing["infer_ms"] = round((time.perf_counter() - started) * 1e3, 4)
        action = {"actions": np.asarray(result["action"], dtype=np.float32),
                  "chunk": np.asarray(result["actions"], dtype=np.float32), "server_timing": timing}
        return encode(ACTION, seq, action), False
