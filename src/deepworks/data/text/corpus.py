"""Text corpora for language modelling: files → one token stream → (x, y) windows.

A language model learns ``p(token_t | tokens_<t)``. Its training data is one long token stream
cut into windows of ``bptt`` tokens; the target of each position is the next token::

    stream   t0 t1 t2 t3 t4 t5 t6 t7 t8 ...
    x[0]     t0 t1 t2 t3          y[0]  t1 t2 t3 t4      (bptt = 4)
    x[1]     t4 t5 t6 t7          y[1]  t5 t6 t7 t8

**Held-out files.** The corpus is split *by file*: validation and test text come from files the
model never saw, so the held-out bits per character measure how well it writes new code, not
how well it remembers a file it has read.

**Truncated BPTT with a carried state** (``stateful: true``, the classic word-LM recipe). The
training stream is cut into ``B`` (= the batch size) parallel rows, and sample ``k*B + i`` is
window ``k`` of row ``i``. Batch ``k`` (kept in order) then continues batch ``k - 1`` row for
row, so a recurrent model can carry its hidden state from one batch to the next and learn
dependencies longer than one window::

    row 0   [x0 ][x4 ][x8 ] ...       batch 0 = x0 x1 x2 x3
    row 1   [x1 ][x5 ][x9 ] ...       batch 1 = x4 x5 x6 x7   (continues batch 0)
    row 2   [x2 ][x6 ][x10] ...
    row 3   [x3 ][x7 ][x11] ...

**Evaluation with context.** Validation and test windows carry ``eval_context`` extra tokens of
preceding text in front (x is ``(N, eval_context + bptt)``, y is ``(N, bptt)``): every held-out
token is scored exactly once, each with at least ``eval_context`` tokens of history, for any
model and without carrying state across batches.

Bits per character = total nats / total characters / ln 2. For character tokens it is the
loss in nats per token / ln 2; ``extras["chars_per_token"]`` converts for other tokenizers.
"""

from __future__ import annotations

import math
import os
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from deepworks.data.bundle import DataBundle, Split
from deepworks.data.text.tokenizers import build_tokenizer, vocab_size_of
from deepworks.errors import ConfigError, DataError
from deepworks.registry import register_dataset

#: Package folders of the standard library that hold test suites or third-party code.
STDLIB_SKIP = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages"})
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py")


def stdlib_files() -> list[Path]:
    """The standard library's own ``.py`` files (top level and packages), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in STDLIB_SKIP and d != "__pycache__"]
        files += [Path(folder, n) for n in names if n.endswith(".py")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def text_files(path: str | Path, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> list[Path]:
    """A text file, or the text files under a folder (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"data.path: {path} does not exist; give a text file or a folder of them")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes)


@dataclass(frozen=True)
class Document:
    """Text already in memory that takes a file's place in a corpus (a chunk of one file)."""

    text: str


def read_text(source: Path | Document, max_chars: int | None) -> str:
    """A file's text (undecodable bytes replaced), cut at a line end after ``max_chars``."""
    if isinstance(source, Document):
        text = source.text
    else:
        text = source.read_text(encoding="utf-8", errors="replace")
    if max_chars is not None and len(text) > max_chars:
        cut = text.rfind("\n", 0, max_chars)
        text = text[: cut + 1 if cut > 0 else max_chars]
    return text


def split_files(
    files: Sequence[Path | Document],
    fractions: dict[str, float],
    max_chars: int,
    max_file_chars: int | None,
    seed: int,
) -> dict[str, list[str]]:
    """Texts per split: files in a seeded order fill test, then val, then train, each up to its
    share of ``max_chars``; a file never lands in two splits."""
    val, test = float(fractions.get("val", 0.0)), float(fractions.get("test", 0.0))
    if val < 0 or test < 0 or val + test >= 1:
        raise DataError(
            f"data.split: val={val} and test={test} must be >= 0 and sum to less than 1"
        )
    # a corpus smaller than the budget is shared out in the same proportions
    cap = min(max_file_chars or max_chars, max_chars)
    total = min(max_chars, sum(min(_size(f), cap) for f in files))
    budgets = {"test": test * total, "val": val * total}
    budgets["train"] = total - budgets["test"] - budgets["val"]
    texts: dict[str, list[str]] = {k: [] for k in budgets}
    used = dict.fromkeys(budgets, 0)
    order = np.random.default_rng(seed).permutation(len(files))
    for i in order:
        name = next((k for k in ("test", "val", "train") if used[k] < budgets[k]), None)
        if name is None:
            break
        left = math.ceil(budgets[name] - used[name])
        text = read_text(files[i], min(cap, left))
        if text.strip():
            texts[name].append(text)
            used[name] += len(text)
            if budgets[name] - used[name] < min(200, left):  # no slivers of files
                used[name] = budgets[name]
    return texts


def _size(source: Path | Document) -> int:
    """Characters of a source, estimated by its size in bytes for a file."""
    return len(source.text) if isinstance(source, Document) else source.stat().st_size


def windows(
    ids: torch.Tensor, bptt: int, streams: int | None = None, context: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a token stream (T,) into inputs and next-token targets.

    Args:
        bptt: Target positions per window.
        streams: Lay the windows out as ``streams`` parallel rows (sample ``k*streams + i``
            continues sample ``(k-1)*streams + i``), for a carried state; None: in stream order.
        context: Extra tokens of preceding text in front of each input window (x is then
            ``(N, context + bptt)``; y stays ``(N, bptt)``). Not with ``streams``.

    Returns:
        x (N, context + bptt) and y (N, bptt), int64, with ``y[n, j]`` the token after the one
        at ``x[n, context + j]``.
    """
    if streams is None:
        n = max(0, (len(ids) - 1 - context) // bptt)
        starts = torch.arange(n) * bptt  # (N,)
        x = ids[starts[:, None] + torch.arange(context + bptt)]  # (N, context + bptt)
        y = ids[starts[:, None] + context + 1 + torch.arange(bptt)]  # (N, bptt)
        return x, y
    rows = ids[: streams * (len(ids) // streams)].view(streams, -1)  # (B, R)
    k = max(0, (rows.shape[1] - 1) // bptt)
    x = rows[:, : k * bptt].reshape(streams, k, bptt).transpose(0, 1)  # (K, B, bptt)
    y = rows[:, 1 : k * bptt + 1].reshape(streams, k, bptt).transpose(0, 1)
    return x.reshape(-1, bptt).contiguous(), y.reshape(-1, bptt).contiguous()


def corpus_bundle(
    name: str,
    files: Sequence[Path | Document],
    *,
    split: dict[str, float] | None,
    seed: int,
    max_chars: int,
    max_file_chars: int | None,
    tokenizer: str,
    vocab_size: int | None,
    min_freq: int,
    bptt: int,
    stateful: bool,
    batch_size: int | None,
    eval_context: int | None,
) -> DataBundle:
    """Split ``files`` by file, fit the tokenizer on the training text, cut the windows."""
    if not files:
        raise DataError(f"{name}: no text files found; point data.path at a file or a folder")
    if bptt < 2:
        raise ConfigError(f"data.bptt: {bptt} is too short; use at least 2 tokens per window")
    if max_chars < 1:
        raise ConfigError(f"data.max_chars: {max_chars} must be a positive number of characters")
    if stateful and batch_size is None:
        raise ConfigError(
            "data.batch_size: stateful: true lays the training text out in batch_size parallel "
            "streams; set data.batch_size to the same value as train.batch_size"
        )
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"data.batch_size: {batch_size} must be at least 1")
    context = bptt if eval_context is None else eval_context
    if context < 0:
        raise ConfigError(f"data.eval_context: {context} must be >= 0")
    fractions = {"val": 0.1, "test": 0.2} if split is None else split
    texts = split_files(files, fractions, max_chars, max_file_chars, seed)
    if not texts["train"]:
        raise DataError(f"{name}: the files hold no text; nothing to train on")
    tok = build_tokenizer(tokenizer, texts["train"], vocab_size=vocab_size, min_freq=min_freq)
    splits: dict[str, Split | None] = {"train": None, "val": None, "test": None}
    chars: dict[str, int] = {}
    chars_per_token: dict[str, float] = {}  # of each split's whole stream
    for key, parts in texts.items():
        if fractions.get(key, 0.0) == 0 and key != "train":
            continue
        text = "\n".join(parts)
        ids = torch.tensor(tok.encode(text), dtype=torch.int64)
        if key == "train":
            x, y = windows(ids, bptt, batch_size if stateful else None)
            need = (bptt + 1) * (batch_size if stateful else 1)
        else:
            x, y = windows(ids, bptt, context=context)
            need = context + bptt + 1
        if len(x) == 0:
            raise DataError(
                f"data.max_chars: {max_chars:,} characters leave the {key} split "
                f"{len(ids):,} tokens, fewer than the {need:,} one window needs; raise "
                "max_chars or lower bptt"
            )
        splits[key] = Split(x, y)
        chars[key] = len(text)
        chars_per_token[key] = len(text) / len(ids)
    vocab = vocab_size_of(tok)
    return DataBundle(
        name=name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        task_type="language_model",
        input_shape=(bptt,),
        num_classes=vocab,
        class_names=None,
        model_sizes={"vocab_size": vocab, "pad_id": 0},
        extras={
            "tokenizer": tok.to_dict(),
            "chars_per_token": 1.0 if tok.kind == "char" else chars_per_token["train"],
            # the evaluation tells its split by the number of targets it scores
            "chars_per_token_by_targets": {
                str(s.y.numel()): 1.0 if tok.kind == "char" else chars_per_token[k]
                for k, s in splits.items()
                if s is not None
            },
            "stateful": stateful,
            "streams": batch_size if stateful else None,
            "bptt": bptt,
            "eval_context": context,
            "files": {k: len(v) for k, v in texts.items()},
            "characters": chars,
        },
    )


@register_dataset("stdlib_code")
def stdlib_code(
    split: dict[str, float] | None = None,
    seed: int = 0,
    max_chars: int = 3_000_000,
    max_file_chars: int | None = 30_000,
    tokenizer: Literal["char", "word", "bpe"] = "char",
    vocab_size: int | None = None,
    min_freq: int = 1,
    bptt: int = 128,
    stateful: bool = False,
    batch_size: int | None = None,
    eval_context: int | None = None,
) -> DataBundle:
    """The installed Python standard library's source code as a character corpus.

    Args:
        split: Fractions of ``max_chars`` for val and test, taken from whole held-out files.
        seed: Order in which files are drawn into the splits.
        max_chars: Total characters over all splits.
        max_file_chars: Characters kept per file (at a line end), so the budget spreads over
            many files instead of a few long modules.
        tokenizer: "char" (one token per character), "word" or "bpe" (byte-pair encoding).
        vocab_size: Largest vocabulary (bpe default 1000; char and word keep every token).
        min_freq: Characters seen fewer times in the training text become ``<unk>``.
        bptt: Tokens per training window (the truncated back-propagation length).
        stateful: Lay the training windows out for a carried hidden state (needs
            ``batch_size``, which must equal ``train.batch_size``).
        batch_size: The number of parallel streams of the stateful layout.
        eval_context: Tokens of preceding text in front of each val/test window (default:
            ``bptt``).
    """
    return corpus_bundle(
        "stdlib_code",
        stdlib_files(),
        split=split,
        seed=seed,
        max_chars=max_chars,
        max_file_chars=max_file_chars,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        min_freq=min_freq,
        bptt=bptt,
        stateful=stateful,
        batch_size=batch_size,
        eval_context=eval_context,
    )


@register_dataset("text_file")
def text_file(
    path: str,
    split: dict[str, float] | None = None,
    seed: int = 0,
    max_chars: int = 5_000_000,
    max_file_chars: int | None = None,
    tokenizer: Literal["char", "word", "bpe"] = "char",
    vocab_size: int | None = None,
    min_freq: int = 1,
    bptt: int = 128,
    stateful: bool = False,
    batch_size: int | None = None,
    eval_context: int | None = None,
) -> DataBundle:
    """A text file, or a folder of text files (.txt, .md, .rst, .py), as a corpus.

    A folder is split by file, like ``stdlib_code``; a single file is cut into chunks of
    ``max_file_chars`` (default: 1/20 of the text) that are split like files, so validation
    and test text is still text the model never saw.

    Args:
        path: A text file, or a folder searched for .txt, .md, .rst and .py files.
        split: Fractions of ``max_chars`` for val and test, taken from whole held-out files
            (or chunks).
        seed: Order in which files (or chunks) are drawn into the splits.
        max_chars: Total characters over all splits.
        max_file_chars: Characters kept per file (at a line end); for a single file, the size
            of its chunks (default: 1/20 of the text).
        tokenizer: "char" (one token per character), "word" or "bpe" (byte-pair encoding).
        vocab_size: Largest vocabulary (bpe default 1000; char and word keep every token).
        min_freq: Tokens seen fewer times in the training text become ``<unk>``.
        bptt: Tokens per training window (the truncated back-propagation length).
        stateful: Lay the training windows out for a carried hidden state (needs
            ``batch_size``, which must equal ``train.batch_size``).
        batch_size: The number of parallel streams of the stateful layout.
        eval_context: Tokens of preceding text in front of each val/test window (default:
            ``bptt``).
    """
    files: Sequence[Path | Document] = text_files(path)
    if len(files) == 1:
        text = read_text(files[0], max_chars)
        size = max_file_chars or max(1, len(text) // 20)
        files = [Document(chunk) for chunk in _line_chunks(text, size) if chunk.strip()]
        if not files:
            raise DataError(f"data.path: {path} holds no text; give a file with text in it")
    return corpus_bundle(
        str(path),
        files,
        split=split,
        seed=seed,
        max_chars=max_chars,
        max_file_chars=max_file_chars,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        min_freq=min_freq,
        bptt=bptt,
        stateful=stateful,
        batch_size=batch_size,
        eval_context=eval_context,
    )


def _line_chunks(text: str, size: int) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end
