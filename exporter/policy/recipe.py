"""Read, validate and compile deid recipes into an action table.

deid is the recipe language: its parser reads the file, and exporter checks
every line first, because deid skips what it does not understand (and turns an
unknown action into BLANK), which would fail open. The compiled table is what
``policy.apply`` runs; ``tests/policy/test_differential.py`` proves that it
agrees with deid's own engine.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydicom.datadict import (
    DicomDictionary,
    RepeatersDictionary,
    keyword_dict,
    repeater_has_keyword,
    tag_for_keyword,
)
from pydicom.dataelem import DataElement

from exporter.errors import RecipeError
from exporter.policy.functions import FUNCTIONS, PURE

logger = logging.getLogger(__name__)

HEADER_ACTIONS = ("ADD", "BLANK", "JITTER", "KEEP", "REPLACE", "REMOVE")
_VALUE_REQUIRED = {"ADD", "REPLACE", "JITTER"}
_NO_VALUE = {"BLANK", "KEEP"}
_EXPANDERS = ("contains", "startswith", "endswith", "except", "select")
_TAG_PAREN = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")
_TAG_BARE = re.compile(r"^([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})$")
_PRIVATE = re.compile(r'^\(?([0-9A-Fa-f]{4}),"([^"]*)",([0-9A-Fa-f]{2})\)?$')
# deid's tokenizer: whitespace splits, except inside quotes.
_TOKENS = re.compile(r"""(?:[^\s"']+|"(?:\\.|[^"])*"|'(?:\\.|[^'])*')+""")
_EXPANDER_SPLIT = re.compile(r'^([^:"]*(?:"[^"]*"[^:"]*)*):(.*)$')


Matcher = Callable[[DataElement, str], bool]


@dataclass(frozen=True)
class Rule:
    """One action line of a recipe."""

    line: int
    action: str
    field: str
    value: str | None
    source: str

    @property
    def func(self) -> str | None:
        """The function name of a ``func:`` value, if any."""
        if self.value and self.value.startswith("func:"):
            return self.value[5:]
        return None


@dataclass
class CompiledRecipe:
    """A recipe turned into lookups by tag, by private creator, and by pattern."""

    path: str
    digest: str
    text: str
    rules: tuple[Rule, ...]
    by_tag: dict[int, list[Rule]] = field(default_factory=dict)
    by_private: dict[tuple[int, str, int], list[Rule]] = field(default_factory=dict)
    dynamic: list[tuple[Matcher, Rule]] = field(default_factory=list)
    adds: list[Rule] = field(default_factory=list)
    # True when every rule can be chosen from the tag alone (no name or VR
    # patterns, no private creator rules): the engine then leaves elements
    # that no rule touches in their raw, unparsed form.
    by_tag_only: bool = True
    # Where each part of the text came from: (first line, file), in order.
    sources: tuple[tuple[int, str], ...] = ()

    def where(self, line: int) -> str:
        """``file:line`` of a line of the text, in the file it came from."""
        start, name = 1, self.path
        for first, source in self.sources:
            if line >= first:
                start, name = first, source
        return f"{name}:{line - start + 1}"

    # Per tag, what the tag alone decides (filled by the engine as it goes).
    tag_decisions: dict[int, int] = field(default_factory=dict)
    tag_purity: dict[int, bool] = field(default_factory=dict)

    def uses(self, func: str) -> bool:
        """Whether any rule calls ``func:<func>`` (asked per instance: cached)."""
        if self._funcs is None:
            self._funcs = frozenset(r.func for r in self.rules if r.func)
        return func in self._funcs

    @property
    def all_pure(self) -> bool:
        """Every rule gives the same result for the same value (see PURE)."""
        if self._all_pure is None:
            self._all_pure = all(r.func is None or r.func in PURE for r in self.rules)
        return self._all_pure

    _all_pure: bool | None = None
    _funcs: frozenset[str] | None = None
    # deid's parsed recipe when it has %filter sections (pixel regions).
    filters: dict[str, Any] | None = None


def _keyword_suggestion(word: str) -> str:
    close = difflib.get_close_matches(word, _all_keywords(), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


@cache
def _all_keywords() -> tuple[str, ...]:
    repeaters = [entry[4] for entry in RepeatersDictionary.values()]
    return tuple(keyword_dict) + tuple(repeaters)


def repeater_key(tag: int) -> int:
    """The RepeatersDictionary-style key of a 50xx/60xx tag (low group byte 0)."""
    return (tag & 0xFF00FFFF) if 0x5000 <= tag >> 16 <= 0x60FF else tag


def _repeater_tag(keyword: str) -> int:
    for mask, entry in RepeatersDictionary.items():
        if entry[4] == keyword:
            return int(mask.replace("x", "0"), 16)
    raise KeyError(keyword)


def _check_value(rule: Rule, path: str) -> None:
    value = rule.value
    if rule.action in _VALUE_REQUIRED and not value:
        raise RecipeError(path, rule.line, f"{rule.action} needs a value")
    if rule.action in _NO_VALUE and value:
        raise RecipeError(
            path, rule.line, f"{rule.action} takes no value; found extra text"
        )
    if not value:
        return
    kind = value.split(":", 1)[0].lower() if ":" in value else ""
    if kind in ("var", "deid_func"):
        raise RecipeError(
            path,
            rule.line,
            f"{kind}: values are not supported (not reproducible across "
            f"workers); use one of func:{', func:'.join(FUNCTIONS)}",
        )
    if kind == "func" and value[5:] not in FUNCTIONS:
        close = difflib.get_close_matches(value[5:], FUNCTIONS, n=1)
        hint = f" (did you mean func:{close[0]}?)" if close else ""
        raise RecipeError(
            path,
            rule.line,
            f"unknown function {value}{hint}; known: func:{', func:'.join(FUNCTIONS)}",
        )
    if rule.action == "REMOVE" and kind != "func":
        raise RecipeError(path, rule.line, "REMOVE takes no value or a func: condition")
    if rule.action == "JITTER" and kind != "func":
        try:
            int(value)
        except ValueError:
            raise RecipeError(
                path, rule.line, "JITTER needs a whole number of days or func:"
            ) from None


def _field_matcher(rule: Rule, path: str) -> Matcher | None:
    """A matcher for an expander field, or None for a plain field."""
    text = rule.field
    if text.lower() == "all":
        return lambda elem, name: True
    parts = _EXPANDER_SPLIT.match(text)
    if not parts or _PRIVATE.match(text):
        return None
    expander, expression = parts.group(1).lower(), parts.group(2).lower()
    if expander in ("values", "fields"):
        raise RecipeError(
            path,
            rule.line,
            f"{expander}: lists are not supported yet; "
            "name the fields or use contains:/startswith:/select:",
        )
    if expander not in _EXPANDERS:
        raise RecipeError(
            path,
            rule.line,
            f"unknown field expander {expander!r}; expected all or one of "
            f"{', '.join(_EXPANDERS)}",
        )
    if expander == "select":
        return _select_matcher(expression, rule, path)
    if expander == "endswith":
        expression = f"({expression})$"
    elif expander == "startswith":
        expression = f"^({expression})"
    try:
        pattern = re.compile(expression, re.IGNORECASE)
    except re.error as exc:
        raise RecipeError(path, rule.line, f"bad regular expression: {exc}") from exc
    if expander == "except":
        return lambda elem, name: not name_contains(pattern, elem, name)
    return lambda elem, name: name_contains(pattern, elem, name)


def _select_matcher(expression: str, rule: Rule, path: str) -> Matcher:
    attribute, _, value = expression.partition(":")
    if attribute.upper() == "VR" and value:
        vr = value[:2].upper()
        return lambda elem, name: bool(vr == elem.VR)
    if attribute.upper() == "GROUP" and value:
        try:
            group = int(value, 16)
        except ValueError:
            raise RecipeError(path, rule.line, "select:group: needs hex") from None
        return lambda elem, name: bool(elem.tag.group == group)
    raise RecipeError(
        path, rule.line, "select: expects select:VR:XX or select:group:GGGG"
    )


def name_contains(pattern: re.Pattern[str], elem: DataElement, name: str) -> bool:
    """deid's name matching: nested name, tag forms, element name and keyword."""
    tag = elem.tag
    candidates = [
        name.lower(),
        f"({tag.group:04x},{tag.element:04x})",
        f"{tag.group:04X}{tag.element:04X}",
        elem.name,
        elem.keyword,
    ]
    if elem.is_private and elem.private_creator is not None:
        plain = f'{tag.group:04X},"{elem.private_creator}",{tag.element & 0xFF:02X}'
        candidates += [plain, f"({plain})"]
    return any(pattern.search(c) for c in candidates)


def _static_key(rule: Rule, path: str) -> int | tuple[int, str, int]:
    text = rule.field
    if m := _TAG_PAREN.match(text) or _TAG_BARE.match(text):
        return repeater_key(int(m.group(1) + m.group(2), 16))
    if m := _PRIVATE.match(text):
        return (int(m.group(1), 16), m.group(2), int(m.group(3), 16))
    if "__" in text:
        raise RecipeError(
            path,
            rule.line,
            "nested field paths (A__B) are not supported; "
            "a field applies at every depth already",
        )
    tag = tag_for_keyword(text)
    if tag is not None:
        return repeater_key(tag)
    if repeater_has_keyword(text):
        return _repeater_tag(text)
    raise RecipeError(
        path,
        rule.line,
        f"unknown keyword {text!r}{_keyword_suggestion(text)}; "
        "use a DICOM keyword, a tag like (0010,0010), or an expander",
    )


FILTER_LISTS = ("blacklist", "graylist", "whitelist")
_FILTER_WORDS = (
    "label",
    "contains",
    "notcontains",
    "equals",
    "notequals",
    "missing",
    "present",
    "empty",
    "coordinates",
    "keepcoordinates",
    "ctpcoordinates",
    "ctpkeepcoordinates",
)


def _check_filter_line(line: str, path: str, number: int) -> None:
    """A %filter line: LABEL, a criterion (maybe after + or ||), or coordinates."""
    word = line.lstrip("+|").strip().split(" ", 1)[0].lower()
    if word not in _FILTER_WORDS:
        raise RecipeError(
            path,
            number,
            f"unknown %filter line {word!r}; expected LABEL, a criterion "
            "(contains, equals, missing, ...) or coordinates",
        )
    if "coordinates" in word:
        value = line.split(None, 1)[1].strip() if " " in line.strip() else ""
        numbers = value.split(",")
        if (
            value != "all"
            and not value.startswith("from:")
            and (len(numbers) != 4 or not all(n.strip().isdigit() for n in numbers))
        ):
            raise RecipeError(
                path, number, "coordinates are x0,y0,x1,y1 (or all, or from:Field)"
            )


def parse_rules(text: str, path: str) -> list[Rule]:
    """Check every line of a recipe and return its header rules in order.

    Raises
    ------
    RecipeError
        On the first malformed line, naming the file and line number.
    """
    rules: list[Rule] = []
    section: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^format\b", line, re.I):
            if line.split()[-1].lower() != "dicom" or len(line.split()) != 2:
                raise RecipeError(path, number, "expected 'FORMAT dicom'")
            continue
        if line.startswith("%"):
            words = line.split("#", 1)[0].split()
            section = words[0][1:].lower()
            if section == "filter":
                if len(words) != 2 or words[1].lower() not in FILTER_LISTS:
                    raise RecipeError(
                        path,
                        number,
                        f"%filter needs a list name: {', '.join(FILTER_LISTS)}",
                    )
            elif section != "header":
                raise RecipeError(
                    path,
                    number,
                    f"section %{section} is not supported yet; "
                    "only %header and %filter",
                )
            continue
        if section == "filter":
            _check_filter_line(line, path, number)
            continue
        if section != "header":
            raise RecipeError(path, number, "action outside a %header section")
        line = line.split(" #", 1)[0].strip()
        tokens = _TOKENS.findall(line)
        action = tokens[0].upper()
        if action not in HEADER_ACTIONS:
            close = difflib.get_close_matches(action, HEADER_ACTIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise RecipeError(
                path,
                number,
                f"unknown action {tokens[0]!r}{hint}; expected one "
                f"of {', '.join(HEADER_ACTIONS)}",
            )
        if tokens[0] != action:
            # deid accepts the line and then silently drops it: refuse it here.
            raise RecipeError(
                path,
                number,
                f"write the action {tokens[0]!r} in upper case "
                f"({action}); deid would skip it",
            )
        if len(tokens) < 2:
            raise RecipeError(path, number, f"{action} needs a field")
        value = " ".join(tokens[2:]) or None
        rule = Rule(number, action, tokens[1], value, f"{path}:{number}")
        _check_value(rule, path)
        rules.append(rule)
    return rules


def _deid_cross_check(text: str, path: str, rules: list[Rule]) -> dict[str, Any] | None:
    """Parse with deid too; both parsers must see the same actions."""
    from deid.config import DeidRecipe
    from deid.logger import bot

    # deid prints every parsed line at its default level: silence it, and drop
    # its message history, which otherwise grows for the life of the process.
    bot.level = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "deid.recipe"
        copy.write_text(text, encoding="utf-8")
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                loaded = DeidRecipe(str(copy))
                parsed = loaded.get_actions() or []
                filters = loaded.deid if loaded.get_filters() else None
        except SystemExit:
            raise RecipeError(path, None, "deid could not parse this recipe") from None
        finally:
            bot.history.clear()
    ours = [(r.action, r.field, r.value) for r in rules]
    theirs = [(a["action"], a["field"], a.get("value")) for a in parsed]
    for rule, (a, b) in zip(rules, zip(ours, theirs, strict=False), strict=False):
        if a != b:
            raise RecipeError(
                path,
                rule.line,
                "deid reads this line differently; write it "
                "without quotes or trailing text",
            )
    if len(ours) != len(theirs):
        raise RecipeError(path, None, "deid found a different number of actions")
    return filters


def compile_recipe(text: str, path: str = "<recipe>") -> CompiledRecipe:
    """Validate ``text`` and compile it into an action table.

    Parameters
    ----------
    text
        The recipe, in pydicom/deid's format.
    path
        The name used in messages and provenance (a file path or a label).
    """
    rules = parse_rules(text, path)
    filters = _deid_cross_check(text, path, rules)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    compiled = CompiledRecipe(path=path, digest=digest, text=text, rules=tuple(rules))
    compiled.filters = filters
    for rule in rules:
        if rule.action == "ADD":
            _static_key(rule, path)
            compiled.adds.append(rule)
            continue
        matcher = _field_matcher(rule, path)
        if matcher is not None:
            compiled.dynamic.append((matcher, rule))
            if rule.field.lower() != "all":
                compiled.by_tag_only = False
            continue
        key = _static_key(rule, path)
        if isinstance(key, tuple):
            compiled.by_private.setdefault(key, []).append(rule)
            compiled.by_tag_only = False
        else:
            compiled.by_tag.setdefault(key, []).append(rule)
    return compiled


def load_recipe(path: str | os.PathLike[str]) -> CompiledRecipe:
    """Read and compile a recipe file."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(name, None, f"cannot read the recipe: {exc}") from exc
    return compile_recipe(text, name)


def keyword_for(key: int) -> str:
    """The dictionary keyword of a tag, '' when unknown."""
    entry = DicomDictionary.get(key)
    return entry[4] if entry else ""


def compose(base: CompiledRecipe, user: CompiledRecipe, name: str) -> CompiledRecipe:
    """A user recipe layered on a profile, as one recipe deid can read too.

    For every attribute the user recipe names by tag or keyword, the user's
    lines replace the profile's (commented out, with the reason); the user's
    pattern rules come after the profile's. The user's text follows the
    profile's whole, so its line numbers are kept (``CompiledRecipe.where``).
    The result, and so its digest, is the same for the same two recipes.
    """
    # The file's name only: the same recipe gives the same text on any machine.
    label = Path(user.path).name
    overridden: dict[int, str] = {}
    for key, rules in user.by_tag.items():
        first = min(rule.line for rule in rules)
        for rule in base.by_tag.get(key, ()):
            overridden[rule.line] = f"{label}:{first}"
    lines = []
    for number, line in enumerate(base.text.splitlines(), start=1):
        if number in overridden:
            lines.append(f"# overridden by {overridden[number]}: {line}")
        else:
            lines.append(line)
    lines.append(f"# --- {label}, layered on the profile above ---")
    offset = len(lines)
    for line in user.text.splitlines():
        stripped = line.strip()
        # One FORMAT line is enough; sections (%header, %filter) stay as written.
        if re.match(r"^format\b", stripped, re.I):
            line = f"# {line}"
        lines.append(line)
    composed = compile_recipe("\n".join(lines) + "\n", name)
    # A base that is itself layered keeps its own sources: its lines are kept.
    composed.sources = (*(base.sources or ((1, base.path),)), (offset + 1, user.path))
    return composed
