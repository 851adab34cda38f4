"""From a configured remote to a working store, for the length of a mount.

``open_store`` owns the mount's one HTTP client: it is created here, shared by
everything the store does, and closed when the mount ends. The statistics
object it yields with the store is what ``vagonfs status`` shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from vagonfs.config import Remote
from vagonfs.errors import ConfigError
from vagonfs.remote.base import Store
from vagonfs.remote.failures import RetryPolicy, Stats
from vagonfs.remote.http import HttpClient, new_client
from vagonfs.remote.shannon import ShannonStore
from vagonfs.remote.tenant import TenantStore
from vagonfs.remote.vagon.api import VagonApi
from vagonfs.remote.vagon.store import VagonStore


def make_store(remote: Remote, http: HttpClient) -> Store:
    if remote.type == "vagon":
        return VagonStore(VagonApi(http, remote.url, remote.api_key, remote.api_secret))
    if remote.type == "tenant":
        return TenantStore(http, remote.url, remote.api_key)
    if remote.type == "shannon":
        return ShannonStore(http, remote.url, remote.api_key)
    raise ConfigError(f"remote {remote.name!r}: unknown type {remote.type!r}")


@asynccontextmanager
async def open_store(remote: Remote, *, retry: RetryPolicy | None = None
                     ) -> AsyncIterator[tuple[Store, Stats]]:
    """``async with open_store(remote) as (store, stats):`` under trio."""
    stats = Stats()
    async with new_client() as client:
        yield make_store(remote, HttpClient(client, retry, stats)), stats
