"""Security with real gRPC channels: token (metadata) and TLS (certificates generated here with the
``cryptography`` package), workers bound to loopback, and no secret in any output of a real run."""
from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hode.cluster.live import LiveBackend
from hode.cluster.topology import Topology
from hode.edge import worker_pb2 as pb
from hode.edge.client import AuthError, EdgeClient
from hode.edge.process import WorkerProcess
from hode.edge.security import EdgeSecurity, TokenAuth, client_channel, read_token, warn_if_open
from hode.edge.server import WorkerSpec
from hode.errors import ConfigError

from support.edge import shared_worker, wait_for, workers_of, write_fast_profile, yolov5n_config
from support.run import run_py

TOKEN_ENV, PASS_ENV = "HODE_TEST_EDGE_TOKEN", "HODE_TEST_KEY_PASS"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(d: Path, passphrase: str | None = None, tag: str = "") -> dict[str, Path]:
    """A CA and a worker certificate for 127.0.0.1 and the name ``hode-edge`` (key encrypted with
    ``passphrase`` when given)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(f"hode test CA{tag}")).issuer_name(_name(f"hode test CA{tag}"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName("hode-edge"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(_name("hode-edge")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(san, critical=False).sign(ca_key, hashes.SHA256()))
    enc = serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    files = {"ca": d / f"ca{tag}.pem", "cert": d / f"edge{tag}.pem", "key": d / f"edge{tag}.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    files["key"].chmod(0o600)
    return files


@pytest.fixture(scope="module")
def secure_worker(tmp_path_factory):
    """A real worker serving TLS (passphrase-protected key) and requiring a token."""
    d = tmp_path_factory.mktemp("secure-worker")
    token, passphrase = secrets.token_hex(16), secrets.token_hex(12)
    pki = make_pki(d, passphrase)
    other = make_pki(d, tag="-other")
    old = {k: os.environ.get(k) for k in (TOKEN_ENV, PASS_ENV)}
    os.environ.update({TOKEN_ENV: token, PASS_ENV: passphrase})  # the worker inherits them
    spec = WorkerSpec(node="secure", detector=yolov5n_config(), torch_threads=1, token_env=TOKEN_ENV,
                      tls_cert=str(pki["cert"]), tls_key=str(pki["key"]), tls_key_passphrase_env=PASS_ENV)
    proc = WorkerProcess(spec, d / "logs")
    proc.spawn()
    try:
        wait_for(lambda: proc.port() is not None or not proc.alive(), 120, "the secure worker's port")
        assert proc.alive(), proc.log_tail()
        yield proc, token, pki, other
    finally:
        proc.stop()
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _tile() -> pb.DetectRequest:
    return pb.DetectRequest(frame_id=1, tiles=[pb.Tile(item_id=3, encoding=pb.RAW, data=bytes(32 * 32 * 3), height=32,
                                                       width=32, channels=3, dtype="uint8")])


def _code(stub_call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        stub_call()
    return e.value.code()


@pytest.mark.slow
def test_security_tls_and_token_with_real_channels(secure_worker, monkeypatch):
    proc, token, pki, other = secure_worker
    target = f"127.0.0.1:{proc.port()}"
    monkeypatch.setenv("CAMERA_TOKEN", token)
    good = EdgeClient(target, encoding="raw", security=EdgeSecurity(token_env="CAMERA_TOKEN", tls_ca=str(pki["ca"])))
    wait_for(lambda: good.serving(timeout=2.0) or not proc.alive(), 120, "the secure worker to serve")
    assert [r.item_id for r in good.stub.Detect(_tile(), timeout=60).results] == [3]
    assert good.status().node == "secure"
    named = EdgeClient(target, security=EdgeSecurity(token_env="CAMERA_TOKEN", tls_ca=str(pki["ca"]),
                                                     tls_server_name="hode-edge"))
    assert named.serving()
    # TLS, no token: refused, every method, the health check included
    bare = EdgeClient(target, security=EdgeSecurity(tls_ca=str(pki["ca"])))
    assert _code(lambda: bare.stub.Detect(_tile(), timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: bare.status()) == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(AuthError, match="refused the request: missing or wrong token"):
        bare.serving()
    monkeypatch.setenv("WRONG_TOKEN", token[:-1] + ("0" if token[-1] != "0" else "1"))
    wrong = EdgeClient(target, security=EdgeSecurity(token_env="WRONG_TOKEN", tls_ca=str(pki["ca"])))
    assert _code(lambda: wrong.stub.Detect(_tile(), timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    # the token in the wrong form: a raw channel with hand-made metadata
    ch = grpc.secure_channel(target, grpc.ssl_channel_credentials(pki["ca"].read_bytes()))
    detect = ch.unary_unary("/hode.edge.EdgeWorker/Detect", request_serializer=pb.DetectRequest.SerializeToString,
                            response_deserializer=pb.DetectReply.FromString)
    assert _code(lambda: detect(_tile(), metadata=[("authorization", token)], timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    assert len(detect(_tile(), metadata=[("authorization", f"Bearer {token}")], timeout=60).results) == 1
    # no TLS at all, or a certificate from another CA: the handshake fails, nothing is sent
    plain = EdgeClient(target, security=EdgeSecurity(token_env="CAMERA_TOKEN"))
    assert _code(lambda: plain.stub.Detect(_tile(), timeout=10)) == grpc.StatusCode.UNAVAILABLE
    stranger = EdgeClient(target, security=EdgeSecurity(token_env="CAMERA_TOKEN", tls_ca=str(other["ca"])))
    assert _code(lambda: stranger.stub.Detect(_tile(), timeout=10)) == grpc.StatusCode.UNAVAILABLE
    for c in (good, named, bare, wrong, plain, stranger):
        c.close()
    ch.close()
    assert proc.alive()


def test_security_token_on_a_plaintext_channel(monkeypatch):
    """Token without TLS (loopback or a tunnel): the same interceptor on a real in-process server."""
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[TokenAuth("tok-123")])
    h = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(h, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        req = health_pb2.HealthCheckRequest()
        monkeypatch.setenv("T_OK", "tok-123")
        ok = health_pb2_grpc.HealthStub(client_channel(f"127.0.0.1:{port}", [], EdgeSecurity(token_env="T_OK")))
        assert ok.Check(req, timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        anon = health_pb2_grpc.HealthStub(client_channel(f"127.0.0.1:{port}", []))
        assert _code(lambda: anon.Check(req, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(0)


def test_security_settings_refuse_secrets_and_bad_references(tmp_path, monkeypatch, caplog):
    topo = Topology([{"name": "a", "model": "yolov5n", "device": "gtx1050"}])
    with pytest.raises(ConfigError) as e:
        LiveBackend(topo, security={"token": "planted-s3cret-value"})
    assert "secrets are not accepted" in str(e.value) and "planted-s3cret-value" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown key"):
        EdgeSecurity.from_config({"tls_crt": "x"})
    with pytest.raises(ConfigError, match="token_env or token_file, not both"):
        EdgeSecurity(token_env="A", token_file="b")
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        EdgeSecurity(tls_cert="c.pem")
    monkeypatch.delenv("HODE_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="environment variable HODE_NOT_SET is not set"):
        read_token("HODE_NOT_SET", None)
    with pytest.raises(ConfigError, match="no such file"):
        read_token(None, str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_token(None, str(tmp_path / "empty"))
    (tmp_path / "tok").write_text("abc\n")
    (tmp_path / "tok").chmod(0o600)
    assert read_token(None, str(tmp_path / "tok")) == "abc"
    with pytest.raises(ConfigError, match="is not a PEM file"):
        (tmp_path / "x.pem").write_text("hello")
        client_channel("127.0.0.1:1", [], EdgeSecurity(tls_ca=str(tmp_path / "x.pem")))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hode.edge.security"):
        warn_if_open("0.0.0.0", EdgeSecurity(), "worker 'w'")
        warn_if_open("127.0.0.1", EdgeSecurity(), "worker 'w'")
    assert [r.getMessage()[:30] for r in caplog.records] == ["worker 'w' listens on 0.0.0.0 "]


@pytest.mark.slow
def test_security_workers_bind_loopback_by_default(cfg_factory):
    from hode.config import build
    from hode.tasks.serve import spec_from_config

    cfg = cfg_factory(["runner=live", "topology=paper5"])
    backend = build(cfg.runner.backend, topology=build(cfg.topology), detector=cfg.detector, _recursive_=False)
    assert {s.host for s in backend._specs} == {"127.0.0.1"}
    assert spec_from_config(cfg_factory(["task=serve"])).host == "127.0.0.1"
    proc = shared_worker()  # and the socket really is on loopback only
    wait_for(lambda: proc.port() is not None, 120, "the shared worker's port")
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == proc.port():  # 0A: LISTEN
                listening.append(local.split(":")[0])
    # 127.0.0.1 (gRPC may list it as the v4-mapped ::ffff:127.0.0.1), never 0.0.0.0 or ::
    assert listening and all(a.endswith("0100007F") for a in listening), listening


@pytest.mark.slow
def test_security_no_secret_in_any_output_of_a_real_run(tmp_path):
    """A live run with a token, TLS with an encrypted key, W&B (offline) and secret-looking config
    values: none of the planted secrets appears in results.json, logs, worker files, the saved
    Hydra config, W&B's files or the console."""
    token, wandb_key, passphrase, in_config = (f"PLANTED{k}{secrets.token_hex(16)}" for k in "TWPC")
    pki = make_pki(tmp_path, passphrase)
    write_fast_profile(tmp_path)
    extra = tmp_path / "conf" / "plant"
    extra.mkdir(parents=True)
    (extra / "plant.yaml").write_text(f"api_key: {in_config}\ndb_password: {in_config}\n")
    out = tmp_path / "run"
    env = {"HODE_EDGE_TOKEN": token, "WANDB_API_KEY": wandb_key, PASS_ENV: passphrase,
           "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    sec = "runner.backend.security"
    args = ["--config-dir", str(tmp_path / "conf"), "+plant=plant", "filter=none", "runner=live_secure", "topology=single",
            "topology.nodes.0.device=fast", f"runner.backend.profiles_dir={tmp_path}", "runner.backend.emulation.time_scale=5",
            f"{sec}.tls_cert={pki['cert']}", f"{sec}.tls_key={pki['key']}", f"{sec}.tls_key_passphrase_env={PASS_ENV}",
            f"{sec}.tls_ca={pki['ca']}", "dataset.frames=2", "dataset.width=1024", "dataset.height=768",
            "logger=wandb", "progress=false"]
    p, r = run_py(out, *args, expect_rc=None, env=env, text=False)
    console = p.stdout + p.stderr
    assert p.returncode == 0, console.decode(errors="replace")[-3000:]
    assert r["frames"] == 2 and r["runner"]["security"] == {"token": "env", "tls": True}
    assert r["config"]["plant"] == {"api_key": "***", "db_password": "***"}
    files = [f for f in out.rglob("*") if f.is_file()]
    assert any(f.parent.name == ".hydra" for f in files) and any("wandb" in f.parts for f in files)
    assert (out / "workers" / "local.log").is_file()
    for secret in (token, wandb_key, passphrase, in_config):
        assert secret.encode() not in console, "a secret reached the console"
        leaks = [str(f.relative_to(out)) for f in files if secret.encode() in f.read_bytes()]
        assert leaks == [], f"secret {secret[:8]}... found in {leaks}"
    assert workers_of(str(out)) == []
