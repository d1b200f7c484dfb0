"""SSH connections with a strict host-key policy, and commands whose failures read as one line.

Host keys are checked against a known_hosts file: an unknown host is refused unless its inventory
entry opts into trust-on-first-use (then its key is recorded there), and a *changed* key is always
refused (paramiko raises before any policy is asked).
"""
from __future__ import annotations

import errno
import logging
import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass

import paramiko

from remote.errors import RemoteError
from remote.inventory import HostSpec


class _NoTransportDumps(logging.Filter):
    """Drops the ERROR records of paramiko's transport thread.

    That thread logs every failure (e.g. a port that does not speak SSH) as an ERROR plus one record
    per traceback line; the same failure reaches the caller as an exception, which :func:`connect`
    and :func:`execute` turn into the one error line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


logging.getLogger("paramiko").setLevel(logging.WARNING)  # "Connected", "Authentication successful": noise in run logs
logging.getLogger("paramiko.transport").addFilter(_NoTransportDumps())
_KNOWN_HOSTS_LOCK = threading.Lock()  # hosts deploy in parallel threads; one writer at a time


def fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"  # e.g. "ssh-ed25519 SHA256:..."


class _UnknownHost(Exception):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__(fingerprint(key))
        self.key = key


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):  # noqa: D401 (paramiko's signature)
        raise _UnknownHost(key)


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Record the key of a host seen for the first time (only for hosts that opted in)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        with _KNOWN_HOSTS_LOCK:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line)


def connect(spec: HostSpec, who: str) -> paramiko.SSHClient:
    """An authenticated client for ``spec``; ``who`` names the host in every error."""
    if spec.key_path is not None and not os.path.isfile(spec.key_path):
        raise RemoteError(f"{who}: ssh.key_file {spec.key_path} does not exist")
    client = paramiko.SSHClient()
    known = spec.known_hosts_path
    if os.path.isfile(known):
        try:
            client.load_host_keys(known)
        except (OSError, paramiko.SSHException) as e:
            raise RemoteError(f"{who}: cannot read known_hosts file {known}: {e}") from None
    client.set_missing_host_key_policy(_TrustOnFirstUse(known) if spec.trust_on_first_use else _RefuseUnknown())
    t = spec.connect_timeout
    try:
        client.connect(spec.host, port=spec.port, username=spec.user, key_filename=spec.key_path,
                       look_for_keys=spec.key_path is None, allow_agent=spec.key_path is None,
                       timeout=t, banner_timeout=t, auth_timeout=t, channel_timeout=t)
    except _UnknownHost as e:
        client.close()
        raise RemoteError(f"{who}: unknown host key ({e}) is not in {known}; verify it and add it "
                          f"(ssh-keyscan -p {spec.port} {spec.host} >> {known}), or set ssh.trust_on_first_use: true "
                          "for this host") from None
    except paramiko.BadHostKeyException as e:
        client.close()
        raise RemoteError(f"{who}: host key CHANGED (known_hosts has {fingerprint(e.expected_key)}, the host offers "
                          f"{fingerprint(e.key)}); refusing to connect. If the host was reinstalled, remove its line "
                          f"from {known}") from None
    except paramiko.PasswordRequiredException:
        client.close()
        raise RemoteError(f"{who}: key {spec.key_path} is passphrase-protected; load it into ssh-agent and set "
                          "ssh.key_file: null (passphrases never go in a config)") from None
    except paramiko.AuthenticationException:
        client.close()
        key = spec.key_path or "the SSH agent / default keys"
        raise RemoteError(f"{who}: authentication failed for user '{spec.user or 'local user'}' with {key}") from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise RemoteError(f"{who}: unreachable (no answer within {t:g} s)") from None
    except ConnectionRefusedError:
        client.close()
        raise RemoteError(f"{who}: connection refused (no SSH server on port {spec.port})") from None
    except socket.gaierror as e:
        client.close()
        raise RemoteError(f"{who}: cannot resolve host name '{spec.host}' ({e.strerror})") from None
    except paramiko.ssh_exception.NoValidConnectionsError as e:  # refused on every address
        client.close()
        if all(getattr(x, "errno", None) == errno.ECONNREFUSED for x in e.errors.values()):
            raise RemoteError(f"{who}: connection refused (no SSH server on port {spec.port})") from None
        first = next(iter(e.errors.values()))
        raise RemoteError(f"{who}: unreachable ({first.strerror or first})") from None
    except OSError as e:
        client.close()
        raise RemoteError(f"{who}: unreachable ({e.strerror or e})") from None
    except paramiko.SSHException as e:
        client.close()
        # Something accepts TCP on that port, but it is not an SSH server (or not one that answers):
        # paramiko says so as a banner error, or, when its own wait ran out first, as "No existing session".
        if str(e).startswith("Error reading SSH protocol banner"):
            raise RemoteError(f"{who}: no SSH server answers on port {spec.port} (the connection was closed or "
                              f"sent no SSH banner within {t:g} s)") from None
        if str(e) == "No existing session":
            raise RemoteError(f"{who}: no SSH server answers on port {spec.port} "
                              f"(no SSH handshake within {t:g} s)") from None
        raise RemoteError(f"{who}: SSH handshake failed ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return client


@dataclass
class Result:
    rc: int
    out: str
    err: str


def execute(client: paramiko.SSHClient, argv: list[str], who: str, timeout: float = 120.0) -> Result:
    """Run ``argv`` (quoted for the remote POSIX shell); output read as it comes, so nothing blocks."""
    cmd = shlex.join(argv)
    try:
        chan = client.get_transport().open_session(timeout=30)
        chan.exec_command(cmd)
    except (paramiko.SSHException, OSError, AttributeError) as e:
        raise RemoteError(f"{who}: SSH connection lost ({e or type(e).__name__})") from None
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    chan.settimeout(0.2)
    while True:
        progressed = False
        while chan.recv_ready():
            out += chan.recv(65536)
            progressed = True
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            progressed = True
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        if chan.closed and not progressed:
            break
        if time.monotonic() > deadline:
            chan.close()
            raise RemoteError(f"{who}: '{argv[0]} {argv[1] if len(argv) > 1 else ''}' did not finish within {timeout:g} s")
        if not progressed:
            time.sleep(0.02)
    rc = chan.recv_exit_status()
    chan.close()
    return Result(rc, out.decode(errors="replace"), err.decode(errors="replace"))
