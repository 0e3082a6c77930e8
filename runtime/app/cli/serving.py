"""``vlart serve``, ``client``, ``keys``: the policy over ZeroMQ, a one-shot robot client, CURVE keys."""

from __future__ import annotations

import argparse
import json
import logging
import os

from runtime.app.cli.common import load_image, model_options
from runtime.app.policy_service import (DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH, DEFAULT_MAX_INFLIGHT_MB,
                                        DEFAULT_MAX_MESSAGE_MB, DEFAULT_ZMQ_BIND, ServerSpec, start_policy_server)

DEFAULT_MAX_CONNECTIONS = 64  # bridge.server.websocket's
DEFAULT_WS_BIND = "ws://127.0.0.1:8000"  # openpi's and vla-eval's port
PROTOCOLS = ("zmq", "openpi", "vla-eval")


def cmd_serve(args: argparse.Namespace) -> int:
    import signal

    websocket = args.protocol != "zmq"
    bind = args.bind or (DEFAULT_WS_BIND if websocket else DEFAULT_ZMQ_BIND)
    if websocket:  # the flags are checked before the model is loaded
        from bridge.server.websocket import parse_ws_bind

        parse_ws_bind(bind)
        if args.curve_keys:
            raise ValueError("--curve-keys: CURVE secures the ZeroMQ protocol; put a websocket endpoint behind TLS")
    # Behind a websocket endpoint the server takes requests in process (submit); its ZeroMQ side stays private.
    spec = ServerSpec(model=args.model, preset=args.preset, plan=args.plan, unnorm_key=args.unnorm_key,
                      device=args.device, overrides=tuple(args.set or ()), budget=args.budget,
                      bind=f"inproc://vlart-policy-{os.getpid()}" if websocket else bind, max_batch=args.max_batch,
                      batch_wait_ms=args.batch_wait_ms, warmup=args.warmup, curve_keys=args.curve_keys,
                      max_message_mb=args.max_message_mb, max_inflight_mb=args.max_inflight_mb)
    server = start_policy_server(spec)
    signal.signal(signal.SIGINT, lambda *_: server.request_stop())
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    endpoint = None
    if websocket:
        endpoint = make_websocket_endpoint(args.protocol, bind, server.policy, server,
                                           int(args.max_message_mb * 2**20), args.max_connections).start()
        print(f"vlart serve: ready on {endpoint.url} ({args.protocol})", flush=True)
    else:
        print(f"vlart serve: ready on {server.endpoint}" + (" (CURVE)" if args.curve_keys else ""), flush=True)
    server.join()  # until a signal stops it, or a thread it needs has died
    if endpoint is not None:
        endpoint.stop()
    if server.failure is not None:  # never a clean exit: the supervisor must see that the server died
        server.stop()
        print(f"vlart serve: failed: {server.failure}", flush=True)
        return 1
    print("vlart serve: stopped", flush=True)
    return 0


def make_websocket_endpoint(protocol_name: str, bind: str, policy, server, max_message_bytes: int,
                            max_connections: int = DEFAULT_MAX_CONNECTIONS):
    """The ``openpi`` or ``vla-eval`` endpoint on ``bind`` (ws://HOST:PORT) in front of ``server`` (started)."""
    from bridge.server.websocket import WebsocketEndpoint, parse_ws_bind

    host, port = parse_ws_bind(bind)
    image_key = policy.conventions.image_keys[0]
    if protocol_name == "openpi":
        from bridge.server.openpi import OBSERVATION_KEYS, OpenPIProtocol

        metadata = {"server": "vlart", "model": policy.metadata["name"], "preset": policy.metadata["preset"],
                    "conventions": policy.conventions.to_dict(), "action_horizon": policy.conventions.chunk_length,
                    "observation_keys": OBSERVATION_KEYS}
        handler = OpenPIProtocol(metadata, image_key)
    else:
        from bridge.server.vla_eval import VlaEvalProtocol

        handler = VlaEvalProtocol(policy.metadata["name"], image_key)
    return WebsocketEndpoint(handler, server, host, port, max_message_bytes=max_message_bytes,
                             max_connections=max_connections)


def cmd_client(args: argparse.Namespace) -> int:
    from bridge.client import PolicyClient
    from bridge.keys import load_client_keys

    if bool(args.curve_keys) != bool(args.curve_client):
        raise ValueError("--curve-keys and --curve-client go together")
    curve = load_client_keys(args.curve_keys, args.curve_client) if args.curve_keys else None
    image = load_image(args.image)
    with PolicyClient(args.connect, timeout_s=args.timeout, retries=args.retries, curve=curve) as client:
        info = client.hello()
        result = client.infer({info["conventions"]["image_keys"][0]: image}, args.instruction, seed=args.seed)
    if args.json:
        print(json.dumps({
            "model": info["model"],
            "conventions": info["conventions"],
            "actions": result.actions.tolist(),
            "normalized_actions": result.normalized_actions.tolist(),
            "action": result.action.tolist(),
            "server_timing": result.server_timing,
            "round_trip_ms": round(result.round_trip_ms, 3),
        }))
        return 0
    names = info["conventions"]["action_names"]
    print(f"{info['server']} protocol {info['protocol']} at {args.connect}: model {info['model']['name']}")
    print("step " + " ".join(f"{n:>9}" for n in names))
    for i, row in enumerate(result.actions):
        print(f"{i:>4} " + " ".join(f"{v:>9.5f}" for v in row))
    print("action to execute: " + " ".join(f"{v:.5f}" for v in result.action))
    print(f"round trip {result.round_trip_ms:.1f} ms; server: "
          + ", ".join(f"{k} {v:.1f}" for k, v in result.server_timing.items()))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from bridge.keys import generate_keys

    for path in generate_keys(args.directory, args.client or ["client"]):
        print(path)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve a policy over ZeroMQ",
                                parents=[model_options(presets="one", plan=True, device=True, unnorm_key=True,
                                                       compile="flag")])
    serve.add_argument("--protocol", choices=PROTOCOLS, default="zmq",
                       help="zmq: vlart's protocol (docs/protocol.md; default); openpi: a websocket endpoint for "
                            "openpi-client; vla-eval: a model server for allenai's vla-eval harness")
    serve.add_argument("--bind", default=None,
                       help=f"endpoint (default {DEFAULT_ZMQ_BIND} for zmq, {DEFAULT_WS_BIND} for the websocket "
                            "protocols)")
    serve.add_argument("--curve-keys", default=None, metavar="DIR", help="require CURVE: keys from `vlart keys generate`")
    serve.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_MB,
                       help=f"largest request accepted (MiB; default {DEFAULT_MAX_MESSAGE_MB:g}): larger ones get "
                            "too_large, those over twice it close the connection unread")
    serve.add_argument("--max-inflight-mb", type=float, default=DEFAULT_MAX_INFLIGHT_MB,
                       help=f"most bytes of requests held at once, queued or running, over all clients (MiB; default "
                            f"{DEFAULT_MAX_INFLIGHT_MB:g}): beyond it requests get busy")
    serve.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                       help=f"websocket protocols: most connections at once (default {DEFAULT_MAX_CONNECTIONS}); more "
                            "are refused with HTTP 503")
    serve.add_argument("--warmup", type=int, default=1, help="forward passes before serving (default 1)")
    serve.add_argument("--budget", default=None, help="latency budget YAML checked on every inference")
    serve.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                       help=f"most clients' requests run as one forward pass (default {DEFAULT_MAX_BATCH}; 1: no "
                            "batching)")
    serve.add_argument("--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_MS,
                       help=f"how long a batch waits for active clients that have not sent yet (default "
                            f"{DEFAULT_BATCH_WAIT_MS:g}; a lone client never waits; 0: only what is queued)")
    serve.set_defaults(func=cmd_serve, log_level=logging.INFO)  # a server logs its clients and requests

    client = commands.add_parser("client", help="call a running server once and print the actions")
    client.add_argument("--connect", default="tcp://127.0.0.1:5555", help="server endpoint")
    client.add_argument("--image", required=True, help="RGB image file")
    client.add_argument("--instruction", required=True)
    client.add_argument("--seed", type=int, default=None)
    client.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt (default 30)")
    client.add_argument("--retries", type=int, default=1)
    client.add_argument("--curve-keys", default=None, metavar="DIR", help="key directory (holds server.key)")
    client.add_argument("--curve-client", default=None, metavar="NAME", help="this client's key pair in DIR/clients")
    client.add_argument("--json", action="store_true")
    client.set_defaults(func=cmd_client)

    keys = commands.add_parser("keys", help="CURVE key pairs for the server and its clients")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    generate = keys_commands.add_parser("generate", help="make a server key pair and client key pairs")
    generate.add_argument("directory")
    generate.add_argument("--client", action="append", help="client name (repeatable; default: client)")
    generate.set_defaults(func=cmd_keys)
