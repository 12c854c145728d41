"""Connecting this process to a Ray cluster, or saying at once why it cannot.

``METAREP_RAY_ADDRESS`` names the cluster, in one of Ray's two forms:

- ``ray://HOST:PORT``: the head's Ray Client server (``ray start --head
  --ray-client-server-port PORT``; Ray's default is 10001). The usual form for an app
  server or a laptop that is not itself a node of the cluster.
- ``HOST:PORT``: the head's GCS address (``ray start --head --port PORT``; default
  6379). Only for a process running on a node of the cluster (it talks to that node's
  raylet).

:func:`connect` first opens a plain TCP connection to ``HOST:PORT`` with a short timeout,
so an unreachable head is a :class:`ClusterUnavailable` within seconds (a page says so
and trains in the local pool) rather than Ray's own retries, which take a minute. Only
then is Ray imported and ``ray.init`` called, once per process (later calls reuse the
connection), with the driver's log forwarding and usage statistics off.

The cluster's nodes must be able to import ``metarep_core`` with the same torch: they
run the project's image (or the same virtual environment) and are started with its
root on ``PYTHONPATH``.
"""
from __future__ import annotations

import os
import socket
import threading

from ..errors import MetaRepError

ENV_VAR = "METAREP_RAY_ADDRESS"
CONNECT_TIMEOUT_S = 3.0  # TCP connect to the head: a live head on a LAN answers in ms
CLIENT_SCHEME = "ray://"

_lock = threading.Lock()
_connected: str | None = None


class ClusterUnavailable(MetaRepError):
    """The Ray cluster named by the user cannot be used (malformed address, head not
    reachable, Ray refused the connection). The message names the address and what to do."""


def ray_address(environ=None) -> str | None:
    """The cluster address from ``METAREP_RAY_ADDRESS`` (None when unset or blank)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return value.strip() or None


def parse_address(address: str) -> tuple[str, str, int]:
    """``(kind, host, port)`` of ``address``: kind ``"client"`` for ``ray://HOST:PORT``,
    ``"gcs"`` for ``HOST:PORT``. ClusterUnavailable names a malformed one."""
    allowed = "ray://HOST:PORT (the head's Ray Client server) or HOST:PORT (its GCS address)"
    if not isinstance(address, str) or not address.strip():
        raise ClusterUnavailable(f"the Ray cluster address is empty; give {allowed}")
    text = address.strip()
    kind = "gcs"
    rest = text
    if text.startswith(CLIENT_SCHEME):
        kind, rest = "client", text[len(CLIENT_SCHEME):]
    elif "://" in text:
        raise ClusterUnavailable(f"Ray cluster address {address!r} has an unknown scheme; give {allowed}")
    if rest.startswith("["):  # [IPv6]:port
        host, sep, port_text = rest[1:].partition("]:")
    else:
        host, sep, port_text = rest.rpartition(":")
    if not sep or not host or "/" in rest or " " in rest:
        raise ClusterUnavailable(f"Ray cluster address {address!r} is not of the form {allowed}")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise ClusterUnavailable(f"Ray cluster address {address!r} has port {port_text!r}; "
                                 "a port is a number between 1 and 65535")
    return kind, host, port


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to ``address``'s host and port within
    ``timeout_s`` seconds; ClusterUnavailable saying what to do when that fails."""
    _, host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except socket.timeout:
        reason = f"no answer within {timeout_s:g} s"
    except OSError as err:
        reason = err.strerror or type(err).__name__
    else:
        return
    raise ClusterUnavailable(
        f"the Ray cluster at {address} cannot be reached ({reason}). Start its head "
        f"(ray start --head ...), check the address and firewall, or unset {ENV_VAR} "
        "(drop --cluster) to run on this machine")


def connected_address() -> str | None:
    """The address this process is connected to, or None."""
    return _connected


def describe_error(exc: BaseException) -> str:
    """A Ray exception as one readable line: its type in words, and the first line of
    its message that says something (Ray's messages carry tracebacks and hints)."""
    name = type(exc).__name__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    words = {"ActorDiedError": "the Ray worker running the job died",
             "RayActorError": "the Ray worker running the job died",
             "ActorUnavailableError": "the Ray worker running the job is unreachable",
             "WorkerCrashedError": "the Ray worker process crashed",
             "NodeDiedError": "the Ray node running the job died",
             "ObjectLostError": "a result held by a lost Ray worker is gone",
             "OwnerDiedError": "a result held by a lost Ray worker is gone",
             "GetTimeoutError": "the Ray cluster did not answer in time",
             "ConnectionError": "the connection to the Ray cluster was lost"}
    head = words.get(name, f"{name} on the Ray cluster")
    text = str(exc)
    if "creation task" in text:  # the actor's __init__ raised: that error is the news
        errors = [line for line in lines if "Error" in line.split(":")[0]]
        return "the job could not start on the Ray cluster: " + (errors[-1] if errors else lines[-1])
    # Ray's text for a killed worker: "... The actor died unexpectedly before finishing
    # this task. ... The process that ran it exited (SIGKILL ...)" - keep the cause.
    if any(line.startswith("Traceback") for line in lines):
        lines = lines[:1] + lines[-1:]  # a server's traceback: its first words and its error
    cause = next((line for line in lines if any(k in line.lower() for k in
                  ("exit", "killed", "sigkill", "died", "unexpectedly", "oom", "memory"))),
                 " ".join(lines[:2]))
    if len(cause) > 300:
        cause = cause[:300] + "..."
    return f"{head}: {cause}" if cause else head


INIT_ATTEMPTS = 2


def _init(ray, address: str) -> None:
    """``ray.init``, tried twice for a Ray Client address: the head's client server starts
    a server process per client, and now and then (seen on a loaded head, about one
    first connection in two after the head started) that process never comes up and
    the connection fails with "Initialization failure from server" after the head's
    channel timeout; the next one comes up at once."""
    for attempt in range(1, INIT_ATTEMPTS + 1):
        try:
            # log_to_driver=False: a worker's prints stay in the cluster's logs, not in
            # the app server's output.
            ray.init(address=address, log_to_driver=False, ignore_reinit_error=True,
                     logging_level="WARNING")
            return
        except ConnectionAbortedError:
            if attempt == INIT_ATTEMPTS or not address.startswith(CLIENT_SCHEME):
                raise


def connect(address: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """Connect this process to the Ray cluster at ``address`` (default: ``METAREP_RAY_ADDRESS``)
    and return the address. Thread-safe; ``ray.init`` runs once per process, later calls
    only check the head still answers. ClusterUnavailable (a MetaRepError) when the
    address is missing or malformed, the head does not answer within ``timeout_s``, Ray
    refuses, or this process is already connected to another cluster."""
    global _connected
    address = address if address is not None else ray_address()
    if address is None:
        raise ClusterUnavailable(f"no Ray cluster address: set {ENV_VAR} or pass --cluster")
    address = address.strip()
    check_reachable(address, timeout_s)  # before importing Ray: an unreachable head costs seconds
    with _lock:
        if _connected is not None:
            if _connected != address:
                raise ClusterUnavailable(f"this process is already connected to the Ray cluster at "
                                         f"{_connected}; it cannot also use {address}")
            return address
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray's C++ core logs warnings (e.g. how it found its IP) straight to stderr,
        # between the CLI's progress lines; errors still show.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        import ray
        try:
            _init(ray, address)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, grpc errors
            raise ClusterUnavailable(
                f"the Ray cluster at {address} answered but refused the connection "
                f"({describe_error(exc)}); check that it is a Ray head of version "
                f"{ray.__version__} and that the address is its "
                + ("Ray Client server port" if address.startswith(CLIENT_SCHEME) else "GCS port")
            ) from None
        _connected = address
        return address
