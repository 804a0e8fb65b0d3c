"""Small helpers shared across the package: atomic file writes, seeding, devices."""

from __future__ import annotations

import csv
import io
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from deepworks.errors import ConfigError, DeepworksError


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (so a rename survives a power loss)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``: readers see the old
    file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DeepworksError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def csv_text(rows: list[dict]) -> str:
    """Rows of dicts (the first one's keys are the header) as CSV text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(name: str) -> torch.device:
    """ "auto" → cuda, then mps, then cpu; an unavailable explicit device is a ConfigError."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(
            f"train.device: {name!r} is not available on this machine; use device: auto or cpu"
        )
    return torch.device(name)


def new_run_dir(out: str | Path, name: str) -> Path:
    """Create ``out/name``; if it exists, ``out/name-2``, ``-3``, ... (never reuse a run)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeepworksError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    for i in range(1, 10_000):
        path = out / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise DeepworksError(f"{path}: cannot create the run folder ({exc.strerror})") from exc
    raise DeepworksError(f"{out}: too many runs named {name!r}; choose another name")
