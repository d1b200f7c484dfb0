"""Deploy the remote workers of a topology, all hosts in parallel, and take them away again.

``Launcher(topology).deploy()`` returns ``{node name: (address, port)}`` for the camera to connect
to; if any host fails, the workers already started on every host are stopped again before the
error (one line, naming the host) propagates. ``teardown()`` stops exactly the workers this
launcher started (by PID, verified) and fetches their logs; ``teardown(all_found=True)`` (the
``python -m remote teardown`` command) stops whatever the PID files of the topology's workers name.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hode.cluster.topology import Topology
from hode.edge.server import WorkerSpec as EdgeWorkerSpec
from hode.errors import HodeError
from remote.artifacts import Artifact, project_wheel, weights_file
from remote.errors import RemoteError
from remote.host import HostSession
from remote.inventory import HostSpec, WorkerSpec, by_host, remote_workers

log = logging.getLogger("remote")


class Launcher:
    def __init__(self, topology: Topology, detector: DictConfig | None = None, log_dir: str | Path | None = None,
                 worker_defaults: dict[str, Any] | None = None, client_security=None) -> None:
        """``detector``: the run's detector config (its shared settings reach every worker, as with
        the other runners); ``worker_defaults``: WorkerSpec fields for every worker (e.g. from the
        live runner: max_message_mb, load_trace), under each node's own ``ssh.worker``;
        ``client_security``: the camera's :class:`hode.edge.security.EdgeSecurity` (token, CA) for
        the health checks, when the workers require them (set in each node's ``ssh.worker``)."""
        self.topology = topology
        self.workers = remote_workers(topology)
        self.devices = {n.name: n.device for n in topology}
        self.detector = detector
        self.log_dir = Path(log_dir) if log_dir else None
        self.defaults = dict(worker_defaults or {})
        self.sessions: dict[HostSpec, HostSession] = {h: HostSession(h, ws) for h, ws in by_host(self.workers).items()}
        for s in self.sessions.values():
            s.client_security = client_security
        self.started: dict[str, tuple[HostSession, WorkerSpec, int]] = {}  # node -> (session, worker, pid)
        self.adopted: dict[str, int] = {}  # node -> pid of a worker an earlier deploy left running
        self.endpoints: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    # ----- deploy ------------------------------------------------------------------------------

    def deploy(self) -> dict[str, tuple[str, int]]:
        """Prepare every host, start every worker, wait for all to be healthy; roll back on failure."""
        if not self.workers:
            return {}
        wheel = project_wheel()  # built (or found in the cache) once for all hosts
        self._cancel.clear()
        pool = ThreadPoolExecutor(max_workers=len(self.sessions), thread_name_prefix="deploy")
        futures = {pool.submit(self._deploy_host, s, wheel): s for s in self.sessions.values()}
        errors: list[BaseException] = []
        try:
            for fut in as_completed(futures):  # in the order they finish: the first failure cancels the rest
                try:
                    fut.result()
                except BaseException as e:  # noqa: BLE001 - collected, the first one is raised below
                    errors.append(e)
                    self._cancel.set()  # the other hosts stop at their next step
        except BaseException:  # Ctrl-C while waiting: let the threads notice, then roll back
            self._cancel.set()
            pool.shutdown(wait=True)
            self._rollback()
            raise
        pool.shutdown(wait=True)
        if errors:
            first = next((e for e in errors if not _is_cancel(e)), errors[0])
            rolled = self._rollback()
            if isinstance(first, RemoteError):
                suffix = f"; stopped {rolled} worker(s) already started" if rolled else ""
                raise RemoteError(f"{first}{suffix}") from None
            raise first
        log.info("remote workers up: %s", ", ".join(f"{n}@{h}:{p}" for n, (h, p) in self.endpoints.items()))
        return dict(self.endpoints)

    def _deploy_host(self, s: HostSession, wheel: Artifact) -> None:
        self._check_cancel(s)
        s.bootstrap()
        self._check_cancel(s)
        self._upload_and_install(s, wheel)
        pids = []
        for w in s.workers:  # start all first: they load their detectors in parallel
            self._check_cancel(s)
            spec = self._worker_spec(s, w)
            pid, existing = s.start(w, spec)
            with self._lock:
                if existing:  # started by an earlier `python -m remote deploy`: not ours to stop
                    self.adopted[w.name] = pid
                else:
                    self.started[w.name] = (s, w, pid)
            pids.append((w, pid))
        for w, pid in pids:
            endpoint = s.wait_healthy(w, pid, cancelled=self._cancel.is_set)
            with self._lock:
                self.endpoints[w.name] = endpoint

    def _upload_and_install(self, s: HostSession, wheel: Artifact) -> None:
        path, _ = s.upload(wheel, f"dist/{wheel.sha256[:12]}")
        s.install(path, wheel.sha256)
        for w in s.workers:
            det = self._detector(w)
            art = weights_file(det["weights"])
            stem, dot, suffix = art.name.rpartition(".")
            name = f"{stem}-{art.sha256[:12]}.{suffix}" if dot else f"{art.name}-{art.sha256[:12]}"
            s.weights[w.name], _ = s.upload(art, "weights", name)

    def _detector(self, w: WorkerSpec) -> dict:
        from hode.detect.factory import detector_config

        det = detector_config(w.model, self.detector)
        return OmegaConf.to_container(det, resolve=True) if isinstance(det, DictConfig) else dict(det)

    def _worker_spec(self, s: HostSession, w: WorkerSpec) -> dict:
        """The hode.edge.server.WorkerSpec of ``w`` as the host will read it (paths on the host)."""
        det = self._detector(w)
        det["weights"] = s.weights[w.name]
        if w.torch_device:
            det["device"] = w.torch_device
        if w.triton:  # the served model's settings (hode.cluster.triton.serve --detector); its argv has the rest
            return det
        spec = {"device_kind": self.devices[w.name], "torch_threads": 0, **self.defaults, **w.worker,
                "node": w.name, "detector": det, "host": w.bind, "port": w.port, "port_file": None, "parent_pid": None}
        if spec.get("emulate") and spec.get("profile") is None:  # the host has no conf/: send the profile itself
            from hode.edge.pacing import read_profile

            spec["profile"] = read_profile(spec["device_kind"], spec.get("profiles_dir"))
            spec["profiles_dir"] = None
        try:  # checked here, not on the host; every field spelled out, so equal settings compare equal
            return dataclasses.asdict(EdgeWorkerSpec(**spec))
        except (HodeError, TypeError, ValueError) as e:
            raise RemoteError(f"{s.who}: worker {w.name}: {e}") from None

    def _check_cancel(self, s: HostSession) -> None:
        if self._cancel.is_set():
            raise RemoteError(f"{s.who}: deploy cancelled")

    def _rollback(self) -> int:
        """Stop every worker started so far, on every host; the count of those stopped."""
        report: list[dict] = []
        # a worker that never served needs no graceful shutdown: a short grace, then SIGKILL
        errors = self._stop(list(self.started.values()), fetch_logs=True, report=report, grace_s=1.0)
        for e in errors:
            log.warning("rollback: %s", e)
        self.disconnect()
        return sum(bool(r.get("stopped")) for r in report)

    # ----- teardown and inspection -------------------------------------------------------------

    def teardown(self, all_found: bool = False) -> list[dict]:
        """Stop the workers this launcher started (``all_found``: every worker a PID file names).

        Every host is tried even when one fails; their logs go to ``log_dir``. Raises one
        RemoteError listing the hosts that could not be cleaned up.
        """
        if all_found:
            targets, errors = [], []
            for s in self.sessions.values():
                try:
                    s.bootstrap()
                    targets += [(s, w, None) for w in s.workers]
                except RemoteError as e:
                    errors.append(e)
        else:
            targets, errors = list(self.started.values()), []
        report: list[dict] = []
        errors += self._stop(targets, fetch_logs=True, report=report)
        self.disconnect()
        if errors:
            raise RemoteError("teardown incomplete: " + "; ".join(str(e) for e in errors))
        return report

    def _stop(self, targets: list, fetch_logs: bool, report: list[dict] | None = None,
              grace_s: float = 5.0) -> list[RemoteError]:
        by_session: dict[int, list] = {}
        for s, w, pid in targets:
            by_session.setdefault(id(s), []).append((s, w))
        errors: list[RemoteError] = []

        def stop_host(items: list) -> None:
            for s, w in items:
                try:
                    s.connect()
                    if not s.work_dir:
                        s.bootstrap()
                    r = s.stop(w, grace_s)
                    if fetch_logs and self.log_dir is not None:
                        r["log"] = str(s.fetch_log(w, self.log_dir) or "")
                    if report is not None:
                        report.append({"node": w.name, "host": s.spec.label, **r})
                    with self._lock:
                        self.started.pop(w.name, None)
                        self.endpoints.pop(w.name, None)
                except RemoteError as e:
                    errors.append(e)

        threads = [threading.Thread(target=stop_host, args=(items,)) for items in by_session.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    def status(self) -> list[dict]:
        """Per worker: its PID file's process (alive, verified) and its health (gRPC, or Triton's live/ready)."""
        rows = []
        for s in self.sessions.values():
            try:
                s.bootstrap()
            except RemoteError as e:
                rows += [{"node": w.name, "host": s.spec.label, "error": str(e)} for w in s.workers]
                continue
            for w in s.workers:
                st = s.status(w)
                serving = False
                if st["alive"]:
                    serving = s.serving(w, *s.endpoint(w), timeout=2.0) is not None
                rows.append({"node": w.name, "host": s.spec.label, "port": w.port, **st, "serving": serving})
        self.disconnect()
        return rows

    def fetch_logs(self, dest: Path, lines: int = 20) -> list[dict]:
        """Copy every worker's log into ``dest``; with the last ``lines`` lines of each."""
        rows = []
        for s in self.sessions.values():
            s.bootstrap()
            for w in s.workers:
                path = s.fetch_log(w, dest)
                tail = s.agent("tail", {"path": s.files(w)["log"], "lines": lines})["text"] if path else ""
                rows.append({"node": w.name, "host": s.spec.label, "log": str(path) if path else None, "tail": tail})
        self.disconnect()
        return rows

    def disconnect(self) -> None:
        """Close every SSH connection (and tunnel); workers keep running."""
        for s in self.sessions.values():
            s.close()

    def close(self) -> None:
        """Teardown of what was started (for ``finally`` blocks); errors are logged, not raised."""
        try:
            self.teardown()
        except RemoteError as e:
            log.error("%s", e)


def _is_cancel(e: BaseException) -> bool:
    return isinstance(e, RemoteError) and str(e).endswith("deploy cancelled")
