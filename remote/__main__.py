"""``python -m remote deploy|status|logs|teardown topology=<hosts> [override ...]``.

The overrides are Hydra overrides of the project's config (``conf/``), composed like ``run.py``
does, so ``topology=lab_gtx_jetson detector.conf=0.3`` means the same here as there. A mistake
the user can fix prints one ``error:`` line and exits 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hode.errors import HodeError

EXIT_USER_ERROR = 2


def compose(overrides: list[str]):
    """The project's config with ``overrides`` (Hydra's compose API against conf/)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from hode.config import CONF_DIR, options
    from hode.errors import ConfigError

    for arg in overrides:
        key, _, value = arg.partition("=")
        group = key.lstrip("+~")
        if value and (CONF_DIR / group).is_dir() and value not in options(group):
            raise ConfigError(f"unknown {group} option '{value}' (available: {', '.join(options(group))})")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=overrides)
    except HydraException as e:
        raise ConfigError(f"bad override: {str(e).splitlines()[0]}") from None


def launcher_for(overrides: list[str], log_dir: Path | None):
    from hode.config import build
    from remote.launcher import Launcher

    cfg = compose(overrides)
    launcher = Launcher(build(cfg.topology), detector=cfg.detector, log_dir=log_dir)
    if not launcher.workers:
        raise HodeError(f"topology {cfg.topology.get('name', '?')} has no node with an ssh section: nothing to do")
    return launcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m remote", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["deploy", "status", "logs", "teardown"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. topology=lab_gtx_jetson")
    parser.add_argument("--out", type=Path, default=None,
                        help="where logs/teardown put the workers' logs (default outputs/remote/<time>)")
    parser.add_argument("--lines", type=int, default=20, help="logs: how many last lines of each log to print")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    out = args.out or Path("outputs") / "remote" / time.strftime("%Y-%m-%d_%H-%M-%S")
    try:
        return COMMANDS[args.command](args, out)
    except HodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_deploy(args, out: Path) -> int:
    launcher = launcher_for(args.overrides, out)
    endpoints = launcher.deploy()
    for w in launcher.workers:
        state = "already running" if w.name in launcher.adopted else "started"
        if w.triton:  # a url for runner=triton's `url:`; on the host's loopback unless insecure
            where = w.host.host if w.bind in ("0.0.0.0", "::") else w.bind
            note = (f" (the host's loopback: ssh -L {w.port}:127.0.0.1:{w.port} -p {w.host.port} "
                    f"{w.host.user + '@' if w.host.user else ''}{w.host.host}, then url 127.0.0.1:{w.port})"
                    if w.via_tunnel else "")
            print(f"{w.name:<14} {state:<16} triton url {where}:{w.port} model {w.model}{note}")
            continue
        host, port = (w.host.host, w.port) if w.tunnel else endpoints[w.name]
        note = " (loopback of the host: reach it through ssh -L, or let runner=live deploy it)" if w.tunnel else ""
        print(f"{w.name:<14} {state:<16} {host}:{port}{note}")
    launcher.disconnect()
    return 0


def cmd_status(args, out: Path) -> int:
    rows = launcher_for(args.overrides, None).status()
    for r in rows:
        if "error" in r:
            print(f"{r['node']:<14} {r['host']:<28} unreachable: {r['error']}")
            continue
        state = ("serving" if r["serving"] else "running, not serving") if r["alive"] else "not running"
        pid = f"pid {r['pid']}" if r.get("pid") else "no pid file"
        print(f"{r['node']:<14} {r['host']:<28} port {r['port']:<6} {pid:<12} {state}")
    return 0 if all(r.get("serving") for r in rows) else 1


def cmd_logs(args, out: Path) -> int:
    rows = launcher_for(args.overrides, out).fetch_logs(out, args.lines)
    for r in rows:
        print(f"==> {r['node']} ({r['host']}): {r['log'] or 'no log on the host'}")
        if r["tail"]:
            print(r["tail"])
    return 0


def cmd_teardown(args, out: Path) -> int:
    report = launcher_for(args.overrides, out).teardown(all_found=True)
    for r in report:
        what = f"stopped pid {r['pid']} (SIG{r['signal']})" if r.get("stopped") else r.get("reason", "")
        print(f"{r['node']:<14} {r['host']:<28} {what}" + (f"; log: {r['log']}" if r.get("log") else ""))
    return 0


COMMANDS = {"deploy": cmd_deploy, "status": cmd_status, "logs": cmd_logs, "teardown": cmd_teardown}

if __name__ == "__main__":
    sys.exit(main())
