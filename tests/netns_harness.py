"""A real Ray head for the tests, inside a network namespace that has only loopback.

Ray binds the machine's network interface whatever ``--node-ip-address`` says (issue 14),
so nothing that starts or talks to Ray may run in the machine's own namespace. The tests
therefore run a whole scenario script in a namespace of its own:

    unshare --net --pid --fork --mount-proc  ->  ip link set lo up  ->  python SCRIPT ...

``--net``: a network namespace with only ``lo``, so Ray can only use 127.0.0.1 and no
packet leaves the machine. ``--pid --fork --mount-proc``: the script is process 1 of a
PID namespace of its own, so stopping "every other process" (a SIGKILL to -1 from process
1) reaches only this test's Ray and never another one on the machine, and when the script
ends the kernel ends every process left in the namespace (a head, a worker) - nothing
outlives the test, even after a crash.

Inside, :func:`ray_head` starts the head (``ray start --head``, a short ``--temp-dir``:
Ray's Unix sockets fail past ~107 characters; the GCS and Ray Client ports outside Ray's
worker port range 10002-19999) and stops it at the end, always.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GCS_PORT = 6390
# Outside Ray's worker port range (10002-19999). The Client server starts one server per
# client on the first free port of 23000-23999; it skips this one, which it listens on.
CLIENT_PORT = 23001
UNSHARE = ("unshare", "--net", "--pid", "--fork", "--mount-proc")


def netns_env() -> dict:
    """The environment for processes in the namespace: the worktree importable by Ray's
    workers (they are started by the raylet, not by us), one thread each, no usage stats."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    return env


def run_in_netns(argv: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` in a new loopback-only network namespace (and PID namespace), ``lo`` up."""
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run([*UNSHARE, "sh", "-c", script, "netns", *argv], cwd=ROOT,
                          env=env or netns_env(), capture_output=True, text=True, timeout=timeout)


def only_loopback() -> bool:
    """True in a namespace whose only network interface is ``lo``."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip()]
    return names == ["lo"]


def _ray() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else "ray"


def _wait_listening(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} {timeout_s:g} s after ray start")
            time.sleep(0.2)


def _stop_everything_else(env: dict) -> None:
    """End the head, its daemons and workers. As process 1 of the namespace (run_in_netns),
    SIGKILL to every other process in it, then reap them: `ray stop --force` does the
    same by name but takes 20-25 s (it imports Ray and waits out its grace period), which
    each cluster test file paid once. Anywhere else, `ray stop --force`."""
    if os.getpid() != 1:
        subprocess.run([_ray(), "stop", "--force"], env=env, capture_output=True, timeout=60)
        return
    os.kill(-1, signal.SIGKILL)  # from a namespace's process 1: every process of the namespace but itself
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.05)  # children not yet reaped
        except ChildProcessError:
            return  # none left


@contextlib.contextmanager
def ray_head(num_cpus: int = 2):
    """Start a Ray head on 127.0.0.1 (refused outside a loopback-only namespace); yields
    ``{"client": "ray://127.0.0.1:23001", "gcs": "127.0.0.1:6390"}``; every Ray process ended
    and the temp dir removed at the end."""
    if not only_loopback():
        raise RuntimeError("ray_head() runs only inside a loopback-only namespace (run_in_netns)")
    temp = tempfile.mkdtemp(prefix="mr-ray-", dir="/tmp")
    env = netns_env()
    # The head's Ray Client server gives a new client's own server process 30 s to come
    # up. The first such process after the head starts sometimes never does (its log stays
    # empty; connect() then tries once more, and the next one is up in a second or two):
    # 20 s makes that failure cost less, and is still ample for a loaded 2-core machine.
    env["RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S"] = "20"
    cmd = [_ray(), "start", "--head", "--num-cpus", str(num_cpus), "--num-gpus", "0",
           "--node-ip-address", "127.0.0.1", "--port", str(GCS_PORT),
           "--ray-client-server-port", str(CLIENT_PORT), "--include-dashboard", "false",
           "--disable-usage-stats", "--temp-dir", temp]
    t0 = time.monotonic()
    log = Path(temp) / "ray-start.log"
    try:
        # Output to a file, not a pipe: the head's daemons inherit it and write to it long
        # after `ray start` returns; a pipe closed by then kills them (the Ray Client
        # server's per-client servers died on their first write: "Initialization failure").
        with open(log, "w") as out:
            started = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed ({started.returncode}):\n{log.read_text()[-3000:]}")
        _wait_listening(CLIENT_PORT, 60)  # `ray start` returns before its Client server listens
        yield {"client": f"ray://127.0.0.1:{CLIENT_PORT}", "gcs": f"127.0.0.1:{GCS_PORT}",
               "start_s": round(time.monotonic() - t0, 2)}
    finally:
        _stop_everything_else(env)
        if not os.environ.get("METAREP_TEST_KEEP_RAY_TMP"):  # kept to read its logs
            shutil.rmtree(temp, ignore_errors=True)


def connect_driver(address: str, attempts: int = 3) -> list[str]:
    """Connect this process (the scenarios' driver) to the head; the failed attempts'
    messages. On a 2-core machine under a load of 30 the head's Ray Client server has
    failed to start a client's own server in time ("Initialization failure"): the
    driver then tries again rather than losing every scenario to the machine's load
    (the app's own answer to that failure, the local fallback, is tested as itself)."""
    from metarep_core.cluster import ClusterUnavailable, connect
    failures = []
    for _ in range(attempts):
        try:
            connect(address)
            return failures
        except ClusterUnavailable as exc:
            failures.append(str(exc)[:400])
            if "ray" in sys.modules:
                sys.modules["ray"].shutdown()
            time.sleep(5)
    return failures
