"""From a dataset name to a :class:`DataBundle`: load, validate, split, impute, scale, rebalance.

The order matters: imputation and scaling statistics and resampling see the training split only,
so nothing about the validation or test samples leaks into training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from deepworks.data.bundle import DataBundle, LazySplit, RawData, Split, target_dtype
from deepworks.data.imbalance import resample
from deepworks.data.validate import validate_raw
from deepworks.errors import DataError
from deepworks.registry import DATASETS, accepted_kwargs

DEFAULT_SPLIT = {"val": 0.1, "test": 0.2}


def load_raw(name: str, options: dict[str, Any] | None = None, where: str = "data") -> RawData:
    """Load a registered dataset by name, with its options checked against its signature."""
    raw = DATASETS.build(name, options or {}, where=where)
    validate_raw(raw)
    return raw


def split_indices(
    y: np.ndarray, fractions: dict[str, float], seed: int, stratify: bool
) -> dict[str, np.ndarray]:
    """Seeded (stratified where possible) train/val/test index split."""
    val, test = float(fractions.get("val", 0.0)), float(fractions.get("test", 0.0))
    if val < 0 or test < 0 or val + test >= 1:
        raise DataError(
            f"data.split: val={val} and test={test} must be >= 0 and sum to less than 1"
        )
    n = len(y)
    idx = np.arange(n)
    out: dict[str, np.ndarray] = {}

    def cut(indices: np.ndarray, size: float, name: str):
        labels = y[indices] if stratify else None
        if labels is not None:
            counts = np.bincount(labels)
            if counts[counts > 0].min() < 2:
                labels = None  # a class with one sample cannot be stratified
        k = round(size * len(indices)) if size < 1 else int(size)
        if k == 0 and size > 0:
            raise DataError(
                f"data.split: the {name} split of {n} samples at {size} is empty; "
                "use a larger fraction or more data"
            )
        if k >= len(indices):
            raise DataError(f"data.split: nothing is left for training out of {n} samples")
        try:
            return train_test_split(indices, test_size=k, random_state=seed, stratify=labels)
        except ValueError:  # too few samples per class for a stratified cut
            return train_test_split(indices, test_size=k, random_state=seed)

    rest = idx
    if test > 0:
        rest, out["test"] = cut(rest, test, "test")
    if val > 0:
        rest, out["val"] = cut(rest, val / (1 - test), "val")
    if len(rest) == 0:
        raise DataError(f"data.split: nothing is left for training out of {n} samples")
    out["train"] = rest
    return out


def select_classes(raw: RawData, classes: list[int] | None) -> RawData:
    """Keep the samples of ``classes`` only, relabelled 0..k-1 in the given order."""
    if classes is None:
        return raw
    if raw.task_type != "classification":
        raise DataError(f"data.classes: {raw.source} has no class labels to select")
    known = len(raw.class_names) if raw.class_names else int(raw.y.max()) + 1
    bad = [c for c in classes if not 0 <= c < known]
    if bad or len(set(classes)) != len(classes):
        raise DataError(
            f"data.classes: {classes} must be distinct labels in 0..{known - 1} of {raw.source}"
        )
    keep = np.isin(raw.y, classes)
    relabel = np.full(known, -1, np.int64)
    relabel[classes] = np.arange(len(classes))
    names = [raw.class_names[c] for c in classes] if raw.class_names else [str(c) for c in classes]
    return dataclasses.replace(raw, x=raw.x[keep], y=relabel[raw.y[keep]], class_names=names)


def per_class(raw: RawData, idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded subset of ``idx`` with at most ``n`` samples of each class."""
    if raw.task_type != "classification":
        raise DataError(f"data.train_per_class: {raw.source} has no class labels")
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(idx[raw.y[idx] == c])[:n] for c in np.unique(raw.y[idx])]
    return np.sort(np.concatenate(picks))


def only_classes(raw: RawData, idx: np.ndarray, classes: list[int]) -> np.ndarray:
    """The samples of ``idx`` whose label is one of ``classes``."""
    if raw.task_type != "classification":
        raise DataError(f"data.train_classes: {raw.source} has no class labels")
    known = len(raw.class_names) if raw.class_names else int(raw.y.max()) + 1
    if not classes or any(not 0 <= c < known for c in classes):
        raise DataError(
            f"data.train_classes: {classes} must be labels in 0..{known - 1} of {raw.source}"
        )
    kept = idx[np.isin(raw.y[idx], classes)]
    if len(kept) == 0:
        raise DataError(f"data.train_classes: no training sample has a label in {classes}")
    return kept


def fit_scaler(x: np.ndarray, kind: str, is_image: bool) -> dict[str, Any] | None:
    """Fit a standard / min-max scaler on training inputs: per feature, or per image channel."""
    if kind == "none":
        return None
    axes = (0, 2, 3) if is_image and x.ndim == 4 else (0,)
    keep = is_image and x.ndim == 4
    if kind == "standard":
        shift = x.mean(axis=axes, keepdims=keep)
        scale = x.std(axis=axes, keepdims=keep)
    elif kind == "minmax":
        shift = x.min(axis=axes, keepdims=keep)
        scale = x.max(axis=axes, keepdims=keep) - shift
    else:
        raise DataError(f"data.scale: {kind!r} is not a scaling (choices: standard, minmax, none)")
    scale = np.where(scale < 1e-8, 1.0, scale)  # constant features stay as they are
    if keep:
        shift, scale = shift[0], scale[0]  # (C, 1, 1)
    return {"kind": kind, "shift": shift.tolist(), "scale": scale.tolist()}


def fit_imputer(raw: RawData, train: np.ndarray) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Fill missing (NaN) inputs with scikit-learn's ``SimpleImputer`` fitted on the training
    rows ``train`` only; returns (all inputs, filled; the imputer's description for data.json)."""
    if not raw.impute:
        return raw.x, None
    from sklearn.impute import SimpleImputer

    if raw.x.ndim != 2 or raw.dataset is not None:
        raise DataError(f"data.impute: {raw.source} is not a table; impute is for tabular data")
    names = raw.feature_names or [str(i) for i in range(raw.x.shape[1])]
    x_train = raw.x[train]
    empty = [n for n, e in zip(names, np.isnan(x_train).all(axis=0), strict=True) if e]
    if empty:
        raise DataError(
            f"{raw.source}: column(s) {', '.join(map(repr, empty))} have no values in the "
            "training split to impute from; fill them or leave them out (data.drop)"
        )
    imputer = SimpleImputer(strategy=raw.impute).fit(x_train)
    filled = imputer.transform(raw.x).astype(np.float32)  # row by row: train statistics only
    missing = np.isnan(raw.x)
    info = {
        "strategy": raw.impute,
        "columns": names,
        "statistics": imputer.statistics_.tolist(),
        "filled_train": int(missing[train].sum()),
        "filled_total": int(missing.sum()),
    }
    return filled, info


def apply_imputer(x: np.ndarray, imputer: dict[str, Any] | None) -> np.ndarray:
    """Fill the NaN of new (N, features) inputs with a saved imputer's training statistics."""
    if not imputer:
        return x
    stats = np.asarray(imputer["statistics"], dtype=np.float32)
    return np.where(np.isnan(x), stats, x).astype(np.float32)


def _scaled(x: np.ndarray, scaler: dict[str, Any] | None) -> np.ndarray:
    if scaler is None:
        return x
    return (x - np.asarray(scaler["shift"], np.float32)) / np.asarray(scaler["scale"], np.float32)


def _split(x: np.ndarray, y: np.ndarray, task_type: str) -> Split:
    return Split(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.as_tensor(y, dtype=target_dtype(task_type)),
    )


def load_dataset(
    name: str = "digits",
    *,
    split: dict[str, float] | None = None,
    seed: int = 0,
    scale: str = "standard",
    imbalance: str = "none",
    stratify: bool = True,
    classes: list[int] | None = None,
    train_per_class: int | None = None,
    train_classes: list[int] | None = None,
    **options: Any,
) -> DataBundle:
    """Load a dataset and return its train / val / test splits as tensors.

    Args:
        name: A registered dataset (``deepworks list datasets``): built-in (``digits``, ``iris``,
            ...) or a file loader (``csv``, ``npz``, ``image_folder``) with its ``path``.
        split: Fractions held out, e.g. ``{"val": 0.1, "test": 0.2}``; train gets the rest.
        seed: Seed of the split and of resampling.
        scale: "standard", "minmax" or "none", fitted on the training split only.
        imbalance: "none", "oversample" or "undersample" the training split to balance classes.
        stratify: Keep class proportions equal across splits (classification).
        classes: Keep only these class labels, relabelled 0..k-1 in the order given.
        train_per_class: Keep only this many training samples per class (few-label learning);
            validation and test stay whole.
        train_classes: Keep only these classes in the training split (the normal class of
            anomaly detection); validation and test keep every class.
        **options: Options of the dataset itself (``path``, ``target``, ``as_image``, ...).

    Sequence datasets (text, time series) take ``split``, ``seed`` and ``scale`` themselves and
    return a finished :class:`DataBundle`: their tokenizer or scaler is fitted on the training
    part, and a time series is split by time, not at random.

    Example:
        >>> data = load_dataset("digits", split={"val": 0.1, "test": 0.2}, seed=0)
        >>> data.train.x.shape
        torch.Size([1258, 64])
    """
    fractions = DEFAULT_SPLIT if split is None else split
    accepted, _ = accepted_kwargs(DATASETS.get(name, where="data.name"))
    if "split" in accepted:
        unsupported = {"imbalance": imbalance != "none", "classes": classes is not None}
        unsupported["train_per_class"] = train_per_class is not None
        unsupported["train_classes"] = train_classes is not None
        for key, used in unsupported.items():
            if used:
                raise DataError(f"data.{key}: not supported by the {name} dataset; remove it")
        given = {"split": fractions, "seed": seed, "scale": scale}
        return DATASETS.build(
            name, {k: v for k, v in given.items() if k in accepted} | options, where="data"
        )
    raw = select_classes(load_raw(name, options), classes)
    classify = raw.task_type == "classification"
    parts = split_indices(raw.y, fractions, seed, stratify and classify)
    if train_per_class is not None:
        parts["train"] = per_class(raw, parts["train"], train_per_class, seed)
    if train_classes is not None:
        parts["train"] = only_classes(raw, parts["train"], train_classes)
    return make_bundle(raw, parts, name=name, seed=seed, scale=scale, imbalance=imbalance)


def bundle_from_indices(
    raw: RawData,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    val: float,
    seed: int,
    scale: str = "standard",
    imbalance: str = "none",
    stratify: bool = True,
) -> DataBundle:
    """A bundle with a given test set (a cross-validation fold); ``val`` is cut from the rest."""
    classify = raw.task_type == "classification"
    sub = split_indices(raw.y[train_idx], {"val": val}, seed, stratify and classify)
    parts = {"train": train_idx[sub["train"]], "test": np.asarray(test_idx)}
    if "val" in sub:
        parts["val"] = train_idx[sub["val"]]
    return make_bundle(raw, parts, name=raw.source, seed=seed, scale=scale, imbalance=imbalance)


def make_bundle(
    raw: RawData,
    parts: dict[str, np.ndarray],
    *,
    name: str,
    seed: int,
    scale: str,
    imbalance: str,
) -> DataBundle:
    """Impute and scale (fitted on ``parts["train"]``), rebalance the train part and convert to
    tensors."""
    classify = raw.task_type == "classification"
    lazy = raw.dataset is not None
    extras = dict(raw.extras)
    if lazy:  # pixels are read per batch: already in [0, 1], no resampling of files
        if imbalance != "none":
            raise DataError(
                f"data.imbalance: {imbalance!r} is not supported with lazy: true; use "
                "train.loss.class_weights: balanced instead"
            )
        splits = {k: LazySplit.subset(raw, idx) for k, idx in parts.items()}
        scaler = None
    else:
        inputs, imputer = fit_imputer(raw, parts["train"])
        if imputer is not None:
            extras["imputer"] = imputer
        scaler = fit_scaler(inputs[parts["train"]].astype(np.float32), scale, raw.is_image)
        splits = {}
        for k, idx in parts.items():
            x, y = _scaled(inputs[idx].astype(np.float32), scaler), raw.y[idx]
            if k == "train" and imbalance != "none":
                if not classify:
                    raise DataError(
                        f"data.imbalance: {imbalance!r} needs class labels, but {raw.source} "
                        "is a regression dataset; use imbalance: none"
                    )
                x, y = resample(x, y, imbalance, seed)
            splits[k] = _split(x, y, raw.task_type)

    num_classes = None
    labelled = raw.task_type != "regression"
    if labelled:
        num_classes = len(raw.class_names) if raw.class_names else int(raw.y.max()) + 1
    return DataBundle(
        name=raw.source or name,
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        task_type=raw.task_type,
        input_shape=raw.input_shape,
        num_classes=num_classes,
        class_names=raw.class_names or ([str(i) for i in range(num_classes)] if labelled else None),
        feature_names=raw.feature_names,
        is_image=raw.is_image,
        scaler=scaler,
        extras=extras,
    )
