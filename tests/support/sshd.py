"""Real SSH servers as test "hosts" for the remote launcher: sshd instances on loopback addresses.

Each host is an ``sshd -D`` process of its own, listening on its own loopback address
(127.0.0.2, 127.0.0.3, ...) and port, with a generated host key; a generated user key is in a
generated authorized_keys. Everything lives in a temp dir; :meth:`SshLab.close` stops every sshd
(and, as a safety net, any worker process left under the hosts' work dirs). Nothing here ever
targets a non-loopback address. Debian's openssh-server is installed when missing
(``.ci/sshd-setup.sh``); only if sshd still cannot run are the tests skipped, with the reason.
"""
from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hode.config import CONF_DIR, ROOT

SSHD = "/usr/sbin/sshd"
TOPOLOGY_PREFIX = "_test_remote_"
SETUP = ROOT / ".ci" / "sshd-setup.sh"


def sshd_unavailable() -> str | None:
    """None when sshd can run here, else why not (after trying to install it)."""
    if not os.path.exists(SSHD):
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            return "openssh-server is not installed and cannot be installed here (needs root and apt-get)"
        r = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not os.path.exists(SSHD):
            return f"installing openssh-server failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is missing"
    if os.geteuid() != 0:
        return "the test sshd instances log in as root (authorized_keys in a temp dir): run the tests as root"
    return None


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@dataclass
class SshdHost:
    name: str
    address: str  # a loopback address: 127.0.0.x
    port: int
    root: Path  # this host's files: config, host key
    work_dir: Path  # the launcher's work dir on this "host"
    proc: subprocess.Popen | None = None

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    def known_hosts_line(self, key: Path | None = None) -> str:
        pub = (key or self.host_key).with_suffix(".pub").read_text().split()
        return f"[{self.address}]:{self.port} {pub[0]} {pub[1]}\n"


@dataclass
class SshLab:
    """Several sshd "hosts" sharing one user key; the factory of test topologies for them."""

    root: Path
    work_root: Path | None = None  # host work dirs live here (shared by the test modules: one venv per host)
    hosts: dict[str, SshdHost] = field(default_factory=dict)
    topologies: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.user_key = keygen(self.root / "user_key")
        self.wrong_key = keygen(self.root / "wrong_key")  # never authorized
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text(self.user_key.with_suffix(".pub").read_text())
        self.authorized_keys.chmod(0o600)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        remove_stale_topologies()

    def start(self, name: str, address: str) -> SshdHost:
        assert address.startswith("127."), "test hosts are loopback addresses only"
        root = self.root / name
        root.mkdir(exist_ok=True)
        host = SshdHost(name, address, free_port(address), root, (self.work_root or root) / name / "work")
        host.work_dir.mkdir(parents=True, exist_ok=True)
        keygen(host.host_key)
        cfg = root / "sshd_config"
        cfg.write_text("\n".join([
            f"Port {host.port}", f"ListenAddress {address}", f"HostKey {host.host_key}", f"PidFile {root}/sshd.pid",
            f"AuthorizedKeysFile {self.authorized_keys}", "PermitRootLogin prohibit-password", "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "AllowTcpForwarding yes", "Subsystem sftp internal-sftp", "MaxStartups 50", "LogLevel VERBOSE", ""]))
        log = open(root / "sshd.log", "wb")
        host.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.hosts[name] = host
        self._wait_banner(host)
        return host

    def _wait_banner(self, host: SshdHost, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if host.proc.poll() is not None:
                raise RuntimeError(f"sshd for {host.name} exited: {(host.root / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection((host.address, host.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd for {host.name} did not answer on {host.address}:{host.port}")

    def known_hosts(self, *names: str, path: Path | None = None) -> Path:
        """A known_hosts file holding the real keys of ``names`` (empty when none)."""
        path = path or self.root / f"known_hosts_{uuid.uuid4().hex[:6]}"
        path.write_text("".join(self.hosts[n].known_hosts_line() for n in names))
        return path

    def node(self, host: str, name: str, port: int, known_hosts: Path, model: str = "yolov5n", **ssh) -> dict:
        """A topology node on test host ``host`` (the worker on ``port``, listening on the host's address)."""
        h = self.hosts[host]
        base = {"host": h.address, "port": h.port, "user": self.user, "key_file": str(self.user_key),
                "known_hosts": str(known_hosts), "python": sys.executable, "work_dir": str(h.work_dir),
                "listen": h.address, "start_timeout": 120, "connect_timeout": 5,
                "worker": {"torch_threads": 1}}
        base.update(ssh)
        return {"name": name, "model": model, "device": "cpu", "port": port, "ssh": base}

    def topology(self, nodes: list[dict]) -> str:
        """Write ``conf/topology/<generated name>.yaml`` (removed by :meth:`close`); return its option name."""
        name = f"{TOPOLOGY_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:6]}"  # the pid: stale files are recognisable
        path = CONF_DIR / "topology" / f"{name}.yaml"
        path.write_text("# generated by tests/support/sshd.py; removed at the end of the test module\n" + yaml.safe_dump(
            {"_target_": "hode.cluster.topology.Topology", "name": name, "nodes": nodes}, sort_keys=False))
        self.topologies.append(path)
        return name

    def worker_pids(self) -> list[int]:
        """Live (non-zombie) edge worker processes started under any test host's work dir."""
        roots = [str(h.work_dir) for h in self.hosts.values()]
        return [pid for pid, cmd in _processes() if "hode.edge.server" in cmd and any(r in cmd for r in roots)]

    def close(self) -> None:
        for pid in self.worker_pids():  # safety net only: the tests assert there are none
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        for h in self.hosts.values():
            if h.proc is not None and h.proc.poll() is None:
                h.proc.terminate()
                try:
                    h.proc.wait(5)
                except subprocess.TimeoutExpired:
                    h.proc.kill()
                    h.proc.wait(5)
        for p in self.topologies:
            p.unlink(missing_ok=True)


def remove_stale_topologies() -> None:
    """Generated topologies left behind by a test process that was killed before its cleanup."""
    for path in (CONF_DIR / "topology").glob(f"{TOPOLOGY_PREFIX}*.yaml"):
        pid = path.stem[len(TOPOLOGY_PREFIX):].split("_")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            path.unlink(missing_ok=True)


def _processes() -> list[tuple[int, str]]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                out.append((int(name), f.read().replace(b"\0", b" ").decode(errors="replace")))
        except (OSError, IndexError):
            continue
    return out


class Blackhole:
    """A loopback address:port whose TCP handshakes never complete (SYNs dropped): an unreachable host.

    A listener with backlog 0 whose only accept-queue slot is taken: the kernel drops further SYNs,
    so a client's connect() times out exactly as with a host that is down.
    """

    def __init__(self, address: str = "127.0.0.9") -> None:
        self.server = socket.socket()
        self.server.bind((address, 0))
        self.server.listen(0)
        self.address, self.port = address, self.server.getsockname()[1]
        self.filler = socket.create_connection((address, self.port), timeout=2)

    def close(self) -> None:
        self.filler.close()
        self.server.close()


class NotSsh:
    """A loopback port where something other than an SSH server listens: it accepts TCP connections,
    then closes them at once (``silent=False``) or keeps them open without a word (``silent=True``)."""

    def __init__(self, address: str = "127.0.0.9", silent: bool = False) -> None:
        self.server = socket.socket()
        self.server.bind((address, 0))
        self.server.listen(8)
        self.address, self.port = address, self.server.getsockname()[1]
        self.silent, self.held = silent, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            if self.silent:
                self.held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


def lab_fixture(tmp_path_factory):
    """Two sshd hosts, a (127.0.0.2) and b (127.0.0.3), for one test module; all stopped afterwards."""
    import pytest

    reason = sshd_unavailable()
    if reason:
        pytest.skip(f"no sshd for the remote launcher tests: {reason}")
    lab = SshLab(tmp_path_factory.mktemp("sshlab"), work_root=tmp_path_factory.getbasetemp() / "sshlab-work")
    try:
        lab.start("a", "127.0.0.2")
        lab.start("b", "127.0.0.3")
        yield lab
    finally:
        lab.close()
