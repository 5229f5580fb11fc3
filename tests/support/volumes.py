"""A local store directory on a "volume" a test can detach and attach again.

Making a directory read-only proves nothing when the tests run as root (root writes anyway), so
the store is reached through a symlink to the volume's directory instead: ``detach`` moves that
directory aside, and every operation under the path fails with an ``OSError`` (the path dangles,
as a mount point does once its network volume is gone), for root too; ``attach`` moves it back
with everything it held.
"""

from __future__ import annotations

from pathlib import Path


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


__all__ = ["DetachableDirectory"]
