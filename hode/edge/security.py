"""Who may talk to an edge worker: a shared token (gRPC metadata) and TLS, configured by reference.

Secrets never live in a config, a spec file or a log: the config names *where* a secret is (an
environment variable or a file path), and the value is read only at the moment a channel or a
server is built. A literal ``token`` (or any secret-looking key with a value) in the security
settings is refused with a line that does not repeat the value.

- **Token**: the client sends ``authorization: Bearer <token>`` with every call (Detect, Status and
  the health check alike); the worker's :class:`TokenAuth` interceptor refuses a call without it, or
  with another token, with UNAUTHENTICATED before the request is even deserialized. Comparison is
  constant-time (:func:`hmac.compare_digest`).
- **TLS**: the worker serves with a certificate and key read from files (a passphrase-protected
  key is decrypted in memory with the passphrase from an environment variable); the client checks
  the worker's certificate against ``tls_ca`` (``tls_server_name`` when the certificate names
  another host than the address dialled).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import stat
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import grpc

from hode.errors import ConfigError, check

log = logging.getLogger(__name__)

AUTH_HEADER = "authorization"
SCHEME = "bearer "
# Keys that would carry a secret's *value*; the settings hold only where secrets are.
LITERAL_SECRET_KEYS = ("token", "password", "passphrase", "secret", "api_key", "key_passphrase")


@dataclass
class EdgeSecurity:
    """``runner.backend.security`` (camera and local workers) / ``task.*`` (one worker by hand).

    Worker side: ``token_*`` and ``tls_cert``/``tls_key``/``tls_key_passphrase_env``.
    Client side: ``token_*`` and ``tls_ca``/``tls_server_name``; TLS is on when ``tls_ca`` is set.
    """

    token_env: str | None = None  # environment variable that holds the shared token
    token_file: str | None = None  # or: a file whose content (stripped) is the token
    tls_cert: str | None = None  # worker: PEM certificate (chain) path
    tls_key: str | None = None  # worker: PEM private key path
    tls_key_passphrase_env: str | None = None  # worker: variable holding the key's passphrase, if encrypted
    tls_ca: str | None = None  # client: PEM CA bundle that signed the workers' certificates
    tls_server_name: str | None = None  # client: host name the certificate must carry (default: the address)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            check(v is None or (isinstance(v, str) and v.strip()), f"security.{f.name} must be null or a non-empty "
                                                                    f"string, got {type(v).__name__}")
        check(not (self.token_env and self.token_file), "security: set token_env or token_file, not both")
        check(bool(self.tls_cert) == bool(self.tls_key), "security: tls_cert and tls_key go together (worker side)")

    @classmethod
    def from_config(cls, cfg: Any, where: str = "runner.backend.security") -> "EdgeSecurity":
        """From a mapping (or None); a literal secret value is refused without being echoed."""
        if cfg is None:
            return cls()
        if isinstance(cfg, EdgeSecurity):
            return cfg
        check(isinstance(cfg, dict), f"{where} must be a mapping, got {type(cfg).__name__}")
        for key, value in cfg.items():
            if str(key).lower() in LITERAL_SECRET_KEYS and value not in (None, ""):
                raise ConfigError(f"{where}.{key}: secrets are not accepted in configs; put the token in an "
                                  "environment variable (token_env) or a file (token_file) and name that instead")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known - set(LITERAL_SECRET_KEYS))
        check(not unknown, f"{where}: unknown key(s) {unknown} (known: {', '.join(sorted(known))})")
        return cls(**{k: v for k, v in cfg.items() if k in known})

    @property
    def wants_token(self) -> bool:
        return bool(self.token_env or self.token_file)

    @property
    def client_tls(self) -> bool:
        return bool(self.tls_ca)

    @property
    def server_tls(self) -> bool:
        return bool(self.tls_cert)

    def token(self) -> str | None:
        """The token's value, read now (None when no token is configured)."""
        return read_token(self.token_env, self.token_file)

    def describe(self) -> dict:
        """What results.json may say about it: whether each mechanism is on, never a value."""
        return {"token": "env" if self.token_env else "file" if self.token_file else None,
                "tls": self.client_tls or self.server_tls}

    def as_dict(self) -> dict:
        return asdict(self)


def read_token(token_env: str | None, token_file: str | None) -> str | None:
    """The shared token from ``$token_env`` or the file ``token_file`` (content stripped)."""
    if token_env:
        value = os.environ.get(token_env, "")
        check(value.strip() != "", f"security.token_env: environment variable {token_env} is not set or empty")
        return value.strip()
    if token_file:
        path = Path(token_file).expanduser()
        check(path.is_file(), f"security.token_file: no such file: {path}")
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("token file %s is readable by other users (chmod 600 it)", path)
        value = path.read_text(errors="replace").strip()
        check(value != "", f"security.token_file: {path} is empty")
        return value
    return None


def _read(path: str, what: str) -> bytes:
    p = Path(path).expanduser()
    check(p.is_file(), f"security.{what}: no such file: {p}")
    data = p.read_bytes()
    check(b"-----BEGIN" in data, f"security.{what}: {p} is not a PEM file")
    return data


def private_key_pem(path: str, passphrase_env: str | None) -> bytes:
    """The key as unencrypted PEM bytes, in memory only (gRPC cannot take an encrypted key)."""
    data = _read(path, "tls_key")
    if b"ENCRYPTED" not in data:
        return data
    check(bool(passphrase_env), f"security.tls_key: {path} is encrypted; name the variable that holds its "
                                "passphrase in tls_key_passphrase_env")
    secret = os.environ.get(passphrase_env or "", "")
    check(secret != "", f"security.tls_key_passphrase_env: environment variable {passphrase_env} is not set or empty")
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=secret.encode())
    except (ValueError, TypeError):
        raise ConfigError(f"security.tls_key: cannot decrypt {path} with the passphrase from "
                          f"{passphrase_env} (wrong passphrase or not a private key)") from None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def server_credentials(sec: EdgeSecurity) -> grpc.ServerCredentials | None:
    """TLS credentials for a worker (None: plaintext)."""
    if not sec.server_tls:
        return None
    cert = _read(sec.tls_cert, "tls_cert")
    key = private_key_pem(sec.tls_key, sec.tls_key_passphrase_env)
    return grpc.ssl_server_credentials([(key, cert)])


class TokenAuth(grpc.ServerInterceptor):
    """Refuse every call that does not carry the shared token (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token (authorization metadata)")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)  # raw bytes in: nothing of the request is parsed

    def intercept_service(self, continuation, handler_call_details):
        got = dict(handler_call_details.invocation_metadata or ()).get(AUTH_HEADER, "")
        got = got.decode(errors="replace") if isinstance(got, bytes) else str(got)
        offered = got[len(SCHEME):].encode() if got[:len(SCHEME)].lower() == SCHEME else b""
        if offered and hmac.compare_digest(offered, self._expected):
            return continuation(handler_call_details)
        return self._deny


class _AddToken(grpc.UnaryUnaryClientInterceptor):
    """Attach the token to every unary call of a channel (plaintext or TLS alike)."""

    def __init__(self, token: str) -> None:
        self._md = (AUTH_HEADER, SCHEME + token)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        md = list(client_call_details.metadata or []) + [self._md]
        details = _CallDetails(client_call_details.method, client_call_details.timeout, md,
                               client_call_details.credentials, getattr(client_call_details, "wait_for_ready", None),
                               getattr(client_call_details, "compression", None))
        return continuation(details, request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression) -> None:
        self.method, self.timeout, self.metadata, self.credentials = method, timeout, metadata, credentials
        self.wait_for_ready, self.compression = wait_for_ready, compression


def client_channel(target: str, options: list[tuple[str, Any]], sec: EdgeSecurity | None = None) -> grpc.Channel:
    """A channel to a worker with the configured TLS and token (plain insecure channel without)."""
    sec = sec or EdgeSecurity()
    if sec.client_tls:
        creds = grpc.ssl_channel_credentials(root_certificates=_read(sec.tls_ca, "tls_ca"))
        opts = list(options) + ([("grpc.ssl_target_name_override", sec.tls_server_name)] if sec.tls_server_name else [])
        channel = grpc.secure_channel(target, creds, options=opts)
    else:
        channel = grpc.insecure_channel(target, options=options)
    token = sec.token()
    return grpc.intercept_channel(channel, _AddToken(token)) if token else channel


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_open(host: str, sec: EdgeSecurity, who: str) -> None:
    """A worker reachable from the network without a token (or sending it in clear text) is logged."""
    if is_loopback(host):
        return
    if not sec.wants_token:
        log.warning("%s listens on %s without a token: anyone who can reach it can use it "
                    "(set token_env or token_file)", who, host)
    elif not sec.server_tls:
        log.warning("%s listens on %s with a token but without TLS: the token crosses the network in clear "
                    "text (set tls_cert and tls_key)", who, host)


def _mask_override(text: str) -> str:
    """``key=value`` (or ``a=b,c=d``) with the values of secret-looking keys masked."""
    from hode.results import SECRET_KEY

    parts = text.split(",") if "=" in text else [text]
    out = []
    for part in parts:
        key, eq, _ = part.partition("=")
        out.append(f"{key}=***" if eq and SECRET_KEY.search(key) else part)
    return ",".join(out)


def _mask_tree(obj: Any) -> Any:
    from hode.results import SECRET_KEY

    if isinstance(obj, dict):
        return {k: ("***" if SECRET_KEY.search(str(k)) and v not in (None, "") and not isinstance(v, (dict, list))
                    else _mask_tree(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask_tree(v) for v in obj]
    if isinstance(obj, str) and "=" in obj:
        return _mask_override(obj)
    return obj


def redact_hydra_outputs() -> list[Path]:
    """Hydra saves the composed config and the command-line overrides (``<run dir>/.hydra/*.yaml``,
    ``<sweep dir>/multirun.yaml``) before the task starts: rewrite them with the values of
    secret-looking keys masked, as results.json and the W&B config are. Returns the files rewritten."""
    import yaml

    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except Exception:  # not inside a Hydra app
        return []
    files = []
    if hc.output_subdir:
        files += sorted((Path(hc.runtime.output_dir) / hc.output_subdir).glob("*.yaml"))
    if hc.sweep.dir:
        files.append(Path(str(hc.sweep.dir)) / "multirun.yaml")
    done = []
    for path in files:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        masked = _mask_tree(data)
        if masked != data:
            tmp = path.with_suffix(".yaml.tmp")
            tmp.write_text(yaml.safe_dump(masked, sort_keys=False))
            tmp.replace(path)
            done.append(path)
    return done
