"""ZeroMQ CURVE key pairs for the server and its clients (pyzmq's ``zmq.auth`` certificate files).

Layout of a key directory made by ``vlart keys generate DIR --client NAME ...``::

    DIR/server.key, DIR/server.key_secret      the server's pair (give server.key to clients)
    DIR/clients/NAME.key, NAME.key_secret      each client's pair (give a robot its own two files)
    DIR/authorized/NAME.key                    public keys the server accepts; delete one to revoke it

Secret key files are written readable by their owner only (0600). A running ``vlart serve`` re-reads
``authorized/`` when it changes (within about a second): a deleted key is refused from then on, even on a connection
made before, and an added key is accepted without a restart.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

SERVER_NAME = "server"
SECRET_MODE = 0o600
CLIENTS_DIR = "clients"
AUTHORIZED_DIR = "authorized"


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized_dir: Path


@dataclass(frozen=True)
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def _create_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """(public, secret) key files; the secret one is made owner-only before any key is written into it."""
    secret = directory / f"{name}.key_secret"
    secret.touch(mode=SECRET_MODE, exist_ok=False)
    os.chmod(secret, SECRET_MODE)  # touch's mode is filtered by the umask
    public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    return Path(public_file), Path(secret_file)


def generate_keys(directory: str | Path, clients: list[str]) -> list[Path]:
    """Create the server pair (if absent) and one pair per client, authorising each client. Returns the files made."""
    directory = Path(directory)
    made: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / f"{SERVER_NAME}.key_secret").exists():
        made.extend(_create_pair(directory, SERVER_NAME))
    (directory / CLIENTS_DIR).mkdir(exist_ok=True)
    (directory / AUTHORIZED_DIR).mkdir(exist_ok=True)
    for name in clients:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"--client: {name!r} is not a usable key name")
        if (directory / CLIENTS_DIR / f"{name}.key_secret").exists():
            raise FileExistsError(f"--client: a key pair named {name!r} already exists in {directory / CLIENTS_DIR}")
        public, secret = _create_pair(directory / CLIENTS_DIR, name)
        authorized = directory / AUTHORIZED_DIR / f"{name}.key"
        shutil.copyfile(public, authorized)
        made.extend([public, secret, authorized])
    return made


def _load(path: Path, what: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no key file at {path} (make one with `vlart keys generate`)")
    public, secret = zmq.auth.load_certificate(str(path))
    return public, secret


def load_server_keys(directory: str | Path) -> ServerKeys:
    directory = Path(directory)
    public, secret = _load(directory / f"{SERVER_NAME}.key_secret", "--curve-keys")
    authorized = directory / AUTHORIZED_DIR
    if not authorized.is_dir():
        raise FileNotFoundError(f"--curve-keys: {authorized} is missing; it holds the client public keys to accept")
    assert secret is not None
    return ServerKeys(public, secret, authorized)


def load_client_keys(directory: str | Path, client: str) -> ClientKeys:
    """A client's pair and the server's public key from a key directory laid out as above."""
    directory = Path(directory)
    public, secret = _load(directory / CLIENTS_DIR / f"{client}.key_secret", "--curve-client")
    server_public, _ = _load(directory / f"{SERVER_NAME}.key", "--curve-keys")
    if secret is None:
        raise ValueError(f"--curve-client: {directory / CLIENTS_DIR / client}.key_secret holds no secret key")
    return ClientKeys(public, secret, server_public)
