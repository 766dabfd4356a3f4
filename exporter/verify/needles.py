"""What to look for: each noted value in the spellings free text gives it.

Text is compared as runs of letters and digits, lower-cased: ``SMITH^JOHN``,
``Smith, John`` and ``smith john`` are all (smith, john). A needle is such a
tuple; a name also gives (john, smith), a date its usual written forms, a
phone number its digits alone. A haystack matches where a run of its words
equals a needle, so a needle never matches inside a longer word or number.
Original UIDs are matched whole, by set membership.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_WORD = re.compile(r"[^\W_]+")  # letters and digits; "_" separates
_UID = re.compile(r"(?<![\d.])\d+(?:\.\d+){2,}(?!\d)")  # "1.2.3.dcm" too
# One word alone must be this long to count (shorter ones are everywhere).
MIN_SINGLE = 4


def words(text: str) -> list[str]:
    """The word runs of ``text``, lower-cased."""
    return _WORD.findall(text.lower())


@dataclass
class Needles:
    """Every needle, by word tuple, with the kind of value it stands for."""

    phrases: dict[tuple[str, ...], str] = field(default_factory=dict)
    uids: set[str] = field(default_factory=set)
    longest: int = 1
    firsts: set[str] = field(default_factory=set)  # first words of the phrases

    def add(self, kind: str, phrase: Iterable[str]) -> None:
        """Add one spelling (a tuple of words)."""
        key = tuple(phrase)
        if not key or (len(key) == 1 and len(key[0]) < MIN_SINGLE):
            return
        self.phrases.setdefault(key, kind)
        self.longest = max(self.longest, len(key))
        self.firsts.add(key[0])

    def find(self, text: str) -> Iterator[str]:
        """The kinds of the needles in ``text`` (a kind once per match)."""
        tokens = words(text)
        for start, first in enumerate(tokens):
            if first not in self.firsts:
                continue
            for length in range(1, min(self.longest, len(tokens) - start) + 1):
                kind = self.phrases.get(tuple(tokens[start : start + length]))
                if kind is not None:
                    yield kind
        if self.uids:
            for match in _UID.finditer(text):
                if match.group() in self.uids:
                    yield "original UID"


def build(values: Iterable[tuple[str, str]], uids: Iterable[str] = ()) -> Needles:
    """Needles for noted (kind, value) pairs and original UIDs."""
    needles = Needles(uids=set(uids))
    for kind, value in values:
        for phrase in spellings(kind, value):
            needles.add(kind, phrase)
    return needles


def spellings(kind: str, value: str) -> Iterator[tuple[str, ...]]:
    """The word tuples ``value`` may take in free text."""
    if kind == "name":
        yield from _name(value)
    elif kind.endswith("date"):
        yield from _date(value)
    else:
        yield tuple(words(value))
        if kind == "phone number":
            digits = "".join(ch for ch in value if ch.isdigit())
            if len(digits) >= 7:
                yield (digits,)
        if kind == "address":
            for line in re.split(r"[\r\n^,]+", value):
                if len(words(line)) >= 2:
                    yield tuple(words(line))


def _name(value: str) -> Iterator[tuple[str, ...]]:
    """PN: family^given^middle^prefix^suffix, possibly with = groups."""
    for group in value.split("="):
        parts = [words(p) for p in group.split("^")]
        family, given = [*parts, [], []][:2]
        middle = parts[2] if len(parts) > 2 else []
        if not family and not given:
            continue
        yield tuple(w for p in parts for w in p)  # as stored
        yield (*given, *family)
        yield (*given, *middle, *family)
        yield (*family, *given, *middle)
        if family and len("".join(family)) >= MIN_SINGLE:
            yield tuple(family)  # "Mr Smith": a family name alone


_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


def _date(value: str) -> Iterator[tuple[str, ...]]:
    """DA (YYYYMMDD) and the forms people write it in."""
    digits = value.strip()[:8]
    try:
        day = datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return
    yyyy, mm, dd = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
    m, d = str(day.month), str(day.day)
    month = _MONTHS[day.month - 1]
    yield (digits,)
    for month_text in (month, month[:3]):
        yield (d, month_text, yyyy)
        yield (month_text, d, yyyy)
        yield (dd, month_text, yyyy)
    for a, b in ((mm, dd), (m, d), (dd, mm), (d, m)):
        yield (yyyy, a, b)
        yield (a, b, yyyy)
    yield (dd, mm, yyyy[2:])
    yield (mm, dd, yyyy[2:])


@dataclass
class Scoped:
    """Needles for everywhere, and needles for one patient's files only."""

    everywhere: Needles
    by_patient: dict[str, Needles] = field(default_factory=dict)

    def digest(self) -> str:
        """Names this set of needles: a cache of findings is good for it only."""
        parts = [_needles_text(self.everywhere)]
        parts += [
            f"{p}\n{_needles_text(n)}" for p, n in sorted(self.by_patient.items())
        ]
        return hashlib.sha256("\n--\n".join(parts).encode()).hexdigest()

    def find(self, text: str, patient: str | None = None) -> Iterator[str]:
        """Kinds in ``text``; a patient's own needles too when ``patient`` is known."""
        yield from self.everywhere.find(text)
        own = self.by_patient.get(patient or "")
        if own is not None:
            yield from own.find(text)


def build_scoped(
    values: Iterable[tuple[str, str, str]], uids: Iterable[str] = ()
) -> Scoped:
    """Needles from (kind, value, patient) rows; an empty patient: everywhere."""
    rows = list(values)
    scoped = Scoped(build(((k, v) for k, v, p in rows if not p), uids))
    patients = sorted({p for _, _, p in rows if p})
    for patient in patients:
        scoped.by_patient[patient] = build((k, v) for k, v, p in rows if p == patient)
    return scoped


def _needles_text(needles: Needles) -> str:
    phrases = sorted(f"{kind}\t{' '.join(p)}" for p, kind in needles.phrases.items())
    return "\n".join([*phrases, *sorted(needles.uids)])
