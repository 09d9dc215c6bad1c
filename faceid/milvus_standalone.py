"""A single-node Milvus server on this machine, for tests and benchmarks (not for production).

The PyPI wheel ``milvus==2.3.5`` ("embedded Milvus") ships a real Milvus standalone binary (Go,
embedded etcd, rocksmq, local storage; it reports ``v2.3.5-lite``). It is installed in a virtualenv of
its own (``make milvus-server`` makes ``.venv-milvus``), without its ``client`` extra, which pins an old
pymilvus. :class:`StandaloneMilvus` asks that virtualenv's ``milvus.MilvusServerConfig`` to write the
server's configuration into a fresh data folder, then runs the binary itself, so that this process
owns the server's pid and can stop, kill and restart it:

- on a fixed port (:data:`PORT`): the wheel's own ``milvus-server`` command moves the port silently
  when it is taken, which this class never does (a taken port is an error);
- ``common.gracefulStopTimeout`` lowered from 1,800 s to :data:`GRACEFUL_STOP` seconds, so SIGTERM
  stops it in seconds (an unclean stop costs the next start about a minute);
- its traffic kept off the network: Milvus listens on every interface of the host, so where this
  process may make a network namespace (root with ``ip netns``), the server runs in one of its own
  whose only link is a veth pair to this host (a /30 no other machine routes to), else on the host,
  every client on 127.0.0.1. :meth:`StandaloneMilvus.listening` shows the listening sockets.

It is a single-node Milvus: production runs the Milvus cluster (or Zilliz Cloud); see docs/milvus-server.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from faceid.errors import GalleryError

__all__ = ["GRACEFUL_STOP", "PORT", "StandaloneMilvus", "milvus_python"]

log = logging.getLogger(__name__)

#: the proxy (gRPC) port clients connect to, as a Milvus server's default
PORT = 19530
#: the health endpoint's port (Milvus's METRICS_PORT)
HEALTH_PORT = 9091
#: seconds Milvus may take to stop on SIGTERM before it forces itself to quit
GRACEFUL_STOP = 3

# Run by the milvus virtualenv's Python: write the configuration, unpack the binary, say where.
_PREPARE = r"""
import json, sys
import milvus
data_dir, bin_dir, port, grace = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = milvus.MilvusServerConfig(data_dir=data_dir, proxy_port=port)
config.set("common.gracefulStopTimeout", grace)
config.resolve()
milvus._initialize_data_files(bin_dir)
print(json.dumps({"version": milvus.__version__, "data_dir": config.base_data_dir}))
"""


def milvus_python(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The Python of the virtualenv holding the ``milvus`` wheel, or None when there is none.

    ``$FACEID_MILVUS_PYTHON`` if set, else ``ROOT/.venv-milvus/bin/python`` (``ROOT`` the current folder).
    """
    env = os.environ.get("FACEID_MILVUS_PYTHON")
    path = Path(env) if env else Path(root or ".") / ".venv-milvus" / "bin" / "python"
    return path if path.is_file() else None


def _can_make_namespaces() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("ip") is not None


class StandaloneMilvus:
    """One Milvus standalone server with its own data folder.

    Args:
        data_dir: a folder for its configuration, logs and data (made if missing).
        python: the milvus virtualenv's Python (see :func:`milvus_python`).
        port: the proxy port; with a namespace it is the namespace's own, so never taken.
        namespace: run it in a network namespace of its own; None: when this process can make one.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        python: str | os.PathLike[str],
        *,
        port: int = PORT,
        namespace: bool | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.python = Path(os.path.abspath(python))  # not resolve(): a venv python is a symlink
        self.port = int(port)
        self.namespace = _can_make_namespaces() if namespace is None else namespace
        self.version = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._ns = ""
        self._host_if = ""
        self._server_ip = "127.0.0.1"

    # -- where ------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address clients connect to: the namespace's end of the veth pair, or 127.0.0.1."""
        return self._server_ip

    @property
    def uri(self) -> str:
        return f"http://{self.host}:{self.port}"

    def gallery(self, name: str) -> str:
        """A faceid gallery address on this server: ``milvus://HOST:PORT/NAME``."""
        return f"milvus://{self.host}:{self.port}/{name}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- life -------------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> StandaloneMilvus:
        """Prepare (first time), start, and wait until its health endpoint says OK."""
        if self._proc is not None:
            return self
        if self.namespace and not self._ns:
            self._make_namespace()
        if not self.version:
            self._prepare()
        exe = self._bin_dir() / "bin" / "milvus"
        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(HEALTH_PORT),
            MILVUS_RUN_DIR=str(self.data_dir / "run"),
            LD_LIBRARY_PATH=f"{exe.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        )
        logs = self.data_dir / "logs"
        with open(logs / "milvus-stdout.log", "ab") as out, open(logs / "milvus-stderr.log", "ab") as err:
            self._proc = subprocess.Popen(
                [*self._in_ns(), str(exe), "run", "standalone"],
                cwd=self.data_dir,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self._wait_healthy(timeout)
        log.info("Milvus %s standalone (pid %d) serves %s", self.version, self._proc.pid, self.uri)
        return self

    def stop(self, timeout: float = GRACEFUL_STOP + 20.0) -> None:
        """SIGTERM and wait (it forces itself to quit after :data:`GRACEFUL_STOP` s); SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Milvus (pid %d) did not stop in %g s of SIGTERM; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: an unclean stop (the next start then takes about a minute)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def restart(self, timeout: float = 180.0) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove its network namespace (the data folder stays)."""
        try:
            self.stop()
        finally:
            if self._ns:
                subprocess.run(["ip", "link", "del", self._host_if], capture_output=True, check=False)
                subprocess.run(["ip", "netns", "delete", self._ns], capture_output=True, check=False)
                self._ns = ""

    def __enter__(self) -> StandaloneMilvus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def listening(self) -> str:
        """``ss -ltnp`` where the server runs (its namespace, or the host), for logs."""
        try:
            out = subprocess.run([*self._in_ns(), "ss", "-ltnp"], capture_output=True, text=True, check=False)
        except OSError as exc:
            return f"(ss: {exc})"
        where = f"network namespace {self._ns}" if self._ns else "this host"
        return f"listening sockets in {where}:\n{out.stdout}{out.stderr}"

    # -- inside -----------------------------------------------------------------------------------

    def _bin_dir(self) -> Path:
        # the unpacked binary (about 250 MB) is kept beside the virtualenv, not in every data folder
        return self.python.parent.parent / "milvus-server"

    def _in_ns(self) -> list[str]:
        return ["ip", "netns", "exec", self._ns] if self._ns else []

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [*self._in_ns(), str(self.python), "-c", _PREPARE]
        command += [str(self.data_dir), str(self._bin_dir()), str(self.port), str(GRACEFUL_STOP)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise GalleryError(f"{self.python}: preparing a Milvus server in {self.data_dir} failed: {last}")
        self.version = json.loads(done.stdout.strip().splitlines()[-1])["version"]

    @staticmethod
    def _remove_stale_namespaces() -> None:
        """Delete the namespaces of test runs that were killed (their process gone, nothing inside):
        deleting one deletes its veth pair too, freeing the /30 for a later run."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        for line in listed.splitlines():
            name = line.split()[0] if line.split() else ""
            owner = name.removeprefix("faceid-milvus-")
            if owner == name or not owner.isdigit() or Path(f"/proc/{owner}").exists():
                continue
            inside = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
            if not inside.stdout.strip():
                log.info("removing network namespace %s (its test run is gone)", name)
                subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)

    def _make_namespace(self) -> None:
        self._remove_stale_namespaces()
        # a /30 in 10.211.0.0/16 from this pid, so two test runs at once get different links
        n = os.getpid() & 0x3FFF
        base = (10 << 24) | (211 << 16) | (n << 2)
        ip = [f"{base >> 24 & 255}.{base >> 16 & 255}.{base >> 8 & 255}.{(base & 255) + k}" for k in (1, 2)]
        ns, host_if = f"faceid-milvus-{os.getpid()}", f"fidm{n}"
        steps = [
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns],
            ["ip", "addr", "add", f"{ip[0]}/30", "dev", host_if],
            ["ip", "link", "set", host_if, "up"],
            ["ip", "-n", ns, "addr", "add", f"{ip[1]}/30", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
        ]
        self._ns, self._host_if = ns, host_if
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                self.close()
                raise GalleryError(f"making network namespace {ns}: {' '.join(step)}: {done.stderr.strip()}")
        self._server_ip = ip[1]

    def _wait_healthy(self, timeout: float) -> None:
        assert self._proc is not None
        url = f"http://{self.host}:{HEALTH_PORT}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise GalleryError(
                    f"Milvus exited ({code}) while starting; see {self.data_dir / 'logs' / 'milvus-stderr.log'}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if b"OK" in answer.read():
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        self.kill()
        raise GalleryError(f"Milvus did not answer {url} within {timeout:g} s")
