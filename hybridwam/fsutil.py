"""Crash-safe files: atomic writes, and the clean-up of what killed processes left behind.

No heavy imports (the kernel cache uses it before Warp or torch are needed).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time

#: temporary files of :func:`atomic_write` are named ``.tmp-<pid>-<random><final name>``
TEMP_PREFIX = ".tmp-"
_TEMP_PID = re.compile(r"^\.tmp-(\d+)-")


def atomic_write(path: str, write):
    """``write(tmp)`` into a temporary file beside ``path``, flushed to disk, then renamed onto
    ``path``: readers see the old file or the new one, never a part. The temporary file is removed
    when ``write`` raises; one left by a killed process is removed by :func:`clean_stale_temp`."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def atomic_write_text(path: str, text: str):
    def write(p):
        with open(p, "w") as f:
            f.write(text)

    atomic_write(path, write)


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def clean_stale_temp(folder: str, min_age_s: float = 3600.0) -> list[str]:
    """Remove the temporary files of :func:`atomic_write` in ``folder`` that killed processes left
    behind: those whose writing process no longer runs, and any older than ``min_age_s`` seconds.
    Returns the names removed."""
    now, removed = time.time(), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(TEMP_PREFIX):
            continue
        with contextlib.suppress(OSError):
            if not e.is_file(follow_symlinks=False):
                continue
            m = _TEMP_PID.match(e.name)
            dead = m is not None and not pid_alive(int(m.group(1)))
            if dead or now - e.stat(follow_symlinks=False).st_mtime > min_age_s:
                os.unlink(e.path)
                removed.append(e.name)
    return removed
