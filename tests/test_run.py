"""``python run.py`` end to end as a user runs it, and its one-line errors on bad input."""
import pytest

from support.run import run_py

pytestmark = pytest.mark.slow  # every test runs run.py in a subprocess that loads torch

SMALL = ["logger=none", "progress=false", "filter=none", "scheduler=roundrobin", "dataset.width=1024", "dataset.height=768", "dataset.frames=2", "runner=inline"]
KEYS = {"task", "frames", "fps", "latency_ms", "map50", "map50_95", "tiles", "overhead_ms", "nodes", "config"}


def test_run_writes_results_json_with_every_key(tmp_path):
    out, r = run_py(tmp_path, *SMALL, timeout=240)
    assert KEYS <= set(r)
    assert r["task"] == "run" and r["frames"] == 2 and r["fps"] > 0
    assert set(r["latency_ms"]) == {"p50", "p95", "p99"} and r["latency_ms"]["p50"] > 0
    assert 0 <= r["map50"] <= 1 and 0 <= r["map50_95"] <= r["map50"]
    assert r["tiles"]["total"] == 2 * 4 and r["tiles"]["processed"] + r["tiles"]["skipped"] == 8
    assert set(r["overhead_ms"]) == {"tile", "filter", "schedule", "merge"}
    assert sum(n["items"] for n in r["nodes"]) == r["tiles"]["processed"]
    assert r["config"]["dataset"]["frames"] == 2
    assert "fps=" in out.stdout and "mAP50=" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["tiling.tile=0"], "tiling.tile must be a positive integer"),
    (["tiling.tile=-512"], "tiling.tile must be a positive integer"),
    (["tiling.pad=[600,10]"], "must be smaller than tiling.tile"),
    (["scheduler=nosuch"], "unknown scheduler option 'nosuch'"),
    (["detector.weights=/nonexistent/w.pt"], "no such file: /nonexistent/w.pt"),
    (["dataset.frames=-1"], "dataset.frames must be a positive integer"),
])
def test_bad_input_gives_one_line_error(tmp_path, args, message):
    out, _ = run_py(tmp_path, *SMALL, *args, expect_rc=2, timeout=120)
    lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_bad_input_weights_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "fake.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    out, _ = run_py(tmp_path, *SMALL, f"detector.weights={bad}", "topology=single", expect_rc=2, timeout=120)
    assert out.stderr.strip().startswith("error: ") and "not a YOLO checkpoint" in out.stderr
    assert "Traceback" not in out.stderr


def test_default_job_is_hode_on_a_live_local_cluster(tmp_path):
    """The embedded default (4K synthetic, filter=st, scheduler=dqn, runner=live), two frames."""
    out, r = run_py(tmp_path, "dataset.frames=2", "logger=none", "progress=false", timeout=240)
    cfg = r["config"]
    assert cfg["filter"]["name"] == "st" and cfg["scheduler"]["name"] == "dqn" and r["runner"]["name"] == "live"
    assert r["frames"] == 2 and r["tiles"]["total"] == 80 and r["map50"] > 0.5
    assert all(n["items"] > 0 for n in r["nodes"])
