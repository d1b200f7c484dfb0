"""A local port forwarded through an SSH connection (``ssh -L``), for workers that listen on the host's loopback.

With ``ssh.tunnel: true`` a worker binds 127.0.0.1 on its host, so it is reachable from nowhere but
this SSH connection: no open gRPC port on the lab network. The price is the camera-side copy of every
byte through paramiko, so measured runs on a trusted network use direct connections (the default).
"""
from __future__ import annotations

import select
import socket
import threading

import logging

import paramiko


class _QuietRefusals(logging.Filter):
    """paramiko logs every refused direct-tcpip channel as an ERROR; while a worker is still loading,
    refused connections are the expected answer to health polls, not an error worth a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "open FAILED" not in record.getMessage()


logging.getLogger("paramiko.transport").addFilter(_QuietRefusals())


class Tunnel:
    """Listens on 127.0.0.1:<free port> here; every connection becomes a direct-tcpip channel to ``dest``."""

    def __init__(self, transport: paramiko.Transport, dest: tuple[str, int]) -> None:
        self.transport, self.dest = transport, dest
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.5)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name=f"tunnel-{dest[1]}", daemon=True)
        self._accept.start()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                chan = self.transport.open_channel("direct-tcpip", self.dest, peer, timeout=10)
            except (paramiko.SSHException, OSError, EOFError):
                conn.close()
                continue
            t = threading.Thread(target=self._pump, args=(conn, chan), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, conn: socket.socket, chan: paramiko.Channel) -> None:
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([conn, chan], [], [], 0.5)
                if conn in ready:
                    data = conn.recv(1 << 16)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in ready:
                    data = chan.recv(1 << 16)
                    if not data:
                        break
                    conn.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):
            pass
        finally:
            chan.close()
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._accept.join(2.0)
        for t in self._threads:
            t.join(2.0)
