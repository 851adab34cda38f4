"""`vagonfs emulator`: the command line, the listening socket and uvicorn.

The socket is bound here (not by uvicorn) so ``--port 0`` can report the
port it got: once uvicorn is serving, exactly one line goes to stdout,
``vagonfs emulator listening on http://HOST:PORT``, which is what
``EmulatorProcess`` waits for. Uvicorn handles SIGTERM/SIGINT (a graceful
stop, exit status 0); a temporary data dir is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path

from vagonfs.errors import ConfigError


STORES = ("vagon", "tenant", "shannon")


def _stores(value: str) -> tuple[str, ...]:
    stores = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in stores if s not in STORES]
    if unknown or not stores:
        raise argparse.ArgumentTypeError(f"stores are a comma-separated subset of "
                                         f"{','.join(STORES)} (got {value!r})")
    return stores


def _size(value: str) -> int:
    from vagonfs.config import parse_size

    try:
        return parse_size(value)
    except (ConfigError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {value!r}")
    return number


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free "
                   "port, reported on stdout)")
    p.add_argument("--data", metavar="DIR", help="keep the stores' data here (default: a "
                   "temporary dir removed on exit)")
    p.add_argument("--store", type=_stores, default=STORES,
                   help="which APIs to serve (default vagon,tenant,shannon)")
    p.add_argument("--public-url", metavar="URL", help="base URL put into presigned and "
                   "download links (default: the listening URL)")
    env = os.environ
    p.add_argument("--api-key", metavar="KEY",
                   default=env.get("VAGONFS_EMULATOR_API_KEY", "demo-key"),
                   help="Vagon API key, tenant bearer token and Shannon X-API-Key "
                        "(default $VAGONFS_EMULATOR_API_KEY or demo-key)")
    p.add_argument("--api-secret", metavar="SECRET",
                   default=env.get("VAGONFS_EMULATOR_API_SECRET", "demo-secret"),
                   help="Vagon API secret (default $VAGONFS_EMULATOR_API_SECRET or "
                        "demo-secret)")
    p.add_argument("--per-page-cap", type=_positive, default=100, metavar="N",
                   help="largest per_page honoured by Vagon listings (default 100)")
    p.add_argument("--link-ttl", type=_positive, default=900, metavar="SECONDS",
                   help="lifetime of presigned links in seconds (default 900)")
    p.add_argument("--seed-demo", action="store_true",
                   help="fill an empty data dir with the demo data set")
    p.add_argument("--shannon-form", choices=("deployed", "documented"), default="deployed",
                   help="Shannon wire form (default deployed: what the real gateway does)")
    p.add_argument("--vagon-items", choices=("flat", "wrapped"), default="flat",
                   help="Vagon file items as flat objects or JSON:API (default flat)")
    p.add_argument("--tenant-range", action=argparse.BooleanOptionalAction, default=True,
                   help="honour Range on tenant downloads (default yes)")
    p.add_argument("--vagon-quota", type=_size, default=1 << 40, metavar="BYTES",
                   help="Vagon team storage (default 1T)")
    p.add_argument("--tenant-quota", type=_size, default=10 << 30, metavar="BYTES",
                   help="tenant store quota (default 10G)")
    p.add_argument("--faults", metavar="JSON",
                   help="initial fault rules, as PUT /_admin/faults takes them")
    p.add_argument("--bad-input", metavar="JSON",
                   help="initial bad-input switches, as PUT /_admin/bad-input takes them")


def _announcing_server(config, url: str):
    """A uvicorn.Server that prints the listening line once it is really serving."""
    import uvicorn

    class Announcing(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(f"vagonfs emulator listening on {url}", flush=True)

    return Announcing(config)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without, a reply's second write waits
    # for the client's delayed ACK, 40 ms on every keep-alive request
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _json_flag(flag: str, value: str | None) -> dict | None:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ConfigError(f"{flag} is not valid JSON: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from vagonfs.emulator import app as app_module
    from vagonfs.emulator import demo
    from vagonfs.emulator.context import Emulator
    from vagonfs.emulator.faults import FaultError, Faults
    from vagonfs.emulator.presigned import Presigner
    from vagonfs.emulator.storage import Storage

    from vagonfs.emulator.bad_input import BadInputError

    faults_config = _json_flag("--faults", args.faults)
    bad_input_config = _json_flag("--bad-input", args.bad_input)
    temporary = args.data is None
    data_dir = Path(tempfile.mkdtemp(prefix="vagonfs-emulator-")) if temporary \
        else Path(args.data).expanduser()
    sock = _bind(args.host, args.port)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        storage = Storage(data_dir)
        if args.seed_demo and storage.is_empty():
            with storage.tx():  # all or nothing: a half-seeded dir would never be completed
                demo.seed(storage)
        faults = Faults(args.link_ttl)
        if faults_config is not None:
            try:
                faults.replace(faults_config)
            except FaultError as exc:
                raise ConfigError(f"--faults: {exc}") from None
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        public = (args.public_url or url).rstrip("/")
        emu = Emulator(args, storage, faults, Presigner(storage.secret("s3-signing-key"),
                                                        faults), public)
        if bad_input_config is not None:
            try:
                emu.bad_input.replace(bad_input_config)
            except BadInputError as exc:
                raise ConfigError(f"--bad-input: {exc}") from None
        config = uvicorn.Config(app_module.build(emu), log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=3)
        # uvicorn stops gracefully on SIGTERM/SIGINT, then re-raises the signal to the
        # handler it found: make that a no-op so the clean-up below still runs
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        _announcing_server(config, url).run(sockets=[sock])
    finally:
        sock.close()
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0
