"""Faults while deploying to real sshd hosts: one clear line naming the host and what failed, the
other host rolled back, and no worker process or PID file left anywhere."""
from __future__ import annotations

import json
import os
import site
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hode.cluster.topology import Topology
from hode.config import ROOT
from remote.artifacts import project_wheel
from remote.errors import RemoteError
from remote.host import HostSession
from remote.inventory import remote_workers
from remote.launcher import Launcher
from support.sshd import Blackhole, NotSsh, free_port, lab_fixture

pytestmark = pytest.mark.slow  # real sshd hosts

lab = pytest.fixture(scope="module")(lab_fixture)


def pid_files(lab) -> list:
    return [p for h in lab.hosts.values() for p in h.work_dir.glob("workers/*.pid")]


def deploy_with_bad_b(lab, tmp_path, worker_port: int | None = None, **ssh) -> str:
    """Deploy a good worker to host a and a faulty one to host b; the one-line error it must raise."""
    known = lab.known_hosts("a", "b")
    good = lab.node("a", "good", free_port("127.0.0.2"), known)
    bad = lab.node("b", "bad", worker_port or free_port("127.0.0.3"), known)
    bad["ssh"].update(ssh)
    launcher = Launcher(Topology([good, bad], name="faults"), log_dir=tmp_path / "logs")
    with pytest.raises(RemoteError) as e:
        launcher.deploy()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("remote host bad (")
    assert lab.worker_pids() == []  # rolled back on every host: no orphan worker
    assert pid_files(lab) == []
    assert launcher.started == {}
    return msg


def test_unreachable_host(lab, tmp_path):
    hole = Blackhole("127.0.0.9")  # SYNs dropped: connect() times out like a host that is down
    try:
        msg = deploy_with_bad_b(lab, tmp_path, host=hole.address, port=hole.port, connect_timeout=1.5)
    finally:
        hole.close()
    assert f"@127.0.0.9:{hole.port}): unreachable (no answer within 1.5 s)" in msg


def test_refused_connection(lab, tmp_path):
    closed = free_port("127.0.0.3")  # nothing listens there
    msg = deploy_with_bad_b(lab, tmp_path, port=closed)
    assert f"@127.0.0.3:{closed}): connection refused (no SSH server on port {closed})" in msg


def test_wrong_user(lab, tmp_path):
    msg = deploy_with_bad_b(lab, tmp_path, user="nosuchuser")
    assert "(nosuchuser@127.0.0.3:" in msg and f"authentication failed for user 'nosuchuser' with {lab.user_key}" in msg


def test_wrong_key(lab, tmp_path):
    msg = deploy_with_bad_b(lab, tmp_path, key_file=str(lab.wrong_key))
    assert f"authentication failed for user '{lab.user}' with {lab.wrong_key}" in msg


def test_host_key_mismatch(lab, tmp_path):
    known = lab.root / "known_swapped"
    a, b = lab.hosts["a"], lab.hosts["b"]
    known.write_text(a.known_hosts_line() + b.known_hosts_line(key=a.host_key))  # b "became" another machine
    msg = deploy_with_bad_b(lab, tmp_path, known_hosts=str(known))
    assert "host key CHANGED" in msg and "refusing to connect" in msg


def test_missing_python(lab, tmp_path):
    msg = deploy_with_bad_b(lab, tmp_path, python="/nonexistent/bin/python3")
    assert "python interpreter '/nonexistent/bin/python3' not found or not executable on the host" in msg


def test_worker_port_already_taken(lab, tmp_path):
    squatter = socket.socket()
    squatter.bind(("127.0.0.3", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    try:
        msg = deploy_with_bad_b(lab, tmp_path, worker_port=port)
    finally:
        squatter.close()
    assert f"port {port} on 127.0.0.3 is already taken (Address already in use)" in msg


def test_worker_dying_at_start_rolls_back_the_other_host(lab, tmp_path):
    # A CUDA device on a CPU-only host: the worker starts, then dies loading its detector.
    msg = deploy_with_bad_b(lab, tmp_path, torch_device="cuda:0")
    assert "worker bad died at start:" in msg
    assert "CUDA" in msg or "cuda" in msg  # the worker's own last error line
    assert "stopped 1 worker(s) already started" in msg  # the good worker on host a was rolled back
    assert (tmp_path / "logs" / "good.log").is_file()  # its log was fetched before it went away


def test_teardown_never_kills_a_process_that_is_not_the_worker(lab, tmp_path):
    """A PID file whose PID now belongs to another process (PID reuse): refused, the process lives."""
    known = lab.known_hosts("b")
    node = lab.node("b", "reused", free_port("127.0.0.3"), known)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile = lab.hosts["b"].work_dir / "workers" / "reused.pid"
        pidfile.parent.mkdir(exist_ok=True)
        pidfile.write_text(json.dumps({"pid": bystander.pid, "token": "not-its-token", "port": 1}))
        launcher = Launcher(Topology([node], name="reuse"), log_dir=tmp_path)
        with pytest.raises(RemoteError, match=rf"pid {bystander.pid} is not the worker the launcher started"):
            launcher.teardown(all_found=True)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        pidfile.unlink(missing_ok=True)


def session(lab, name: str, **ssh) -> HostSession:
    node = lab.node("b", name, free_port("127.0.0.3"), lab.known_hosts("b"))
    node["ssh"].update(ssh)
    (w,) = remote_workers(Topology([node]))
    return HostSession(w.host, [w])


def test_install_without_venv_goes_to_a_site_dir_for_the_configured_interpreter(lab, tmp_path):
    s = session(lab, "plain", venv=False, work_dir=str(tmp_path / "plain"))
    wheel = project_wheel()
    try:
        s.bootstrap()
        path, uploaded = s.upload(wheel, f"dist/{wheel.sha256[:12]}")
        assert uploaded and s.upload(wheel, f"dist/{wheel.sha256[:12]}") == (path, False)  # same hash: no upload
        assert s.install(path, wheel.sha256) is True and s.install(path, wheel.sha256) is False  # cached
        assert s.python == sys.executable and s.pythonpath == str(tmp_path / "plain" / "site")
        assert (tmp_path / "plain" / "site" / "hode" / "edge" / "server.py").is_file()
    finally:
        s.close()


def test_host_python_without_pip_is_one_clear_line(lab, tmp_path):
    bare = tmp_path / "bare"  # an interpreter that has neither pip nor the project's dependencies
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    s = session(lab, "nopip", venv=False, python=str(bare / "bin" / "python"), work_dir=str(tmp_path / "w"))
    wheel = project_wheel()
    try:
        s.bootstrap()
        path, _ = s.upload(wheel, "dist")
        with pytest.raises(RemoteError, match=r"^remote host nopip \(.*\): pip is not available to .*bare/bin/python; "
                                              r"install it on the host"):
            s.install(path, wheel.sha256)
    finally:
        s.close()


def test_default_venv_sees_the_packages_of_an_interpreter_that_is_itself_a_venv(lab, tmp_path):
    """ssh.python may be a venv's (or a conda env's) python that has the packages: the per-project venv
    (venv: true, the default) sees them, and imports the project from the wheel installed into it."""
    env = tmp_path / "env"  # the host's interpreter: a venv holding a module of its own ...
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    where = "import site,sys; print([d for d in site.getsitepackages() if d.startswith(sys.prefix)][0])"
    env_site = Path(subprocess.run([str(env / "bin" / "python"), "-c", where], capture_output=True, text=True,
                                   check=True).stdout.strip())
    (env_site / "only_in_the_env.py").write_text("WHERE = 'env'\n")
    # ... and the project's dependencies (this interpreter's site dirs, as plain path lines)
    ours = [d for d in [*site.getsitepackages(), site.getusersitepackages()] if os.path.isdir(d)]
    (env_site / "deps.pth").write_text("\n".join(ours) + "\n")
    work = tmp_path / "w"
    s = session(lab, "venvpy", python=str(env / "bin" / "python"), work_dir=str(work))
    wheel = project_wheel()
    try:
        s.bootstrap()
        path, _ = s.upload(wheel, f"dist/{wheel.sha256[:12]}")
        assert s.install(path, wheel.sha256) is True and s.install(path, wheel.sha256) is False  # venv reused
        assert s.python == str(work / "venv" / "bin" / "python") and s.pythonpath is None
    finally:
        s.close()
    r = subprocess.run([s.python, "-c", "import hode, only_in_the_env, torch, cv2; print(hode.__file__)"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().startswith(str(work / "venv")), r.stdout  # the wheel, not the env's copy


@pytest.mark.parametrize("server", ["nothing", "closes at once", "never answers"])
def test_unreachable_host_is_one_line_from_the_cli(lab, server):
    """Deploy and status against a port without an SSH server: one line, no paramiko traceback, no hang."""
    address, port, other = "127.0.0.9", free_port("127.0.0.9"), None
    if server != "nothing":
        other = NotSsh(address, silent=server == "never answers")
        port = other.port
    node = lab.node("a", "gone", free_port("127.0.0.2"), lab.known_hosts("a"))
    node["ssh"].update(host=address, port=port, connect_timeout=1)
    hosts = lab.topology([node])
    try:
        # timeout: a hang fails the test (connect_timeout is 1 s)
        deploy = subprocess.run([sys.executable, "-m", "remote", "deploy", f"topology={hosts}"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        status = subprocess.run([sys.executable, "-m", "remote", "status", f"topology={hosts}"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
    finally:
        if other is not None:
            other.close()
    who = f"remote host gone ({lab.user}@{address}:{port})"
    assert deploy.returncode == 2 and deploy.stdout == "", deploy
    (line,) = deploy.stderr.strip().splitlines()  # exactly one line: no traceback, no paramiko log
    assert line.startswith(f"error: {who}: ") and ("connection refused" if server == "nothing" else
                                                   "no SSH server answers") in line, line
    assert status.returncode == 1 and status.stderr.strip() == "", status
    (row,) = status.stdout.strip().splitlines()
    assert row.startswith("gone") and f"unreachable: {who}: " in row, row
