"""``docstrings``: real English text, labelled, offline — which part of Python's library is this?

The installed Python standard library documents itself in docstrings: a few thousand short
technical texts written by many people over thirty years. Each docstring here is labelled by the
*family* of modules it comes from:

============  =============================================================================
asyncio       ``asyncio/*`` (event loops, tasks, futures, streams)
email         ``email/*`` (messages, headers, MIME parts)
formats       ``json/*``, ``csv``, ``configparser``, ``plistlib``, ``tomllib/*``, ``netrc``,
              ``pickle``, ``shelve``, ``dbm/*`` (reading and writing data files)
unittest      ``unittest/*`` (test cases, runners, mocks)
web           ``http/*``, ``urllib/*`` (HTTP clients and servers, URLs)
xml           ``xml/*`` (DOM, SAX, ElementTree, expat)
============  =============================================================================

The docstrings are read with :mod:`ast` from the source files (never imported, so nothing
runs), whitespace-normalized, and kept when at least ``min_chars`` long; a text that occurs in
more than one family is dropped (it would be a label the text cannot decide). ``n_per_class``
texts of each family are drawn with the seed, so the task is balanced and can be made as small as
a fine-tuning experiment needs. The exact texts depend on the Python version.

Tokens: ``tokenizer: pretrained`` (or ``pretrained: <dir or minilm>``) encodes with a
pretrained checkpoint's own WordPiece tokenizer (``[CLS] ... [SEP]``, ids that index its
embedding), so a pretrained encoder can be fine-tuned on the labels; ``char`` / ``word`` /
``bpe`` fit a deepworks tokenizer on the training texts only, as the other text datasets do.
"""

from __future__ import annotations

import ast
import functools
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import torch

from deepworks.data.bundle import DataBundle, Split
from deepworks.data.pipeline import DEFAULT_SPLIT, split_indices
from deepworks.data.text.datasets import text_bundle
from deepworks.data.text.tokenizers import TOKENIZER_KINDS
from deepworks.errors import ConfigError, DataError
from deepworks.registry import register_dataset

#: family -> standard-library files and packages (relative to the stdlib folder)
FAMILIES: dict[str, tuple[str, ...]] = {
    "asyncio": ("asyncio",),
    "email": ("email",),
    "formats": (
        "json",
        "csv.py",
        "configparser.py",
        "plistlib.py",
        "tomllib",
        "netrc.py",
        "pickle.py",
        "shelve.py",
        "dbm",
    ),  # fmt: skip
    "unittest": ("unittest",),
    "web": ("http", "urllib"),
    "xml": ("xml",),
}
DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _sources(root: Path, part: str) -> list[Path]:
    path = root / part
    if path.is_file():
        return [path]
    files = sorted(path.rglob("*.py")) if path.is_dir() else []
    # a package's own test suite (unittest/test/...) is not the package's documentation
    return [f for f in files if "test" not in f.relative_to(path).parts[:-1]]


@functools.lru_cache(maxsize=4)
def stdlib_docstrings(min_chars: int = 40) -> dict[str, list[str]]:
    """{family: docstrings} of the installed standard library, in file and line order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: dict[str, list[str]] = {}
    for family, parts in FAMILIES.items():
        texts: dict[str, None] = {}  # insertion-ordered set
        for part in parts:
            for file in _sources(root, part):
                try:
                    tree = ast.parse(file.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, SyntaxError):
                    continue  # an unreadable file is skipped
                for node in ast.walk(tree):
                    doc = ast.get_docstring(node) if isinstance(node, DOC_NODES) else None
                    if doc:
                        text = " ".join(doc.split())
                        if len(text) >= min_chars:
                            texts[text] = None
        found[family] = list(texts)
    # a text shared by two families (e.g. a copied "Return the value.") has no single label
    seen: dict[str, int] = {}
    for texts in found.values():
        for t in texts:
            seen[t] = seen.get(t, 0) + 1
    return {f: [t for t in texts if seen[t] == 1] for f, texts in found.items()}


def _choose(
    families: list[str], n_per_class: int, min_chars: int, seed: int
) -> tuple[list[str], np.ndarray]:
    docs = stdlib_docstrings(min_chars)
    smallest = min(families, key=lambda f: len(docs[f]))
    if len(docs[smallest]) < n_per_class:
        raise DataError(
            f"docstrings: family {smallest!r} has only {len(docs[smallest])} docstrings of at "
            f"least {min_chars} characters in this Python; set data.n_per_class to at most "
            f"{len(docs[smallest])}"
        )
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for k, family in enumerate(families):
        pool = docs[family]
        picks = np.sort(rng.choice(len(pool), n_per_class, replace=False))
        texts += [pool[i] for i in picks]
        labels += [k] * n_per_class
    return texts, np.asarray(labels, np.int64)


@register_dataset("docstrings")
def docstrings(
    n_per_class: int = 60,
    max_len: int = 128,
    tokenizer: str | None = None,
    pretrained: str | None = None,
    families: list[str] | None = None,
    min_chars: int = 40,
    vocab_size: int | None = None,
    split: dict[str, float] | None = None,
    seed: int = 0,
) -> DataBundle:
    """Python standard-library docstrings labelled by module family (asyncio, email, ...).

    Args:
        n_per_class: Docstrings per family (drawn with the seed).
        max_len: Longest sequence in tokens; longer docstrings are cut (silently: most
            docstrings fit, and their opening sentence says the most).
        tokenizer: "pretrained" (a checkpoint's WordPiece), or "char" / "word" / "bpe" fitted
            on the training texts (default: pretrained when ``pretrained`` is set, else word).
        pretrained: The checkpoint whose tokenizer to use: "minilm" or a BERT-format directory
            (default with ``tokenizer: pretrained``: minilm).
        families: The families to classify (default: all six).
        min_chars: Shortest docstring kept, in characters.
        vocab_size: Largest vocabulary of a fitted tokenizer (char, word, bpe).
        split: Fractions held out for validation and test, stratified by family (default
            ``{"val": 0.1, "test": 0.2}``).
        seed: Seed of the docstrings drawn and of the split.
    """
    kinds = (*TOKENIZER_KINDS, "pretrained")
    if tokenizer is None:
        tokenizer = "pretrained" if pretrained else "word"
    if tokenizer not in kinds:
        raise ConfigError(f"data.tokenizer: {tokenizer!r} is not one of {', '.join(kinds)}")
    if pretrained and tokenizer != "pretrained":
        raise ConfigError(
            f"data.pretrained: {pretrained!r} gives the tokenizer, but data.tokenizer is "
            f"{tokenizer!r}; drop one of them"
        )
    families = list(FAMILIES) if families is None else list(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or len(families) < 2:
        raise ConfigError(
            f"data.families: {unknown or families} — give at least two of {', '.join(FAMILIES)}"
        )
    if n_per_class < 3 or max_len < 3:
        raise ConfigError("data: docstrings needs n_per_class >= 3 and max_len >= 3")
    texts, labels = _choose(families, n_per_class, min_chars, seed)
    if tokenizer != "pretrained":
        rows = [f"docstring {i}" for i in range(len(texts))]
        with warnings.catch_warnings():  # long docstrings are cut by design, not by accident
            warnings.filterwarnings("ignore", "docstrings: .* were cut", UserWarning)
            return text_bundle(
                texts, labels, families, rows, source="docstrings", tokenizer=tokenizer,
                vocab_size=vocab_size, min_freq=1, max_len=max_len, truncate=True,
                lowercase=None, split=split, seed=seed,
            )  # fmt: skip
    from deepworks.pretrained import MINILM, WordPieceTokenizer

    tok = WordPieceTokenizer.from_dir(pretrained or MINILM, max_len=max_len)
    x = tok.encode_padded(texts)  # (N, L): [CLS] ... [SEP], cut to max_len, then [PAD]
    y = torch.as_tensor(labels)
    parts = split_indices(labels, DEFAULT_SPLIT if split is None else split, seed, True)
    splits = {k: Split(x[idx], y[idx]) for k, idx in parts.items()}
    return DataBundle(
        name="docstrings",
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        task_type="classification",
        input_shape=(x.shape[1],),
        num_classes=len(families),
        class_names=families,
        model_sizes={"vocab_size": len(tok), "pad_id": tok.pad_id},
        extras={
            "tokenizer": tok.to_dict(),
            "targets": "per_sequence",
            "mask_id": tok.mask_id,
            "special_ids": tok.special_ids,
        },
    )
