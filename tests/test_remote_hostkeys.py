"""Host-key policy against real sshd hosts: unknown refused by default, TOFU only by opt-in, a changed
key always refused."""
from __future__ import annotations

import dataclasses
import subprocess

import pytest

from remote.errors import RemoteError
from remote.inventory import HostSpec
from remote.ssh import connect, execute
from support.sshd import keygen, lab_fixture

pytestmark = pytest.mark.slow  # real sshd hosts

lab = pytest.fixture(scope="module")(lab_fixture)


def spec(lab, known_hosts, **kw) -> HostSpec:
    a = lab.hosts["a"]
    return HostSpec(host=a.address, port=a.port, user=lab.user, key_file=str(lab.user_key),
                    known_hosts=str(known_hosts), connect_timeout=5, **kw)


def test_known_host_connects_and_runs_commands(lab):
    client = connect(spec(lab, lab.known_hosts("a")), "host a")
    try:
        r = execute(client, ["echo", "it's a host"], "host a")
        assert (r.rc, r.out.strip()) == (0, "it's a host")  # quoting survives the remote shell
    finally:
        client.close()


def test_unknown_host_is_refused_by_default(lab):
    known = lab.known_hosts()  # empty file
    with pytest.raises(RemoteError, match=r"^host a: unknown host key \(ssh-ed25519 SHA256:.*trust_on_first_use") as e:
        connect(spec(lab, known), "host a")
    assert "\n" not in str(e.value)
    assert known.read_text() == ""  # nothing recorded without the opt-in
    missing = lab.root / "no_such_dir" / "known_hosts"  # no file at all: refused the same way
    with pytest.raises(RemoteError, match="unknown host key"):
        connect(spec(lab, missing), "host a")
    assert not missing.exists()


def test_trust_on_first_use_records_the_key_only_with_opt_in(lab):
    known = lab.root / "tofu" / "known_hosts"
    connect(spec(lab, known, trust_on_first_use=True), "host a").close()
    recorded = known.read_text()
    assert recorded.split() == lab.hosts["a"].known_hosts_line().split()  # exactly the host's real key
    connect(spec(lab, known), "host a").close()  # now known: no opt-in needed any more
    assert known.read_text() == recorded  # and not recorded twice


@pytest.mark.parametrize("tofu", [False, True])
def test_changed_host_key_is_always_refused(lab, tofu):
    other = keygen(lab.root / f"impostor_{tofu}")  # the key known_hosts remembers for a's address
    known = lab.root / f"known_changed_{tofu}"
    known.write_text(lab.hosts["a"].known_hosts_line(key=other))
    before = known.read_text()
    with pytest.raises(RemoteError, match=r"^host a: host key CHANGED \(known_hosts has ssh-ed25519 SHA256:.*refusing"):
        connect(spec(lab, known, trust_on_first_use=tofu), "host a")
    assert known.read_text() == before  # the remembered key is never replaced silently


def test_passphrase_protected_key_points_to_the_agent(lab):
    key = lab.root / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "correct horse", "-f", str(key)], check=True)
    s = dataclasses.replace(spec(lab, lab.known_hosts("a")), key_file=str(key))
    with pytest.raises(RemoteError, match=r"is passphrase-protected; load it into ssh-agent"):
        connect(s, "host a")
