"""Volumes a test can take away: a store directory that can be detached and attached again,
and a small disk that can be filled and freed.

``DetachableDirectory``: making a directory read-only proves nothing when the tests run as root
(root writes anyway), so the store is reached through a symlink to the volume's directory
instead: ``detach`` moves that directory aside, and every operation under the path fails with an
``OSError`` (the path dangles, as a mount point does once its network volume is gone), for root
too; ``attach`` moves it back with everything it held.

``SmallDisk``: a tmpfs of a few MiB mounted for the test (it needs root, as these machines run;
a mount that fails raises, so a test that needs a full disk fails rather than skips). ``fill``
writes a filler file until the disk answers ENOSPC; ``free`` removes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from types import TracebackType


class DetachableDirectory:
    """``path`` is the directory a sink is configured with; see the module docstring."""

    def __init__(self, parent: Path, name: str = "store") -> None:
        self.path = parent / name
        self._volume = parent / f".{name}-volume"
        self._aside = parent / f".{name}-detached"
        self._volume.mkdir(parents=True)
        self.path.symlink_to(self._volume, target_is_directory=True)

    @property
    def attached(self) -> bool:
        """Whether ``path`` reaches the volume."""
        return self._volume.is_dir()

    def detach(self) -> None:
        """Make ``path`` unusable (it dangles)."""
        self._volume.rename(self._aside)

    def attach(self) -> None:
        """Make ``path`` reach the volume again, with what it held."""
        self._aside.rename(self._volume)


class SmallDisk:
    """A tmpfs of ``size_mib`` MiB mounted at ``path``; see the module docstring."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self.filler = path / ".filler"

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            raise RuntimeError(
                f"cannot mount a {self.size_mib} MiB tmpfs at {self.path} (this test needs "
                f"root): {mounted.stderr.strip()}"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # lazily: a process that still has a file open there must not keep the mount
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def fill(self) -> int:
        """Write the filler until nothing more fits; returns the bytes it holds."""
        written = 0
        with open(self.filler, "ab", buffering=0) as out:
            block = b"\0" * 1024**2
            while True:
                try:
                    written += out.write(block) or 0  # a short write when little is left
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    return written

    def free(self) -> None:
        """Remove the filler."""
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()


__all__ = ["DetachableDirectory", "SmallDisk"]
