"""The listing cache: bounded by the entries of all folders together, least recently
used out first, fresh for its TTL only."""

from __future__ import annotations

from vagonfs.core.listings import Listings
from vagonfs.remote.base import Entry


def listing(prefix: str, count: int) -> dict[str, Entry]:
    return {f"{prefix}{i}": Entry(f"{prefix}{i}", False, key=f"{prefix}{i}")
            for i in range(count)}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bound_counts_entries_across_folders_and_drops_the_least_recently_used():
    cache = Listings(ttl=300, max_entries=1000)
    for ino in range(10, 20):  # ten folders of 300: never more than 1,000 entries kept
        cache.put(ino, listing("f", 300))
        assert cache.entries <= 1000
        cache.get(10)  # folder 10 is in use: it stays
    assert cache.entries == 900 and len(cache) == 3
    assert cache.get(10) is not None and cache.get(19) is not None and cache.get(18) is not None
    assert cache.get(11) is None


def test_a_folder_over_the_bound_alone_is_kept_and_pushes_out_the_rest():
    cache = Listings(ttl=300, max_entries=100)
    cache.put(1, listing("a", 50))
    cache.put(2, listing("b", 250))
    assert (len(cache), cache.entries) == (1, 250)
    kept = cache.get(2)
    assert kept is not None
    assert len(kept) == 250 and cache.get(1) is None


def test_entries_set_and_dropped_are_counted():
    cache = Listings(ttl=300, max_entries=1000)
    cache.put(1, listing("f", 10))
    cache.set_entry(1, Entry("new", False, key="new"))
    cache.set_entry(1, Entry("f0", False, key="f0", version="2"))  # replaced, not added
    cache.drop_entry(1, "f1")
    cache.drop_entry(1, "absent")
    cache.set_entry(2, Entry("x", False, key="x"))  # no listing kept: nothing to change
    kept = cache.get(1)
    assert kept is not None
    assert cache.entries == 10 and len(kept) == 10
    assert kept["f0"].version == "2" and "f1" not in kept
    cache.drop(1)
    assert (len(cache), cache.entries) == (0, 0)


def test_a_listing_is_fresh_for_the_ttl_then_gone():
    clock = Clock()
    cache = Listings(ttl=60, clock=clock)
    cache.put(1, listing("f", 5))
    clock.now += 59
    assert cache.get(1) is not None
    clock.now += 2
    assert cache.get(1) is None
    assert (len(cache), cache.entries) == (0, 0)


def test_the_kept_listing_is_a_copy():
    cache = Listings(ttl=60)
    given = listing("f", 3)
    cache.put(1, given)
    given.clear()
    kept = cache.get(1)
    assert kept is not None
    assert len(kept) == 3
