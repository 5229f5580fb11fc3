"""Rate-limit budgets shared by every ingest worker of one server: token buckets in a small file
that each worker maps into memory, so a key's or a source's rate holds whichever worker a
connection lands on.

The file, ``<data>/run/ratelimits-v1``, is a table of ``SLOTS`` slots of ``SLOT_SIZE`` bytes,
little-endian, zero-filled when made:

    0   u64  the bucket's name hashed (BLAKE2b, 8 bytes; 0: the slot is free)
    8   f64  tokens left
    16  f64  when they were counted (``time.monotonic()``: CLOCK_MONOTONIC, one clock for
             every process of the machine)
    24  8 bytes unused

A bucket's slot is found by linear probing from its hash and claimed under the slot's lock;
slots are never given back (names are sources and API keys: few, and a key's budget must not
be forgotten while it is in use), and a worker remembers each slot it found. Every ``take``
holds a POSIX byte-range lock on the bucket's slot alone (``lockf``) while it refills,
takes and writes back: two syscalls, a few microseconds, and buckets never contend with each
other. A lock-free update would need an atomic compare-and-swap, which Python cannot do on
shared memory; a lock on the whole file would make every key wait on every other.

A worker killed while it holds a lock loses it with its process (the kernel releases POSIX
locks), so a crash cannot wedge a bucket. A clock reading far behind a slot's (the machine
rebooted and the file stayed) restarts that bucket full. A table whose probes find no free
slot (``MAX_PROBES``) makes ``bucket`` answer ``None``: the caller falls back to a bucket of
its own, at its share of the rate.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
import weakref
from pathlib import Path

from headrace.errors import RequestRejected

FILE_NAME = "ratelimits-v1"
SLOT_SIZE = 32
SLOTS = 8192
MAX_PROBES = 64
_SLOT = struct.Struct("<Qdd")
_CLOCK_SLACK = 1.0
"""Seconds a slot's time may lead this process's clock (another worker read the clock a moment
later, then locked first); more means the clock restarted."""


def rate_limited(tokens: float, rate: float) -> RequestRejected:
    """429 ``rate_limited`` with the seconds until a token is back."""
    wait = max(1, math.ceil((1 - tokens) / rate))
    return RequestRejected(
        429, "rate_limited", "this source takes no more requests right now", retry_after=wait
    )


class SharedBuckets:
    """The shared table of one data directory, mapped once per process (``at``)."""

    # mapped while a stage uses it: a test process makes many data directories
    _open: weakref.WeakValueDictionary[Path, SharedBuckets] = weakref.WeakValueDictionary()
    _opening = threading.Lock()

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / FILE_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        size = SLOTS * SLOT_SIZE
        # two workers may both grow it: to the same size, zero-filled, so no slot is lost
        if os.fstat(self.fd).st_size < size:
            os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        weakref.finalize(self, _close, self.fd, self.map)

    @classmethod
    def at(cls, run_dir: Path) -> SharedBuckets:
        """This process's mapping of ``run_dir``'s table (one fd: closing a second one would
        drop this process's POSIX locks on the file)."""
        key = run_dir.resolve()
        with cls._opening:
            table = cls._open.get(key)
            if table is None or not table.path.exists():  # removed by a server that restarted
                table = cls._open[key] = cls(run_dir)
            return table

    def bucket(self, name: str, rate: float, capacity: float) -> SharedBucket | None:
        """The bucket called ``name`` (claimed full if new), taking ``rate`` tokens a second up
        to ``capacity``; ``None`` if the table has no slot for it."""
        tag = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
        tag = tag or 1  # 0 marks a free slot
        start = tag % SLOTS
        for probe in range(MAX_PROBES):
            offset = ((start + probe) % SLOTS) * SLOT_SIZE
            fcntl.lockf(self.fd, fcntl.LOCK_EX, SLOT_SIZE, offset)
            try:
                held = _SLOT.unpack_from(self.map, offset)[0]
                if held == 0:
                    _SLOT.pack_into(self.map, offset, tag, capacity, time.monotonic())
                if held in (0, tag):
                    return SharedBucket(self, offset, tag, rate, capacity)
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, SLOT_SIZE, offset)
        return None


def _close(fd: int, mapped: mmap.mmap) -> None:
    mapped.close()
    os.close(fd)


class SharedBucket:
    """One shared token bucket: ``rate`` tokens a second up to ``capacity``, for every worker."""

    def __init__(
        self, table: SharedBuckets, offset: int, tag: int, rate: float, capacity: float
    ) -> None:
        self.table = table
        self.offset = offset
        self.tag = tag
        self.rate = rate
        self.capacity = capacity

    def take(self, now: float | None = None) -> None:
        """Take a token, or raise 429 saying when to come back."""
        now = time.monotonic() if now is None else now
        fd, shared, offset = self.table.fd, self.table.map, self.offset
        fcntl.lockf(fd, fcntl.LOCK_EX, SLOT_SIZE, offset)
        try:
            _tag, tokens, counted = _SLOT.unpack_from(shared, offset)
            if counted > now + _CLOCK_SLACK:  # the clock restarted under a kept file
                tokens, counted = self.capacity, now
            elif now > counted:
                tokens = min(self.capacity, tokens + (now - counted) * self.rate)
                counted = now
            taken = tokens >= 1
            if taken:
                tokens -= 1
            _SLOT.pack_into(shared, offset, self.tag, tokens, counted)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, SLOT_SIZE, offset)
        if not taken:
            raise rate_limited(tokens, self.rate)
