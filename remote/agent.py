"""The launcher's helper on the edge host (standard library only; uploaded, then run over SSH).

``python agent.py COMMAND 'JSON'`` prints one JSON line: the result, or ``{"error": ...}`` with exit
status 3. Commands: hashes, install, start, status, stop, tail. Doing these steps in Python on the
host (not in a shell pipeline) keeps quoting trivial and lets every failure say exactly what failed.

A worker is started in its own session (so it outlives the SSH connection and its whole process
group can be signalled) and leaves a PID file holding its PID and a random token that is also in
its environment: ``stop`` kills a PID only when that process still carries the token, so a PID
reused by another process after a reboot is never touched.
"""
import hashlib
import json
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import time

TOKEN_VAR = "HODE_WORKER_TOKEN"
NEEDED = ("numpy", "cv2", "torch", "torchvision", "ultralytics", "grpc", "grpc_health", "google.protobuf",
          "omegaconf", "hydra", "yaml")


class Fail(Exception):
    pass


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cmd_hashes(a):
    return {p: (sha256(p) if os.path.isfile(p) else None) for p in a["paths"]}


def _missing_modules(python, pythonpath=None):
    code = ("import importlib.util,sys\nout=[]\nfor m in sys.argv[1:]:\n    try:\n"
            "        ok = importlib.util.find_spec(m) is not None\n    except Exception:\n        ok = False\n"
            "    out.append(m) if not ok else None\nprint(' '.join(out))")
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    r = subprocess.run([python, "-c", code, *NEEDED], capture_output=True, text=True, env=env)
    return r.stdout.split() if r.returncode == 0 else list(NEEDED)


def _make_venv(venv):
    """The per-project venv of this interpreter (created when missing or made by another one); its python.

    --system-site-packages reuses the host's own packages (JetPack's torch on a Jetson) instead of
    reinstalling them. When the configured interpreter is itself a venv, that flag only reaches the
    venv's *base* interpreter, not the venv's own packages: a .pth file adds them (with their own .pth
    files, e.g. editable installs), so the new venv sees exactly what the interpreter sees.
    """
    python = os.path.join(venv, "bin", "python")
    made_by = os.path.join(venv, ".hode-python")
    if os.path.exists(python) and _read(made_by) not in (None, sys.executable):
        shutil.rmtree(venv)  # made by another ssh.python: its packages are not this interpreter's
    if not os.path.exists(python):
        r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail("cannot create the venv %s with %s: %s" % (venv, sys.executable, _last(r.stderr)))
    if _read(made_by) is None:
        with open(made_by, "w") as f:
            f.write(sys.executable)
    own = _venv_site_dirs()
    if own:
        where = "import site,sys; print([d for d in site.getsitepackages() if d.startswith(sys.prefix)][0])"
        r = subprocess.run([python, "-c", where], capture_output=True, text=True)  # the dir whose .pth files run
        if r.returncode != 0 or not r.stdout.strip():
            raise Fail("the venv %s does not run: %s" % (venv, _last(r.stderr)))
        lines = ["import site; site.addsitedir(%r)" % d for d in own]
        with open(os.path.join(r.stdout.strip(), "_hode_parent_site.pth"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return python


def _venv_site_dirs():
    """This interpreter's own site-packages when it runs in a venv (empty for a base/conda interpreter)."""
    if sys.prefix == sys.base_prefix:
        return []
    prefix = os.path.realpath(sys.prefix) + os.sep
    return [d for d in site.getsitepackages() if os.path.isdir(d) and os.path.realpath(d).startswith(prefix)]


def cmd_install(a):
    """Install the project wheel (no dependencies) into the per-project venv, or a target dir."""
    work, wheel, sha = a["work_dir"], a["wheel"], a["sha"]
    if a["venv"]:
        venv = os.path.join(work, "venv")
        python = _make_venv(venv)
        marker, target, pythonpath = os.path.join(venv, ".hode-wheel"), None, None
    else:
        python = sys.executable
        target = os.path.join(work, "site")
        marker, pythonpath = os.path.join(target, ".hode-wheel"), target
    installed = False
    if _read(marker) != sha:
        cmd = [python, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
               "--no-warn-script-location", "-q"]
        cmd += ["--ignore-installed"] if target is None else ["--upgrade", "--target", target]
        r = subprocess.run(cmd + [wheel], capture_output=True, text=True)
        if r.returncode != 0:
            if "No module named pip" in r.stderr:
                raise Fail("pip is not available to %s; install it on the host (e.g. apt install python3-pip)" % sys.executable)
            raise Fail("pip install of %s failed: %s" % (os.path.basename(wheel), _last(r.stderr)))
        with open(marker, "w") as f:
            f.write(sha)
        installed = True
    missing = _missing_modules(python, pythonpath)
    if missing:
        raise Fail("the host's Python lacks %s; install them on the host first (the launcher installs the "
                   "project with --no-deps)" % ", ".join(missing))
    return {"python": python, "pythonpath": pythonpath, "installed": installed}


def _port_free(listen, port):
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are no conflict
        s.bind((listen, port))
        s.listen(1)
    except OSError as e:
        return e.strerror or str(e)
    finally:
        s.close()
    return None


def cmd_start(a):
    pidfile, logfile, spec_path = a["pidfile"], a["logfile"], a["spec_path"]
    info = _read_json(pidfile)
    if info and _alive(info["pid"]) and _verified(info):
        differ = _differences(_read_json(spec_path) or {}, json.loads(a["spec_text"]))
        if differ:
            raise Fail("worker %s is already running (pid %d) with other settings (%s); stop it first "
                       "(python -m remote teardown ...)" % (os.path.basename(spec_path).split(".")[0], info["pid"],
                                                            ", ".join(differ)))
        return {"pid": info["pid"], "existing": True}  # the same worker, started earlier: used as it is
    tmp = spec_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(a["spec_text"])
    os.replace(tmp, spec_path)
    why = _port_free(a["listen"], a["port"])
    if why:
        raise Fail("port %d on %s is already taken (%s)" % (a["port"], a["listen"], why))
    if os.path.exists(logfile):
        os.replace(logfile, logfile + ".prev")
    token = a["token"]
    env = dict(os.environ)
    env.update(a.get("env", {}))
    env[TOKEN_VAR] = token
    with open(logfile, "wb") as log:
        p = subprocess.Popen(a["argv"], cwd=a["cwd"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    _write_json(pidfile, {"pid": p.pid, "token": token, "port": a["port"], "started": time.time(), "argv": a["argv"]})
    deadline = time.time() + float(a.get("settle_s", 0.5))
    while time.time() < deadline:  # catch the quick deaths (bad interpreter, import error) right here
        if p.poll() is not None:
            os.unlink(pidfile)
            raise Fail("worker exited at start with status %s: %s" % (p.returncode, _tail_error(logfile)))
        time.sleep(0.05)
    return {"pid": p.pid, "existing": False}


def cmd_status(a):
    info = _read_json(a["pidfile"])
    if not info:
        return {"pid": None, "alive": False, "verified": False}
    alive = _alive(info["pid"])
    out = {"pid": info["pid"], "alive": alive, "verified": alive and _verified(info), "port": info.get("port")}
    if not alive and a.get("log"):
        out["log"] = _tail_error(a["log"])
    return out


def cmd_stop(a):
    """SIGTERM the worker's process group, SIGKILL it after the grace period; only a verified worker."""
    pidfile = a["pidfile"]
    info = _read_json(pidfile)
    if not info:
        return {"stopped": False, "reason": "no pid file"}
    pid = info["pid"]
    if not _group_alive(pid):
        os.unlink(pidfile)
        return {"stopped": False, "reason": "not running", "pid": pid}
    # A live leader must carry our token. A dead leader with live group members is still ours: a
    # process group id cannot be reused while any member of the group exists.
    if _alive(pid) and not _verified(info):
        raise Fail("pid %d is not the worker the launcher started (pid reused?); not killing it" % pid)
    sig = "TERM"
    _killpg(pid, signal.SIGTERM)
    if not _wait_gone(pid, float(a.get("grace_s", 5.0))):
        sig = "KILL"
        _killpg(pid, signal.SIGKILL)
        if not _wait_gone(pid, 5.0):
            raise Fail("worker pid %d survived SIGKILL" % pid)
    os.unlink(pidfile)
    return {"stopped": True, "signal": sig, "pid": pid}


def cmd_tail(a):
    return {"text": _tail(a["path"], int(a.get("lines", 20)))}


# ----- processes ------------------------------------------------------------------------------------

def _state(pid):
    """The process state letter from /proc (``Z`` for a zombie), None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid):
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def _group_alive(pgid):
    """Any live process in the worker's process group (the worker leads it)."""
    if _alive(pgid):
        return True
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def _verified(info):
    try:
        with open("/proc/%d/environ" % info["pid"], "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return False
    return ("%s=%s" % (TOKEN_VAR, info["token"])).encode() in env


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pgid, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.05)
    return not _group_alive(pgid)


# ----- files --------------------------------------------------------------------------------------

def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _read_json(path):
    text = _read(path)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _differences(old, new, prefix=""):
    """Dotted names of the settings that differ between two worker specs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, prefix + key + ".")
        elif a != b:
            out.append(prefix + key)
    return out


def _tail(path, lines):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


def _tail_error(path):
    """The worker's own ``error:`` line if it printed one, else its last log line."""
    text = [line for line in _tail(path, 60).splitlines() if line.strip()]
    errors = [line for line in text if line.startswith("error:") or "Error:" in line]
    return (errors or text or ["(empty log)"])[-1].strip()[:300]


def _last(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


COMMANDS = {"hashes": cmd_hashes, "install": cmd_install, "start": cmd_start, "status": cmd_status,
            "stop": cmd_stop, "tail": cmd_tail}


def main(argv):
    try:
        result = COMMANDS[argv[1]](json.loads(argv[2]))
    except Fail as e:
        print(json.dumps({"error": str(e)}))
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
