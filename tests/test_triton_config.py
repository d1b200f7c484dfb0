"""``runner=triton`` without a server: its settings refuse bad values in one line, the reply tensors
round-trip detections, the model repository's config says what the runner sends, and a node without
a url fails the start naming the node."""
from __future__ import annotations

import numpy as np
import pytest

from hode.cluster.topology import Topology
from hode.cluster.triton.backend import TritonBackend
from hode.cluster.triton.repo import config_pbtxt, parse_models
from hode.cluster.triton.wire import pack, unpack
from hode.errors import ConfigError
from hode.types import Detections


@pytest.mark.parametrize("settings, message", [
    ({"batch": -1}, "runner.backend.batch must be an integer >= 0"),
    ({"max_requests": 0}, "runner.backend.max_requests must be an integer >= 1"),
    ({"probe_s": "fast"}, "runner.backend.probe_s must be a number > 0"),
    ({"speed_alpha": 2}, "runner.backend.speed_alpha must be in (0, 1]"),
    ({"bogus": 1}, "runner.backend: unknown key(s) ['bogus']"),
])
def test_settings_refuse_bad_values(settings, message):
    with pytest.raises(ConfigError) as e:
        TritonBackend(Topology([{"model": "yolov5n", "url": "127.0.0.1:1"}]), **settings)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_node_without_url_fails_the_start_in_one_line_when_no_local_server_may_start():
    backend = TritonBackend(Topology([{"name": "a", "model": "yolov5n"}]), local_servers=False)  # instantiates
    with pytest.raises(ConfigError, match="topology node 'a' needs url: host:port"):
        backend.start()


def test_reply_tensors_round_trip_ragged_detections():
    dets = [Detections(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32), np.array([0.9, 0.5], np.float32)),
            Detections(), Detections(np.array([[0, 0, 9, 9]], np.float32), np.array([0.3], np.float32))]
    out = pack(dets)
    assert out["BOXES"].shape == (3, 2, 4) and out["COUNT"].ravel().tolist() == [2, 0, 1]
    assert pack([Detections()])["BOXES"].shape == (1, 1, 4)  # never zero-size (Triton drops its bytes)
    back = unpack(out["BOXES"], out["SCORES"], out["COUNT"])
    for a, b in zip(dets, back):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)


def test_model_config_names_the_runners_tensors_and_fixed_sizes():
    text = config_pbtxt("m", {"weights": "weights.pt", "conf": 0.25}, max_batch_size=8, tile=(608, 704))
    assert 'name: "TILES" data_type: TYPE_UINT8 dims: [ 608, 704, 3 ]' in text
    assert "max_batch_size: 8" in text and "dynamic_batching" in text and '\\"conf\\": 0.25' in text
    assert parse_models(["yolov5n", "big=yolov5s@608x704"]) == [("yolov5n", "yolov5n", None),
                                                                ("big", "yolov5s", (608, 704))]
    with pytest.raises(ConfigError, match="must be HxW"):
        parse_models(["x=yolov5n@big"])


PARENT = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import os; from hode.cluster.triton.serve import exit_with_parent; "
    "exit_with_parent(os.getppid()); os.execvp('sleep', ['sleep', '60'])"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_local_server_exits_with_the_camera_even_after_sigkill():
    """What ``serve --parent-pid`` arms before it becomes tritonserver: the kernel's parent-death signal,
    which survives ``exec`` (here into ``sleep``); SIGKILL of the parent ends the child within seconds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from hode.config import ROOT

    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 20
        while open(f"/proc/{child}/comm").read().strip() != "sleep":  # armed, then exec'd
            assert time.monotonic() < deadline, "the child never reached exec"
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{child}") and "Z" not in open(f"/proc/{child}/stat").read().split()[2]:
            assert time.monotonic() < deadline, "the child outlived its SIGKILLed parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
