"""Checkpoints as a directory: safetensors for tensors, JSON for everything else, a manifest of
SHA-256 hashes, written atomically.

Layout of one checkpoint::

    checkpoints/epoch-0007/
        model.safetensors      weights
        optimizer.safetensors  optimizer (and scheduler) tensors
        state.json             scalars: epoch, step, param groups, callback states, ...
        manifest.json          {"files": {"model.safetensors": "<sha256>", ...}}

Nothing is ever unpickled. The checkpoint is written into a temporary sibling directory, every file
and the directory are fsynced, then the directory is renamed into place: a reader sees a complete
checkpoint or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from deepworks.errors import CheckpointError
from deepworks.utils import fsync_dir

MANIFEST = "manifest.json"


def split_tensors(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace every tensor in a nested dict/list with ``{"__tensor__": key}``.

    Returns the JSON-able skeleton and the tensors by key, so an optimizer's ``state_dict`` can go
    to safetensors (tensors) + JSON (structure) without pickle.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {"__tensor__": path}
        if isinstance(node, dict):
            return {"__dict__": [[_key(k), walk(v, f"{path}.{k}")] for k, v in node.items()]}
        if isinstance(node, list | tuple):
            items = [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
            return {"__tuple__": items} if isinstance(node, tuple) else items
        return node

    return walk(obj, prefix or "t"), tensors


def _key(k: Any) -> Any:
    return k if isinstance(k, str | int | float | bool) or k is None else str(k)


def join_tensors(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            key = skeleton["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"checkpoint: tensor {key!r} is missing")
            return tensors[key]
        if "__tuple__" in skeleton:
            return tuple(join_tensors(v, tensors) for v in skeleton["__tuple__"])
        if "__dict__" in skeleton:
            return {k: join_tensors(v, tensors) for k, v in skeleton["__dict__"]}
        return {k: join_tensors(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [join_tensors(v, tensors) for v in skeleton]
    return skeleton


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
) -> Path:
    """Atomically write a checkpoint directory.

    Args:
        path: The checkpoint directory to create (replaced if it exists).
        tensors: {file stem: {name: tensor}}, e.g. {"model": model.state_dict()}.
        state: JSON-serializable scalars.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private
        hashes = {}
        for stem, named in tensors.items():
            data = {k: v.detach().cpu().contiguous() for k, v in named.items()}
            _write(tmp / f"{stem}.safetensors", st_save(data))
        _write(tmp / "state.json", json.dumps(state, indent=1, default=_json_default).encode())
        for f in sorted(tmp.iterdir()):
            hashes[f.name] = sha256(f)
        _write(tmp / MANIFEST, json.dumps({"files": hashes}, indent=1).encode())
        fsync_dir(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except OSError:
                os.replace(old, path)  # put the previous checkpoint back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"{path}: checkpoint could not be written ({exc.strerror or exc}); "
            "earlier checkpoints are intact"
        ) from exc
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def verify_checkpoint(path: str | Path) -> dict[str, str]:
    """Check that every file of the manifest exists, has its SHA-256 and parses as what its name
    says (a safetensors header, a JSON document); return the manifest.

    A hash only says that a file is the one the manifest was written for; a file that was
    replaced together with its manifest (a pickle named ``model.safetensors``, hashes recomputed)
    matches its hash, and only parsing it tells that it is not a checkpoint file.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: not a checkpoint (no {MANIFEST})")
    try:
        files = json.loads(manifest_path.read_text())["files"]
        if not isinstance(files, dict) or not all(isinstance(d, str) for d in files.values()):
            raise TypeError("'files' is not a {name: sha256} table")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if "state.json" not in files:
        raise CheckpointError(f"{manifest_path}: lists no state.json; not a complete checkpoint")
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing from the checkpoint")
        if sha256(f) != digest:
            raise CheckpointError(f"{f}: SHA-256 mismatch (corrupted or modified); not loaded")
        check_parses(f)
    return files


def check_parses(file: Path) -> None:
    """Raise :class:`CheckpointError` unless ``file`` parses: a ``.safetensors`` file's header
    (its tensor table, every tensor inside the file), a ``.json`` file's JSON (``state.json``:
    an object). Tensors are not read."""
    if file.suffix == ".safetensors":
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: not a valid safetensors file ({exc})") from exc
    elif file.suffix == ".json":
        try:
            doc = json.loads(file.read_text())
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise CheckpointError(f"{file}: not valid JSON ({exc})") from exc
        if file.name == "state.json" and not isinstance(doc, dict):
            raise CheckpointError(f"{file}: not a JSON object")


def load_checkpoint(
    path: str | Path, verify: bool = True
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Load a checkpoint directory: ({file stem: {name: tensor}}, state)."""
    path = Path(path)
    files = verify_checkpoint(path) if verify else {f.name: "" for f in path.iterdir()}
    tensors = {}
    for name in files:
        if name.endswith(".safetensors"):
            try:
                tensors[name.removesuffix(".safetensors")] = st_load((path / name).read_bytes())
            except (SafetensorError, OSError, ValueError) as exc:
                raise CheckpointError(f"{path / name}: not a valid safetensors file") from exc
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path / 'state.json'}: unreadable ({exc})") from exc
    return tensors, state


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """Which point of training a checkpoint holds: ``{"checkpoint": "step-00000120", "step": 120,
    "epoch": 5, "epoch_done": True}`` (``epoch`` counts from 0, as in ``history.csv``)."""
    path = Path(path).resolve()
    try:
        info = json.loads((path / "state.json").read_text()).get("info") or {}
    except (OSError, ValueError, AttributeError):
        info = {}
    step = info.get("step")
    if step is None and path.name.startswith("step-"):
        step = int(path.name.removeprefix("step-"))
    return {"checkpoint": path.name, "step": step} | {
        k: info[k] for k in ("epoch", "epoch_done") if k in info
    }


def describe_checkpoint(info: dict[str, Any], link: str = "") -> str:
    """``best = step-00000120 (step 120, end of epoch 5)``: one line for command output."""
    where = f"step {info.get('step')}"
    if "epoch" in info:
        where += (
            f", end of epoch {info['epoch']}"
            if info.get("epoch_done")
            else (f", during epoch {info['epoch']}")
        )
    name = f"{link} = {info['checkpoint']}" if link else info["checkpoint"]
    return f"{name} ({where})"


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load ``model.safetensors`` of a checkpoint into ``model`` (strict key and shape check)."""
    tensors, _ = load_checkpoint(path)
    if "model" not in tensors:
        raise CheckpointError(f"{path}: the checkpoint has no model.safetensors")
    try:
        model.load_state_dict(tensors["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"{path}: weights do not fit the model ({detail})") from exc


class CheckpointDir:
    """The ``checkpoints/`` folder of a run: step directories plus ``last`` and ``best`` links.

    ``checkpoints/step-00000120/`` holds one complete checkpoint; ``last`` and ``best`` are
    symbolic links to step directories, switched with an atomic ``os.replace`` only after the
    checkpoint they point to is complete. The newest ``keep_last`` step directories are kept, and
    the one ``best`` points to is never pruned.
    """

    def __init__(self, root: str | Path, keep_last: int = 2):
        self.root = Path(root)
        self.keep_last = keep_last

    def steps(self) -> list[Path]:
        """Complete step directories, newest first."""
        if not self.root.is_dir():
            return []
        dirs = [p for p in self.root.iterdir() if p.name.startswith("step-") and p.is_dir()]
        return sorted(dirs, key=lambda p: p.name, reverse=True)

    def target(self, link: str) -> Path | None:
        path = self.root / link
        return path.resolve() if path.is_symlink() or path.is_dir() else None

    def point(self, link: str, target: Path) -> None:
        """Atomically make ``root/link`` a symlink to ``target`` (a sibling directory)."""
        tmp = self.root / f".{link}.link.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target.name, tmp)
        os.replace(tmp, self.root / link)
        fsync_dir(self.root)

    def save(self, step: int, write: Any, best: bool = False) -> Path:
        """Write a checkpoint with ``write(path)`` as ``step-<step>``, then move the links."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"step-{step:08d}"
        write(path)
        self.point("last", path)
        if best:
            self.point("best", path)
        self.prune()
        return path

    def prune(self) -> None:
        keep = {self.target("best"), self.target("last")}
        for old in self.steps()[self.keep_last :]:
            if old.resolve() not in keep:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".*.tmp"):  # left by a write that was killed
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)

    def newest_valid(self, warn: Any = None) -> Path:
        """The newest checkpoint that verifies: ``last``, else older steps (each skip reported
        through ``warn``). Raises :class:`CheckpointError` if none does."""
        candidates = []
        last = self.target("last")
        if last is not None:
            candidates.append(last)
        candidates += [p for p in self.steps() if p.resolve() != last]
        problems = []
        for path in candidates:
            try:
                verify_checkpoint(path)
            except CheckpointError as exc:
                problems.append(str(exc))
                if warn is not None:
                    warn(f"skipping {path.name}: {exc}")
                continue
            if problems and warn is not None:
                warn(f"resuming from {path.name}, the newest valid checkpoint")
            return path
        detail = f" ({problems[0]})" if problems else ""
        raise CheckpointError(f"{self.root}: no valid checkpoint to resume from{detail}")
