"""Small file helpers at the bottom of the layers: atomic writes that keep normal permissions.

A temporary file from `tempfile.mkstemp` is created 0600 whatever the umask; renamed into place,
it would make run.json, parquet and export files unreadable to the other users of a shared
machine. Every atomic writer here gives its temporary file the mode a plain `open(path, "w")`
would have given (0666 less the umask), or keeps the mode of the file it replaces.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask, read without changing it where the kernel tells it (Linux; ~10 µs,
    so it is read on every write and a changed umask is followed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # no /proc: read it by setting it, and put it back at once
    os.umask(old)
    return old


def file_mode(path: Path | None = None) -> int:
    """The mode a new file at `path` should get: the existing file's, or 0666 less the umask."""
    if path is not None:
        try:
            return os.stat(path).st_mode & 0o7777
        except OSError:
            pass
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """An open temporary file (fd, path) in `path`'s folder, for an atomic rename onto `path`,
    with the mode that `path` will have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, file_mode(path))
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, Path(tmp)


def make_dir_temp(parent: Path, prefix: str) -> Path:
    """`tempfile.mkdtemp` with the folder mode a plain mkdir would give (not 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, dir_mode())
    return tmp


def write_json_atomic(
    path: Path, data: str | dict[str, Any] | list[Any], *, fsync: bool = True
) -> None:
    """Write JSON (or text) through a temporary file and a rename: readers see all or nothing;
    with `fsync` (for commit points such as result.json) even after a power loss."""
    text = data if isinstance(data, str) else json.dumps(data, indent=2, default=str)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
