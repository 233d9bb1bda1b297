"""How this device's own commands reach its running node: ``DATA_DIR/node.json``.

``meshdex serve`` holds the data directory's writer lock for as long as it runs, which is what
keeps a device syncing. Without this, every writing command (``add``, ``rm``, ``build``,
``sync``, ``compact``) beside a serving node failed with "another process is writing" unless
the person created a token and passed ``--node``. Instead, ``serve`` publishes where it
listens for this device and a token of its own, and a command that finds the lock held by that
process goes through the node (a reading one too: the node's model is loaded already).

- The token is random, made at the first ``serve`` and kept in ``node.token`` (0600, in the
  0700 data directory), so a long-running client (``meshdex mcp``) goes on working when the
  node restarts; it has the admin scope: whoever can read it can read the store and
  ``tokens.json`` beside it already. It is no token of ``tokens.json``, so it never appears in
  ``token list``, and the node accepts it only on this device's behalf: clients elsewhere
  still need their own token.
- The address is a unix socket in the data directory (``node.sock``, 0600), so it works whatever
  the node's own ``listen`` is (TLS on the LAN included); where the path is too long for a
  unix socket, the node's ``listen`` when it is plaintext on loopback; else nothing is
  published, and writing commands get the lock error as before (``--node`` still works).
- A command trusts the file only while its pid is alive and is the pid that holds the writer
  lock, so a file left by a node killed with -9 is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from meshdex.index.errors import FailedPrecondition
from meshdex.node.lock import lock_holder
from meshdex.node.paths import write_private_file

logger = logging.getLogger(__name__)

ENDPOINT_FILE_NAME = "node.json"
SOCKET_FILE_NAME = "node.sock"
TOKEN_FILE_NAME = "node.token"
OWNER_TOKEN_PREFIX = "mdx_local_"
# sockaddr_un holds 108 bytes with the terminating NUL; gRPC wants a little room as well.
MAX_SOCKET_PATH_BYTES = 100


@dataclass(frozen=True, kw_only=True)
class LocalEndpoint:
    """Where the node serving a data directory takes this device's own commands."""

    pid: int
    address: str  # "unix:/.../node.sock" or a loopback "HOST:PORT"
    token: str


def owner_token(data_dir: Path) -> str:
    """The data directory's own token (``node.token``), made on first use."""
    path = data_dir / TOKEN_FILE_NAME
    if not path.exists():
        write_private_file(path, (OWNER_TOKEN_PREFIX + secrets.token_urlsafe(32)).encode(),
                           exclusive=True)  # another process's, if it made one meanwhile
    token = path.read_text().strip()
    if not token.startswith(OWNER_TOKEN_PREFIX):
        raise FailedPrecondition(f"{path} does not hold a meshdex token", path=path,
                                 hint="delete it: the next `meshdex serve` makes a new one")
    return token


def socket_path(data_dir: Path) -> Path | None:
    """The node's unix socket for this data directory, or None where the path is too long."""
    path = data_dir / SOCKET_FILE_NAME
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH_BYTES else None


def publish(data_dir: Path, endpoint: LocalEndpoint) -> None:
    """Write ``node.json`` atomically, 0600."""
    body = {"pid": endpoint.pid, "address": endpoint.address, "token": endpoint.token}
    write_private_file(data_dir / ENDPOINT_FILE_NAME, json.dumps(body).encode())


def withdraw(data_dir: Path, pid: int) -> None:
    """Remove ``node.json`` and the socket if process ``pid`` published them (at shutdown)."""
    published = _read(data_dir)
    if published is None or published.pid != pid:
        return
    for name in (ENDPOINT_FILE_NAME, SOCKET_FILE_NAME):
        (data_dir / name).unlink(missing_ok=True)


def running_endpoint(data_dir: Path) -> LocalEndpoint | None:
    """The endpoint of the node that holds ``data_dir``'s writer lock now, if it published one.

    The lock is probed only once the file names a live process, so a command beside no node
    never touches the lock.
    """
    published = _read(data_dir)
    if published is None:
        return None
    try:
        os.kill(published.pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's process
        return None
    return published if lock_holder(data_dir) == published.pid else None


def _read(data_dir: Path) -> LocalEndpoint | None:
    path = data_dir / ENDPOINT_FILE_NAME
    try:
        body = json.loads(path.read_text())
        return LocalEndpoint(pid=int(body["pid"]), address=str(body["address"]),
                             token=str(body["token"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("ignoring %s: %s", path, error)
        return None
