"""One SSH target and the workers on it: prepare, upload, install, start, check, stop, fetch logs.

Layout on the host (``work_dir``, default ``~/hode-edge``)::

    agent.py                      the helper the launcher runs there (remote/agent.py)
    dist/<sha12>/hode-*.whl       project wheels, content-addressed
    weights/<stem>-<sha12>.pt     detector weights, content-addressed
    venv/                         --system-site-packages venv with the wheel installed (--no-deps)
    workers/<node>.spec.json      the worker's settings (hode.edge.server.WorkerSpec)
    workers/<node>.pid / .log     PID file (pid + token) and the worker's output
    workers/<node>.triton/        serve: triton: the model repository of its server
"""
from __future__ import annotations

import json
import posixpath
import stat
import time
import uuid
from pathlib import Path

import paramiko

from remote.artifacts import Artifact
from remote.errors import RemoteError
from remote.inventory import HostSpec, WorkerSpec
from remote.ssh import connect, execute
from remote.tunnel import Tunnel

AGENT = Path(__file__).with_name("agent.py")
MIN_PYTHON = (3, 10)
# Checks the interpreter and creates the work dir, before anything is uploaded.
BOOTSTRAP = ("import os,sys\nw=os.path.expanduser(sys.argv[1])\n"
             "[os.makedirs(os.path.join(w,d),exist_ok=True) for d in ('dist','weights','workers')]\n"
             "print(sys.version_info[0],sys.version_info[1],w)")


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


class HostSession:
    """A connection to one host; every error it raises names the host and the step that failed."""

    def __init__(self, spec: HostSpec, workers: list[WorkerSpec]) -> None:
        self.spec, self.workers = spec, workers
        self.who = f"remote host {'+'.join(w.name for w in workers)} ({spec.label})"
        self.client: paramiko.SSHClient | None = None
        self.work_dir = ""
        self.python = spec.python  # the worker's interpreter once installed (the venv's python)
        self.pythonpath: str | None = None
        self.tunnels: dict[str, Tunnel] = {}
        self.weights: dict[str, str] = {}  # node -> weights path on the host
        self.client_security = None  # hode.edge.security.EdgeSecurity of the camera (token, CA), if any

    # ----- connection and preparation --------------------------------------------------------

    def connect(self) -> None:
        if self.client is None:
            self.client = connect(self.spec, self.who)

    def bootstrap(self) -> None:
        """Check the interpreter, resolve and create the work dir, upload the agent."""
        self.connect()
        r = execute(self.client, [self.spec.python, "-c", BOOTSTRAP, self.spec.work_dir], self.who, timeout=60)
        if r.rc in (126, 127):
            raise RemoteError(f"{self.who}: python interpreter '{self.spec.python}' not found or not executable on the host")
        if r.rc != 0:
            raise RemoteError(f"{self.who}: '{self.spec.python}' failed to run ({_last(r.err)})")
        try:
            major, minor, self.work_dir = r.out.strip().splitlines()[-1].split(" ", 2)
        except ValueError:
            raise RemoteError(f"{self.who}: unexpected answer from '{self.spec.python}': {r.out.strip()[:200]!r}") from None
        if (int(major), int(minor)) < MIN_PYTHON:
            raise RemoteError(f"{self.who}: '{self.spec.python}' is Python {major}.{minor}; the worker needs "
                              f">= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} (set ssh.python to another interpreter)")
        self._put(AGENT, self.path("agent.py"), always=True)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.work_dir, *parts)

    def agent(self, command: str, args: dict, timeout: float = 120.0) -> dict:
        """Run one agent command on the host; its ``error`` becomes a RemoteError naming the host."""
        argv = [self.spec.python, self.path("agent.py"), command, json.dumps(args)]
        r = execute(self.client, argv, self.who, timeout=timeout)
        lines = r.out.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "error" in answer and r.rc == 3:
            raise RemoteError(f"{self.who}: {answer['error']}")
        if r.rc != 0 or not isinstance(answer, dict):
            raise RemoteError(f"{self.who}: agent '{command}' failed (exit {r.rc}): {_last(r.err or r.out)}")
        return answer

    # ----- files -------------------------------------------------------------------------------

    def upload(self, artifact: Artifact, remote_dir: str, name: str | None = None) -> tuple[str, bool]:
        """Put ``artifact`` at ``<remote_dir>/<name>`` unless a file with its content is already there.

        Files are content-addressed (the hash is in the path), so "present with the right size"
        means "unchanged": the upload happens only when the hash changed.
        """
        dest = self.path(remote_dir, name or artifact.name)
        return dest, self._put(artifact.local, dest)

    def _put(self, local: Path, dest: str, always: bool = False) -> bool:
        sftp = self._sftp()
        try:
            if not always:
                try:
                    if sftp.stat(dest).st_size == local.stat().st_size:
                        return False
                except FileNotFoundError:
                    pass
            parent = posixpath.dirname(dest)
            self._makedirs(sftp, parent)
            tmp = f"{dest}.{uuid.uuid4().hex[:8]}.tmp"
            sftp.put(str(local), tmp)
            sftp.posix_rename(tmp, dest)  # atomic: a broken upload never looks like a cached file
            return True
        except (OSError, paramiko.SSHException) as e:
            raise RemoteError(f"{self.who}: upload of {local.name} to {dest} failed ({e})") from None

    def fetch(self, remote: str, local: Path) -> bool:
        """Copy a file from the host; False when it does not exist there."""
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            self._sftp().get(remote, str(local))
            return True
        except FileNotFoundError:
            return False
        except (OSError, paramiko.SSHException) as e:
            raise RemoteError(f"{self.who}: cannot fetch {remote} ({e})") from None

    def _sftp(self) -> paramiko.SFTPClient:
        if getattr(self, "_sftp_client", None) is None:
            try:
                self._sftp_client = self.client.open_sftp()
            except (paramiko.SSHException, OSError) as e:
                raise RemoteError(f"{self.who}: SFTP is not available ({e}); enable the sftp subsystem in sshd_config") from None
        return self._sftp_client

    @staticmethod
    def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
        parts, cur = path.strip("/").split("/"), ""
        for part in parts:
            cur = f"{cur}/{part}" if cur or path.startswith("/") else part
            try:
                if not stat.S_ISDIR(sftp.stat(cur).st_mode):
                    raise RemoteError(f"{cur} exists and is not a directory")
            except FileNotFoundError:
                sftp.mkdir(cur)

    # ----- the project -----------------------------------------------------------------------

    def install(self, wheel_path: str, wheel_sha: str) -> bool:
        """Install the wheel (no dependencies); True when pip ran, False when it was installed already."""
        a = self.agent("install", {"work_dir": self.work_dir, "wheel": wheel_path, "sha": wheel_sha,
                                   "venv": self.spec.venv}, timeout=600)
        self.python, self.pythonpath = a["python"], a["pythonpath"]
        return bool(a["installed"])

    # ----- workers ---------------------------------------------------------------------------

    def files(self, worker: WorkerSpec) -> dict[str, str]:
        base = self.path("workers", safe_name(worker.name))
        return {"spec": base + ".spec.json", "pid": base + ".pid", "log": base + ".log"}

    def start(self, worker: WorkerSpec, spec: dict) -> tuple[int, bool]:
        """Start ``worker`` detached (its own session, a PID file, a log file): ``(pid, existing)``.

        ``existing``: the same worker (same settings) was already running from an earlier deploy and
        is used as it is; a running worker with other settings is an error.
        """
        f = self.files(worker)
        env = {"PYTHONUNBUFFERED": "1", "YOLO_OFFLINE": "1", **worker.env}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        a = self.agent("start", {"argv": self.argv(worker),
                                 "cwd": self.work_dir, "env": env, "pidfile": f["pid"], "logfile": f["log"],
                                 "listen": worker.bind, "port": worker.port, "token": uuid.uuid4().hex,
                                 "spec_path": f["spec"], "spec_text": json.dumps(spec, sort_keys=True)})
        return int(a["pid"]), bool(a.get("existing"))

    def argv(self, worker: WorkerSpec) -> list[str]:
        """The host process of ``worker``: the edge worker reading its spec file, or (serve: triton) a
        Triton server whose one model is built from that file (the detector settings, host paths)."""
        f = self.files(worker)
        if not worker.triton:
            return [self.python, "-m", "hode.edge.server", "--spec", f["spec"]]
        return [self.python, "-m", "hode.cluster.triton.serve", "--host", worker.bind, "--grpc-port", str(worker.port),
                "--model", worker.model, "--detector", f["spec"], "--workdir", f["spec"][:-len(".spec.json")] + ".triton",
                "--torch-threads", str(int(worker.worker.get("torch_threads", 0)))]

    def serving(self, worker: WorkerSpec, host: str, port: int, timeout: float = 1.0) -> int | None:
        """The pid answering ``worker``'s health check when it serves (0: Triton, which names none); else None."""
        if worker.triton:
            from hode.cluster.triton.client import TritonNode

            node = TritonNode(worker.name, f"{host}:{port}", worker.model)
            try:  # live and its model ready
                return 0 if node.healthy(timeout) else None
            finally:
                node.close()
        from hode.edge.client import EdgeClient
        from hode.edge.server import address

        client = EdgeClient(address(host, port), security=self.client_security)
        try:
            return client.status().pid if client.serving(timeout=timeout) else None
        finally:
            client.close()

    def endpoint(self, worker: WorkerSpec) -> tuple[str, int]:
        """Where the camera reaches ``worker``: the host directly, or a local end of an SSH tunnel."""
        if not worker.via_tunnel:
            return self.spec.host, worker.port
        if worker.name not in self.tunnels:
            dest = "127.0.0.1" if worker.bind in ("0.0.0.0", "127.0.0.1") else worker.bind
            self.tunnels[worker.name] = Tunnel(self.client.get_transport(), (dest, worker.port))
        return self.tunnels[worker.name].address

    def wait_healthy(self, worker: WorkerSpec, pid: int, cancelled=lambda: False) -> tuple[str, int]:
        """Poll the worker's health check (gRPC health, or Triton's live/ready) until it serves;
        fail fast when its process dies."""
        host, port = self.endpoint(worker)
        deadline = time.monotonic() + worker.start_timeout
        next_check = time.monotonic() + 1.0
        while True:
            got = self.serving(worker, host, port)
            if got is not None:
                if got and got != pid:  # something else answers on that port
                    raise RemoteError(f"{self.who}: port {worker.port} answers as pid {got}, not as worker "
                                      f"{worker.name} (pid {pid})")
                return host, port
            if time.monotonic() >= next_check:  # an SSH round trip: not on every poll
                st = self.status(worker)
                if not st["alive"]:
                    raise RemoteError(f"{self.who}: worker {worker.name} died at start: {st.get('log') or 'no output'}")
                next_check = time.monotonic() + 1.5
            if cancelled():
                raise RemoteError(f"{self.who}: deploy cancelled")
            if time.monotonic() > deadline:
                tail = self.agent("tail", {"path": self.files(worker)["log"], "lines": 1})["text"]
                raise RemoteError(f"{self.who}: worker {worker.name} not healthy after {worker.start_timeout:g} s "
                                  f"(last log line: {tail.strip()[:200] or 'none'})")
            time.sleep(0.25)

    def status(self, worker: WorkerSpec) -> dict:
        f = self.files(worker)
        return self.agent("status", {"pidfile": f["pid"], "log": f["log"]})

    def stop(self, worker: WorkerSpec, grace_s: float = 5.0) -> dict:
        """Stop the worker named in its PID file (only if that process is still the one started)."""
        t = self.tunnels.pop(worker.name, None)
        if t is not None:
            t.close()
        return self.agent("stop", {"pidfile": self.files(worker)["pid"], "grace_s": grace_s}, timeout=grace_s + 30)

    def fetch_log(self, worker: WorkerSpec, dest_dir: Path) -> Path | None:
        local = Path(dest_dir) / f"{safe_name(worker.name)}.log"
        return local if self.fetch(self.files(worker)["log"], local) else None

    def close(self) -> None:
        for t in self.tunnels.values():
            t.close()
        self.tunnels.clear()
        sftp = getattr(self, "_sftp_client", None)
        if sftp is not None:
            sftp.close()
            self._sftp_client = None
        if self.client is not None:
            self.client.close()
            self.client = None


def _last(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "no output"
