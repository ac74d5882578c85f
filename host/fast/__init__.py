"""The fast software engine: refmodel's pipeline in numpy arrays with a numba-compiled loop.

numba's on-disk cache is keyed on each function's own source file only, so a
compiled loop that inlines code from another file, or freezes wire offsets
read from refmodel's layouts, would otherwise survive an edit of those files.
The cache therefore lives in a directory named after a digest of every source
it depends on (this package and refmodel); directories of other digests are
removed once they are an hour old (a process of another version may still be
using a younger one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path


def _cache_dir() -> Path:
    here = Path(__file__).resolve().parent
    sources = sorted(here.glob("*.py")) + sorted((here.parents[1] / "refmodel").glob("*.py"))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    root = here / "__pycache__"
    target = root / f"numba-{digest.hexdigest()[:16]}"
    if root.is_dir():
        for old in root.glob("numba-*"):
            try:
                if old != target and time.time() - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:                        # removed meanwhile by another process
                pass
        for old in root.glob("*.nb[ic]"):          # from before the cache had its own home
            old.unlink(missing_ok=True)
    return target


if "NUMBA_CACHE_DIR" not in os.environ:
    import numba

    numba.config.CACHE_DIR = str(_cache_dir())
