"""Dates written the many ways people write them, to be translated into ISO 8601.

A small, fully generated translation task for sequence-to-sequence models: the source is a date
as a person might write it, the target the same date as ``YYYY-MM-DD``::

    "3 March 1997"            -> "1997-03-03"
    "Mar 3, 1997"             -> "1997-03-03"
    "03/03/97"                -> "1997-03-03"   (US order: month / day / two-digit year)
    "monday, march 3rd 1997"  -> "1997-03-03"
    "3-MAR-1997"              -> "1997-03-03"

Every sample is a different calendar day between 1950-01-01 and 2049-12-31 (a two-digit year
``yy`` is 19yy from 50 up and 20yy below, so it is never ambiguous), written in one of
:data:`FORMATS` drawn at random. Because each day appears once, no date is in two splits: the
test split measures translation of unseen dates, not recall.

Source and target are character sequences; one :class:`~deepworks.data.text.vocab.CharTokenizer`
each is fitted on the training part only. ``x`` holds the source ids padded with 0 (``<pad>``),
``y`` the target ids ``<bos> Y Y Y Y - M M - D D <eos>``, so a decoder's input is ``y[:, :-1]``
and its target ``y[:, 1:]``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

from deepworks.data.bundle import DataBundle, Split
from deepworks.data.text.vocab import PAD_ID, CharTokenizer, pad_batch
from deepworks.errors import DataError
from deepworks.registry import register_dataset

FIRST_DAY = dt.date(1950, 1, 1)
LAST_DAY = dt.date(2049, 12, 31)
NUM_DAYS = (LAST_DAY - FIRST_DAY).days + 1

MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def ordinal(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _month(d: dt.date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: dt.date) -> str:
    return WEEKDAYS[d.weekday()]


#: The ways a date is written, each a function of the date.
FORMATS: tuple[Callable[[dt.date], str], ...] = (
    lambda d: f"{d.day} {_month(d).title()} {d.year}",  # 3 March 1997
    lambda d: f"{_month(d)[:3].title()} {d.day}, {d.year}",  # Mar 3, 1997
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",  # 03/03/97
    lambda d: f"{_weekday(d)}, {_month(d)} {ordinal(d.day)} {d.year}",  # monday, march 3rd 1997
    lambda d: f"{d.year}.{d.month:02d}.{d.day:02d}",  # 1997.03.03
    lambda d: f"{d.day}-{_month(d)[:3].upper()}-{d.year}",  # 3-MAR-1997
    lambda d: f"{_month(d).title()} {d.day}, {d.year}",  # March 3, 1997
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",  # 03.03.1997 (day first)
    lambda d: f"{_weekday(d).title()} {d.day} {_month(d).title()} {d.year}",  # Monday 3 March 1997
    lambda d: d.isoformat(),  # 1997-03-03
    lambda d: f"{d.month}/{d.day}/{d.year}",  # 3/3/1997
    lambda d: f"the {ordinal(d.day)} of {_month(d)}, {d.year}",  # the 3rd of march, 1997
    lambda d: f"{_month(d)[:3].upper()} {d.day:02d} {d.year}",  # MAR 03 1997
    lambda d: f"{d.year}{d.month:02d}{d.day:02d}",  # 19970303
    lambda d: f"{_weekday(d)[:3].title()}, {d.day} {_month(d)[:3].title()} {d.year}",
    lambda d: f"{d.day} {_month(d)[:3]} {d.year % 100:02d}",  # 3 mar 97
)


def generate(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` distinct random days as (human-written sources, ISO targets), seeded."""
    if not 1 <= n <= NUM_DAYS:
        raise DataError(f"data.n: {n} dates asked for; give 1 to {NUM_DAYS} (one per day)")
    rng = np.random.default_rng(seed)
    days = rng.choice(NUM_DAYS, size=n, replace=False)
    styles = rng.integers(0, len(FORMATS), size=n)
    dates = [FIRST_DAY + dt.timedelta(days=int(k)) for k in days]
    sources = [FORMATS[s](d) for s, d in zip(styles, dates, strict=True)]
    return sources, [d.isoformat() for d in dates]


def split_sizes(n: int, split: dict[str, float]) -> dict[str, int]:
    """Samples per split from the held-out fractions; every asked-for split gets at least one."""
    sizes = {}
    for name in ("val", "test"):
        frac = float(split.get(name, 0.0) or 0.0)
        if frac < 0 or frac >= 1:
            raise DataError(f"data.split.{name}: {frac} must be in [0, 1)")
        sizes[name] = round(frac * n)
        if frac > 0 and sizes[name] == 0:
            raise DataError(
                f"data.n: {n} dates leave the {name} split ({frac}) empty; use a larger n"
            )
    sizes["train"] = n - sizes["val"] - sizes["test"]
    if sizes["train"] < 1:
        raise DataError(f"data.n: {n} dates leave nothing for training; use a larger n")
    return sizes


@register_dataset("dates")
def dates(
    split: dict[str, float],
    seed: int = 0,
    n: int = 20000,
    max_len: int | None = None,
    truncate: bool = False,
) -> DataBundle:
    """Human-written dates → ISO ``YYYY-MM-DD`` (seq2seq, character level, generated offline).

    Args:
        split: Held-out fractions, e.g. ``{"val": 0.1, "test": 0.2}``.
        seed: Seed of the dates, their formats and the split.
        n: Number of samples (distinct days, at most 36,524).
        max_len: Source length in characters (None: the longest generated date).
        truncate: Cut longer sources to ``max_len`` instead of failing.
    """
    sources, targets = generate(n, seed)
    longest = max(len(s) for s in sources)
    if max_len is not None:
        if max_len < 1:
            raise DataError(f"data.max_len: {max_len} must be at least 1")
        if max_len < longest and not truncate:
            raise DataError(
                f"data.max_len: {max_len} is shorter than the longest date ({longest} "
                "characters); raise it, leave it out, or set data.truncate: true"
            )
    sizes = split_sizes(n, split)
    # The dates were drawn in random order, so consecutive blocks are a random split.
    bounds = {"train": (0, sizes["train"])}
    bounds["val"] = (sizes["train"], sizes["train"] + sizes["val"])
    bounds["test"] = (bounds["val"][1], n)
    src_tok = CharTokenizer.fit(sources[: sizes["train"]])
    tgt_tok = CharTokenizer.fit(targets[: sizes["train"]])
    length = max_len or longest
    x, _ = pad_batch([src_tok.encode(s) for s in sources], max_len=length)
    y, _ = pad_batch([tgt_tok.encode(t) for t in targets], bos=True, eos=True)

    def part(name: str) -> Split | None:
        lo, hi = bounds[name]
        return Split(x[lo:hi], y[lo:hi]) if hi > lo else None

    return DataBundle(
        name="dates",
        train=part("train"),
        val=part("val"),
        test=part("test"),
        task_type="seq2seq",
        input_shape=(x.shape[1],),
        num_classes=len(tgt_tok.vocab),
        model_sizes={"vocab_size": len(src_tok.vocab), "pad_id": PAD_ID},
        extras={"tokenizer": src_tok.to_dict(), "target_tokenizer": tgt_tok.to_dict()},
    )
