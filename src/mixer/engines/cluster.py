"""A throwaway multi-node Ray cluster on this machine, for tests and benchmarks.

``LocalCluster(nodes=2)`` runs ``ray start --head`` and ``ray start --address`` for each
extra node, exactly as one would on real machines, but on loopback, with ports picked so
that several clusters (other test runs) can coexist. Each node is started in its own
process session and torn down by signalling that session only: never ``ray stop``, which
would stop every Ray node of every user on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PORTS_PER_NODE = 8
WORKER_PORTS = 60


def _free_base(count: int) -> int:
    """A base port with ``count`` consecutive free ports after it (checked by binding)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65000:
            continue
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no block of free ports found for a local Ray cluster")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalCluster:
    """Head + ``nodes - 1`` worker nodes on 127.0.0.1, each with ``cpus`` CPUs."""

    nodes: int = 2
    cpus: int = 1
    object_store_mb: int = 500
    temp_root: str | None = None
    python: str = sys.executable
    procs: list[subprocess.Popen] = field(default_factory=list)
    address: str = ""
    temp_dir: str = ""

    def start(self, timeout: float = 90.0) -> LocalCluster:
        ray_cli = str(Path(self.python).with_name("ray"))
        # Ray's socket paths must stay short: /tmp/rmx-XXXX rather than a deep pytest folder.
        self.temp_dir = tempfile.mkdtemp(prefix="rmx-", dir=self.temp_root or "/tmp")
        per_node = PORTS_PER_NODE + WORKER_PORTS
        base = _free_base(per_node * self.nodes)
        head_port = base
        self.address = f"127.0.0.1:{head_port}"
        # Loopback test clusters run without token auth (a ~/.ray/auth_token left by a local
        # ray.init() would otherwise turn it on for the head only).
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
        try:
            for k in range(self.nodes):
                p = base + k * per_node
                args = [ray_cli, "start", "--block", "--num-cpus", str(self.cpus),
                        "--object-store-memory", str(self.object_store_mb * 2**20),
                        "--temp-dir", self.temp_dir, "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                        "--node-manager-port", str(p + 1), "--object-manager-port", str(p + 2),
                        "--dashboard-agent-listen-port", str(p + 3), "--dashboard-agent-grpc-port", str(p + 4),
                        "--runtime-env-agent-port", str(p + 5), "--metrics-export-port", str(p + 6),
                        "--min-worker-port", str(p + PORTS_PER_NODE), "--max-worker-port", str(p + per_node - 1)]
                if k == 0:
                    args += ["--head", "--port", str(head_port), "--ray-client-server-port", str(p + 7),
                             "--include-dashboard", "false", "--dashboard-port", str(_free_base(1))]
                else:
                    args += ["--address", self.address]
                log = open(Path(self.temp_dir) / f"node{k}.log", "wb")  # noqa: SIM115 - closed with the process
                self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
                self._wait_for(k + 1, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for(self, alive: int, timeout: float) -> None:
        """Block until ``alive`` raylets run (a client should still check ``ray.nodes()``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Ray node exited while starting (see {self.temp_dir}/node*.log):\n{self.log_tail()}")
            if self._count_nodes() >= alive:
                return
            time.sleep(1.0)
        raise TimeoutError(f"Ray nodes did not come up in {timeout:.0f}s:\n{self.log_tail()}")

    def _count_nodes(self) -> int:
        """Raylets started, from the session's socket files (no client connection needed)."""
        sessions = sorted(Path(self.temp_dir).glob("session_2*"))
        if not sessions:
            return 0
        return len(list((sessions[-1] / "sockets").glob("raylet*")))

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for f in sorted(Path(self.temp_dir).glob("node*.log")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM each node's own process session, then SIGKILL what is left; remove temp files."""
        for p in reversed(self.procs):
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            _signal_group(p, signal.SIGKILL)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    """Signal the process group led by ``p`` (created by ``start_new_session``) and nothing else."""
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
