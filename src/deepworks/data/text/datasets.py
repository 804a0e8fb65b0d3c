"""Text datasets: labelled texts as padded token-id sequences, ready for a recurrent model.

These are *sequence datasets* (they take ``split`` and ``seed``): each reads its texts, splits
them (stratified by class, seeded, with :func:`deepworks.data.pipeline.split_indices`), fits its
tokenizer on the training texts only — so no word of a validation or test text shapes the
vocabulary — and returns a finished :class:`DataBundle`:

- ``x``: (N, L) int64 token ids, padded with ``<pad>`` = 0 up to the longest text (at most
  ``max_len``), the same L for every split;
- ``y``: (N,) class indices (``text_csv``, ``text_folder``), or (N, L) one class per position
  with :data:`IGNORE_INDEX` (-100) at padding (``stdlib_calls``; train it with
  ``task: token_classification``). The task type stays "classification" in both cases: the
  classes are the same kind of thing, only the task knows whether there is one per text or one
  per token;
- ``model_sizes = {"vocab_size": V, "pad_id": 0}`` for the model's embedding, and
  ``extras["tokenizer"]`` (the fitted tokenizer's ``to_dict()``, saved in the run's data.json).

``stdlib_calls`` is a built-in tagging task made from real text, the installed Python standard
library's source: a model reads a snippet of code one character at a time and says for each
character whether it is outside a name, inside a name, or inside a name that is *called*
(immediately followed by ``(``). Whether ``print`` in ``print(x)`` is a call is decided by the
character after the name, so a left-to-right model has to guess at every letter of the name,
while a bidirectional one has read the ``(`` already.
"""

from __future__ import annotations

import csv as csv_lib
import re
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import torch

from deepworks.data.bundle import DataBundle, Split
from deepworks.data.files import _encode_targets, _existing, _missing
from deepworks.data.pipeline import DEFAULT_SPLIT, split_indices
from deepworks.data.text.tokenizers import (
    TOKENIZER_KINDS,
    Tokenizer,
    build_tokenizer,
    vocab_size_of,
)
from deepworks.data.text.vocab import PAD_ID, CharTokenizer, pad_batch
from deepworks.errors import ConfigError, DataError
from deepworks.registry import register_dataset

IGNORE_INDEX = -100  # target of a padding position: cross-entropy and the metrics skip it


def _check_options(tokenizer: str, lowercase: bool | None, max_len: int | None) -> bool:
    """Validate the shared options; return whether to lower-case (default: word only)."""
    if tokenizer not in TOKENIZER_KINDS:
        raise ConfigError(
            f"data.tokenizer: {tokenizer!r} is not a tokenizer "
            f"(choices: {', '.join(TOKENIZER_KINDS)})"
        )
    if lowercase and tokenizer == "char":
        raise ConfigError(
            "data.lowercase: the char tokenizer keeps case; use tokenizer: word or bpe, or "
            "lowercase: false"
        )
    if max_len is not None and max_len < 1:
        raise ConfigError(f"data.max_len: {max_len} must be at least 1 (or null: the longest)")
    return tokenizer == "word" if lowercase is None else lowercase


def _pad(ids: list[list[int]], max_len: int | None, truncate: bool, source: str) -> torch.Tensor:
    """Pad to the longest sequence, cutting those longer than ``max_len`` (or refusing to)."""
    longest = max(len(s) for s in ids)
    x, cut = pad_batch(ids, max_len=min(longest, max_len) if max_len else None)
    if cut and not truncate:
        raise DataError(
            f"{source}: {cut} of {len(ids)} texts are longer than max_len={max_len} tokens "
            f"(longest: {longest}); raise data.max_len or set data.truncate: true"
        )
    if cut:
        warnings.warn(
            f"{source}: {cut} of {len(ids)} texts were cut to max_len={max_len} tokens "
            f"(longest: {longest})",
            stacklevel=3,
        )
    return x


def text_bundle(
    texts: list[str],
    labels: np.ndarray,
    class_names: list[str],
    rows: list[str],
    *,
    source: str,
    tokenizer: str,
    vocab_size: int | None,
    min_freq: int,
    max_len: int | None,
    truncate: bool,
    lowercase: bool | None,
    split: dict[str, float] | None,
    seed: int,
) -> DataBundle:
    """Split labelled texts (stratified), fit the tokenizer on the training part, encode, pad.

    ``rows`` names each text in error messages ("line 3", a file path).
    """
    lower = _check_options(tokenizer, lowercase, max_len)
    parts = split_indices(labels, DEFAULT_SPLIT if split is None else split, seed, True)
    train_texts = [texts[i] for i in parts["train"]]
    options = {"lowercase": lower} if tokenizer != "char" else {}
    tok = build_tokenizer(
        tokenizer, train_texts, vocab_size=vocab_size, min_freq=min_freq, **options
    )
    ids = [tok.encode(t) for t in texts]
    if (empty := next((i for i, s in enumerate(ids) if not s), None)) is not None:
        raise DataError(
            f"{source}: {rows[empty]}: the text has no {tokenizer} tokens; fill it or drop it"
        )
    x = _pad(ids, max_len, truncate, source)  # (N, L)
    y = torch.as_tensor(labels, dtype=torch.int64)
    splits = {k: Split(x[idx], y[idx]) for k, idx in parts.items()}
    return _bundle(source, splits, class_names, tok, labels_per_token=False)


def _bundle(
    source: str,
    splits: dict[str, Split],
    class_names: list[str],
    tok: Tokenizer,
    labels_per_token: bool,
) -> DataBundle:
    return DataBundle(
        name=source,
        train=splits["train"],
        val=splits.get("val"),
        test=splits.get("test"),
        task_type="classification",
        input_shape=tuple(splits["train"].x.shape[1:]),  # (L,)
        num_classes=len(class_names),
        class_names=class_names,
        model_sizes={"vocab_size": vocab_size_of(tok), "pad_id": PAD_ID},
        extras={
            "tokenizer": tok.to_dict(),
            "targets": "per_token" if labels_per_token else "per_sequence",
        },
    )


@register_dataset("text_csv")
def text_csv(
    path: str,
    text: str = "text",
    label: str = "label",
    tokenizer: str = "word",
    vocab_size: int | None = None,
    min_freq: int = 1,
    max_len: int | None = 256,
    truncate: bool = True,
    lowercase: bool | None = None,
    delimiter: str = ",",
    split: dict[str, float] | None = None,
    seed: int = 0,
) -> DataBundle:
    """Labelled texts in a CSV file (one text column, one label column) as token-id sequences.

    Args:
        path: The CSV file; its first row names the columns.
        text: The column holding the texts.
        label: The column holding the classes (text or integers).
        tokenizer: "char", "word" or "bpe", fitted on the training texts only.
        vocab_size: Largest vocabulary, the four specials included (None: every token for char
            and word, 1000 for bpe).
        min_freq: Rarer tokens become ``<unk>``.
        max_len: Longest sequence in tokens; longer texts are cut (null: no limit).
        truncate: False: refuse texts longer than ``max_len`` instead of cutting them.
        lowercase: Lower-case before tokenizing (default: true for word, false otherwise).
        delimiter: The one-character separator between values.
        split: Fractions held out for validation and test, stratified by class (default
            ``{"val": 0.1, "test": 0.2}``).
        seed: Seed of the split.
    """
    p = _existing(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv_lib.reader(f, delimiter=delimiter)
            header = [name.strip() for name in next(reader, [])]
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV") from exc
    except csv_lib.Error as exc:
        raise DataError(f"{path}: is not valid CSV ({exc}); check quotes and delimiter") from exc
    if not header:
        raise DataError(f"{path}: the file is empty; a CSV needs a header row naming the columns")
    for name, option in ((text, "text"), (label, "label")):
        if name not in header:
            raise _missing(path, "column", name, header, f"data.{option}")
    if not rows:
        raise DataError(f"{path}: no data rows below the header; add texts to the file")
    t_col, y_col = header.index(text), header.index(label)
    texts, labels, where = [], [], []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {line} has {len(row)} values but the header has {len(header)} "
                f"columns; quote texts that hold the delimiter ({delimiter!r})"
            )
        if not row[t_col].strip():
            raise DataError(f"{path}: line {line}: text {text!r} is empty; fill it or drop the row")
        if not row[y_col].strip():
            raise DataError(f"{path}: line {line}: label {label!r} is empty; fill it or drop it")
        texts.append(row[t_col])
        labels.append(row[y_col].strip())
        where.append(f"line {line}")
    y, integral = np.asarray(labels), False
    try:
        numbers = y.astype(np.float64)
        integral = bool(np.all(numbers == np.round(numbers)))
        y = numbers if integral else y
    except ValueError:  # text labels
        pass
    y, _, names = _encode_targets(y, "classification", f"{path}: column {label!r}", integral)
    return text_bundle(
        texts, y, names, where, source=path, tokenizer=tokenizer, vocab_size=vocab_size,
        min_freq=min_freq, max_len=max_len, truncate=truncate, lowercase=lowercase,
        split=split, seed=seed,
    )  # fmt: skip


@register_dataset("text_folder")
def text_folder(
    path: str,
    tokenizer: str = "word",
    vocab_size: int | None = None,
    min_freq: int = 1,
    max_len: int | None = 256,
    truncate: bool = True,
    lowercase: bool | None = None,
    split: dict[str, float] | None = None,
    seed: int = 0,
) -> DataBundle:
    """Texts sorted into one sub-folder per class (path/spam/1.txt, path/ham/2.txt, ...).

    Each UTF-8 ``.txt`` file (nested folders included) is one text; the sub-folders, in sorted
    order, are the classes.

    Args:
        path: The folder holding one sub-folder per class.
        tokenizer: "char", "word" or "bpe", fitted on the training texts only.
        vocab_size: Largest vocabulary, the four specials included (None: every token for char
            and word, 1000 for bpe).
        min_freq: Rarer tokens become ``<unk>``.
        max_len: Longest sequence in tokens; longer texts are cut (null: no limit).
        truncate: False: refuse texts longer than ``max_len`` instead of cutting them.
        lowercase: Lower-case before tokenizing (default: true for word, false otherwise).
        split: Fractions held out for validation and test, stratified by class (default
            ``{"val": 0.1, "test": 0.2}``).
        seed: Seed of the split.
    """
    root = _existing(path, want_dir=True)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(
            f"{path}: no class sub-folders; put each class's .txt files in its own folder "
            f"({path}/spam/1.txt, {path}/ham/2.txt, ...)"
        )
    texts, labels, where = [], [], []
    for k, name in enumerate(classes):
        found = [f for f in sorted((root / name).rglob("*.txt")) if f.is_file()]
        found = [f for f in found if not f.name.startswith(".")]
        if not found:
            raise DataError(f"{path}: class folder {name!r} holds no .txt files; add or remove it")
        for f in found:
            try:
                content = f.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{f}: is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
                ) from exc
            if not content.strip():
                raise DataError(f"{f}: the text is empty; fill it or remove the file")
            texts.append(content)
            labels.append(k)
            where.append(str(f))
    return text_bundle(
        texts, np.asarray(labels, np.int64), classes, where, source=path, tokenizer=tokenizer,
        vocab_size=vocab_size, min_freq=min_freq, max_len=max_len, truncate=truncate,
        lowercase=lowercase, split=split, seed=seed,
    )  # fmt: skip


# --- a built-in task that needs the future: which names in code are called -------------------

CALL_CLASSES = ["other", "name", "call"]
NAME = re.compile(r"(?<!\w)[^\W\d]\w*")  # an identifier not glued to a preceding word char


def call_tags(snippet: str) -> list[int]:
    """One tag per character: 0 outside names, 1 inside a name, 2 inside a name directly
    followed by ``(`` (a call, within the snippet).

    Example:
        >>> call_tags("f(x)")
        [2, 0, 1, 0]
    """
    tags = [0] * len(snippet)
    for m in NAME.finditer(snippet):
        called = snippet[m.end() : m.end() + 1] == "("
        tags[m.start() : m.end()] = [2 if called else 1] * (m.end() - m.start())
    return tags


def stdlib_snippets(files: int, length: int, max_chars_per_file: int = 100_000) -> list[str]:
    """Line-aligned snippets of at most ``length`` characters from ``files`` modules of the
    installed standard library, chosen evenly from the sorted list of its top-level modules."""
    root = Path(sysconfig.get_paths()["stdlib"])
    modules = sorted(p for p in root.glob("*.py") if not p.name.startswith("_"))
    if not modules:
        raise DataError(f"stdlib_calls: no Python sources in {root} (a stripped install?)")
    picks = np.unique(np.linspace(0, len(modules) - 1, min(files, len(modules))).round())
    snippets: list[str] = []
    for i in picks.astype(int):
        try:
            source = modules[i].read_text(encoding="utf-8")[:max_chars_per_file]
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable module is skipped; the choice of the rest stays fixed
        current = ""
        for line in source.splitlines(keepends=True):
            line = line.rstrip() + "\n"
            if len(current) + len(line) > length and current:
                snippets.append(current)
                current = ""
            current += line[:length]
        if current:
            snippets.append(current)
    # keep snippets with at least one name, so every sample has something to tag
    return [s for s in snippets if NAME.search(s)]


@register_dataset("stdlib_calls")
def stdlib_calls(
    n: int = 3000,
    length: int = 64,
    files: int = 40,
    split: dict[str, float] | None = None,
    seed: int = 0,
) -> DataBundle:
    """Tag each character of Python source as other / name / call (a name followed by "(").

    Real text, no download: snippets of the installed Python standard library's modules. Train
    with ``task: token_classification`` and a per-position model (``model: {name: rnn,
    output: sequence}``); a bidirectional model sees the "(" after a name, a left-to-right one
    cannot. The exact snippets depend on the Python version.

    Args:
        n: Number of snippets (taken evenly from all snippets of the chosen modules).
        length: Longest snippet in characters (whole lines, a longer line is cut).
        files: Number of standard-library modules read (first 100,000 characters of each).
        split: Fractions of the snippets held out for validation and test (default
            ``{"val": 0.1, "test": 0.2}``).
        seed: Seed of the split.
    """
    if n < 10 or length < 8 or files < 1:
        raise ConfigError("data: stdlib_calls needs n >= 10, length >= 8, files >= 1")
    snippets = stdlib_snippets(files, length)
    if len(snippets) > n:
        snippets = [snippets[i] for i in np.linspace(0, len(snippets) - 1, n).round().astype(int)]
    parts = split_indices(np.zeros(len(snippets), np.int64), split or DEFAULT_SPLIT, seed, False)
    tok = CharTokenizer.fit(snippets[i] for i in parts["train"])
    x, _ = pad_batch([tok.encode(s) for s in snippets])  # (N, L), L = the longest snippet
    y = torch.full(x.shape, IGNORE_INDEX, dtype=torch.int64)  # (N, L)
    for i, s in enumerate(snippets):
        y[i, : len(s)] = torch.tensor(call_tags(s))
    splits = {k: Split(x[idx], y[idx]) for k, idx in parts.items()}
    return _bundle("stdlib_calls", splits, CALL_CLASSES, tok, labels_per_token=True)
