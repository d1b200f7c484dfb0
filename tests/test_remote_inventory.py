"""The host inventory (``ssh`` sections of topology nodes): validation before anything connects."""
from __future__ import annotations

import pytest

from hode.cluster.topology import Topology
from hode.config import build, load_option
from hode.errors import ConfigError
from remote.__main__ import main as remote_main
from remote.inventory import by_host, remote_workers


def topo(*ssh_sections: dict, ports: list[int] | None = None) -> Topology:
    nodes = [{"name": f"n{i}", "model": "yolov5n", "port": (ports or [50051 + i for i in range(len(ssh_sections))])[i],
              "ssh": s} for i, s in enumerate(ssh_sections)]
    return Topology(nodes + [{"name": "local", "model": "yolov5n"}])


def test_lab_example_is_a_valid_inventory():
    workers = remote_workers(build(load_option("topology", "lab_gtx_jetson")))
    assert [w.name for w in workers] == ["gtx1070", "gtx1050", "nx-s", "nx-n", "tx2"]
    hosts = by_host(workers)
    assert len(hosts) == 4  # the two GTX cards share one workstation: one connection, one install
    gtx = next(ws for h, ws in hosts.items() if len(ws) == 2)
    assert [w.torch_device for w in gtx] == ["cuda:0", "cuda:1"] and [w.port for w in gtx] == [50051, 50052]
    assert all(not w.host.trust_on_first_use for w in workers)  # refusing unknown hosts is the default


def test_defaults_and_local_nodes_are_left_alone():
    (w,) = remote_workers(topo({"host": "127.0.0.2"}))
    assert (w.host.port, w.host.python, w.host.venv, w.host.trust_on_first_use) == (22, "python3", True, False)
    assert w.bind == "0.0.0.0" and w.port == 50051
    (t,) = remote_workers(topo({"host": "127.0.0.2", "tunnel": True}))
    assert t.bind == "127.0.0.1"  # a tunnelled worker is reachable through SSH only


@pytest.mark.parametrize("key", ["password", "passphrase", "key_passphrase", "sudo_password"])
def test_passwords_are_refused(key):
    with pytest.raises(ConfigError, match=rf"ssh\.{key}: passwords and other secrets are not accepted"):
        remote_workers(topo({"host": "127.0.0.2", key: "hunter2"}))


def test_secret_env_is_refused_but_plain_env_passes():
    with pytest.raises(ConfigError, match=r"env\.WANDB_API_KEY: secrets are not accepted"):
        remote_workers(topo({"host": "127.0.0.2", "env": {"WANDB_API_KEY": "x"}}))
    (w,) = remote_workers(topo({"host": "127.0.0.2", "env": {"OMP_NUM_THREADS": 2}}))
    assert w.env == {"OMP_NUM_THREADS": "2"}


@pytest.mark.parametrize("ssh, message", [
    ({"host": "127.0.0.2", "keyfile": "~/.ssh/x"}, r"unknown key\(s\) \['keyfile'\]"),
    ({"user": "hode"}, r"ssh\.host is required"),
    ({"host": "127.0.0.2", "port": 70000}, r"ssh\.port must be a TCP port"),
    ({"host": "127.0.0.2", "trust_on_first_use": "yes"}, r"trust_on_first_use must be bool"),
    ({"host": "127.0.0.2", "worker": {"port": 1}}, r"ssh\.worker: unknown or launcher-owned key\(s\) \['port'\]"),
    ({"host": "127.0.0.2", "env": {"1BAD": "x"}}, r"'1BAD' is not a variable name"),
])
def test_bad_inventory_is_one_clear_line(ssh, message):
    with pytest.raises(ConfigError, match=message) as e:
        remote_workers(topo(ssh))
    assert "\n" not in str(e.value) and "node n0" in str(e.value)


def test_two_workers_on_one_port_of_one_host_are_refused():
    with pytest.raises(ConfigError, match="both use port 50051 on 127.0.0.2"):
        remote_workers(topo({"host": "127.0.0.2"}, {"host": "127.0.0.2"}, ports=[50051, 50051]))
    with pytest.raises(ConfigError, match="must share the same ssh host settings"):
        remote_workers(topo({"host": "127.0.0.2"}, {"host": "127.0.0.2", "python": "/opt/py"}))


def test_cli_refuses_topologies_without_hosts_and_unknown_options(capsys):
    assert remote_main(["status", "topology=single"]) == 2
    assert "has no node with an ssh section" in capsys.readouterr().err
    assert remote_main(["deploy", "topology=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown topology option 'nope'") and "\n" not in err
