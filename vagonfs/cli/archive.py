"""`vagonfs archive REMOTE:PATH OUT.zip`: a zip made by the Vagon server.

Copying a big folder out through the mount costs a request per file; Vagon's
archive-download job builds the zip on the server instead. The job runs in
three steps (start, poll until the zip is ready, fetch), shown with a progress
line on a terminal; Ctrl-C aborts the job on the server, and the server's own
errors (an empty folder, nothing to download, generation failed) are printed
as it words them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vagonfs.config import config_path, load_remote
from vagonfs.errors import ConfigError, FsError


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="REMOTE:PATH",
                        help="a Vagon folder or file, as the mount shows it "
                             "(work:shared/Projects, work:machines/Computer #100/files)")
    parser.add_argument("output", metavar="OUT.zip", help="where to write the zip")
    parser.add_argument("--config", help="config file (as for mount)")
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="seconds between status checks while the server builds the zip")


def run(args) -> int:
    remote_name, sep, path = args.source.partition(":")
    if not sep or not remote_name:
        raise ConfigError(f"expected REMOTE:PATH, got {args.source!r}")
    remote = load_remote(remote_name, config_path(args.config))
    if remote.type != "vagon":
        raise ConfigError(f"{remote_name} is a {remote.type} remote; archives are made by "
                          "the Vagon API only (copy from the mount instead)")
    output = Path(args.output).expanduser()
    import trio  # here, not above: `vagonfs --help` stays quick

    try:
        size = trio.run(_archive, remote, path, output, args.poll_interval)
    except FsError as exc:
        output.unlink(missing_ok=True)
        print(f"vagonfs: archive of {args.source} failed: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        output.unlink(missing_ok=True)
        print("\nvagonfs: archive aborted", file=sys.stderr)
        return 130
    print(f"{output}: {size} bytes")
    return 0


async def _archive(remote, path: str, output: Path, poll_interval: float) -> int:
    import trio

    from vagonfs.remote.base import resolve
    from vagonfs.remote.factory import open_store
    from vagonfs.remote.vagon.store import VagonStore

    async with open_store(remote) as (store, _):
        assert isinstance(store, VagonStore)  # run() took only a Vagon remote
        entry = await resolve(store, path)
        file_ids, machine_id = await store.archive_selection(entry)
        job = await store.api.archive_start(file_ids, machine_id=machine_id)
        download_id = job["download_id"]
        try:
            await store.api.archive_fetch(download_id, output, poll_interval=poll_interval,
                                          progress=_progress_line(sys.stderr.isatty()))
        except BaseException:
            with trio.CancelScope(shield=True):
                await _abort(store.api, download_id)
            raise
        finally:
            if sys.stderr.isatty():
                print(file=sys.stderr)
    return output.stat().st_size


async def _abort(api, download_id) -> None:
    """Stop the server's job; one that already ended cannot be, and that is fine."""
    try:
        await api.archive_abort(download_id)
    except FsError:
        pass


def _progress_line(tty: bool):
    def show(phase: str, done: int, total: int | None) -> None:
        if not tty:
            return
        if phase == "preparing":
            text = f"the server is building the zip ({done} s)"
        else:
            of = f" of {total >> 20} MiB" if total else ""
            text = f"downloading {done >> 20} MiB{of}"
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)
    return show
