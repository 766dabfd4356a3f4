"""What a recipe does, attribute by attribute, for an IRB reviewer.

One row per attribute the policy can touch: its tag, keyword and name, the
action exporter's engine will take, and what decided it (the Annex E code and
option for the built-in profiles, and the recipe line). A coverage check
against Table E.1-1 follows: every row accounted for, and any row a recipe
leaves weaker than the Basic Profile flagged.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass

from pydicom.datadict import dictionary_description, dictionary_VR, keyword_for_tag

from exporter.policy.annex_e import (
    COMPOUND_RESOLUTION,
    AnnexERow,
    decide,
    decided_text,
    table_e1_1,
)
from exporter.policy.profile import PATTERN_FUNCS
from exporter.policy.recipe import CompiledRecipe, Rule, repeater_key

# How much of the original an action can let through; higher is stronger.
_STRENGTH = {"X": 3, "Z": 2, "D": 2, "U": 2, "U*": 2, "C": 1, "K": 0}
# Pattern row of Table E.1-1 by the function that matches it (see profile).
_PATTERN_FUNCS = {func: row for row, func in PATTERN_FUNCS.items()}


@dataclass(frozen=True)
class Explained:
    """One attribute and what the policy does to it."""

    tag: str
    keyword: str
    name: str
    action: str
    code: str  # the Annex E code the action amounts to: X, Z, D, U, C or K
    decided_by: str


@dataclass(frozen=True)
class Finding:
    """A row of Table E.1-1 the recipe leaves weaker than the Basic Profile."""

    tag: str
    name: str
    basic: str
    code: str
    message: str


def _code(rule: Rule) -> str:
    if rule.action == "REMOVE":
        return "X"
    if rule.action == "BLANK":
        return "Z"
    if rule.action == "KEEP":
        return "K"
    if rule.action == "JITTER" or rule.func in ("age_cap", "clean_text"):
        return "C"
    if rule.func == "uid":
        return "U"
    return "D"


def _effective(rules: list[Rule]) -> tuple[str, str, list[Rule]]:
    """The action the engine takes for these rules (deid semantics)."""
    rules = sorted(rules, key=lambda r: r.line)
    if any(r.action == "KEEP" for r in rules):
        keep = [r for r in rules if r.action == "KEEP"]
        return "KEEP", "K", keep
    rewrites = [r for r in rules if r.action in ("REPLACE", "JITTER")]
    if rewrites:
        last = rewrites[-1]
        return f"{last.action} {last.value}", _code(last), rewrites
    removes = [r for r in rules if r.action == "REMOVE" and not r.value]
    if removes:
        return "REMOVE", "X", removes[:1]
    blanks = [r for r in rules if r.action == "BLANK"]
    if blanks:
        return "BLANK", "Z", blanks[:1]
    first = rules[0]
    text = f"{first.action} {first.value}" if first.value else first.action
    return text, _code(first), rules[:1]


def _basic(row: AnnexERow) -> str:
    return COMPOUND_RESOLUTION.get(row.basic, row.basic)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def explain(
    recipe: CompiledRecipe, options: frozenset[str] | None
) -> tuple[list[Explained], list[Finding]]:
    """Explain ``recipe``; ``options`` when it is a built-in profile, else None.

    Returns
    -------
    tuple
        The explained attributes sorted by tag (patterns last), and the
        coverage findings against Table E.1-1.
    """
    table = {row.tag_int: row for row in table_e1_1() if not row.is_pattern}
    rows: list[Explained] = []
    codes: dict[int, str] = {}
    for tag in sorted(recipe.by_tag):
        action, code, deciding = _effective(recipe.by_tag[tag])
        lines = ", ".join(recipe.where(r.line) for r in deciding)
        row = table.get(tag)
        if _shifted_time(row, options, tag, code):
            # A whole-day shift leaves a time of day as it is.
            action, code = "KEEP (times of day; dates are shifted)", "C"
        decided_by = lines
        if row is not None and options is not None:
            decided_by = f"E.1-1 {decided_text(row, options)}; {lines}"
        elif row is None:
            decided_by = f"{lines} (not in Table E.1-1)"
        keyword = row.keyword if row else keyword_for_tag(tag)
        name = row.name if row else _description(tag)
        rows.append(Explained(_tag_text(tag), keyword, name, action, code, decided_by))
        codes[tag] = code
    for key, rules in sorted(recipe.by_private.items()):
        action, code, deciding = _effective(rules)
        group, creator, offset = key
        rows.append(
            Explained(
                f'({group:04X},"{creator}",{offset:02X})',
                "",
                "private element",
                action,
                code,
                ", ".join(recipe.where(r.line) for r in deciding),
            )
        )
    for _, rule in recipe.dynamic:
        value = f" {rule.value}" if rule.value else ""
        pattern = _PATTERN_FUNCS.get(rule.func or "", rule.field)
        rows.append(
            Explained(
                pattern,
                "",
                _pattern_name(rule),
                f"{rule.action} {rule.field}{value}",
                _code(rule),
                recipe.where(rule.line),
            )
        )
    return rows, _coverage(table, codes, options or frozenset())


def _description(tag: int) -> str:
    try:
        return str(dictionary_description(tag))
    except KeyError:
        return ""


def _pattern_name(rule: Rule) -> str:
    names = {row.tag: row.name for row in table_e1_1() if row.is_pattern}
    pattern = _PATTERN_FUNCS.get(rule.func or "")
    return names.get(pattern, "") if pattern else "pattern rule"


def _shifted_time(
    row: AnnexERow | None, options: frozenset[str] | None, tag: int, code: str
) -> bool:
    """A kept time the table asks to clean under a date option."""
    if row is None or options is None or code != "K" or _vr(tag) != "TM":
        return False
    return decide(row, options)[0] == "C"


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def _coverage(
    table: dict[int, AnnexERow], codes: dict[int, str], options: frozenset[str]
) -> list[Finding]:
    """Rows left weaker than the table asks under ``options`` (none: Basic)."""
    findings = []
    for tag, row in sorted(table.items()):
        expected, decided_by = decide(row, options)
        code = codes.get(repeater_key(tag), "K")
        if code == "K" and expected in ("K", "U*"):
            continue
        if tag not in codes and expected == "C" and _vr(tag) == "SQ":
            continue  # kept, and its items cleaned by their own rules
        if _STRENGTH[code] < _STRENGTH[expected]:
            how = "no rule, kept as is" if repeater_key(tag) not in codes else code
            findings.append(
                Finding(
                    _tag_text(tag),
                    row.name,
                    _basic(row),
                    code,
                    f"weaker than the table asks ({expected}, {decided_by}): {how}",
                )
            )
    return findings


def to_markdown(
    rows: list[Explained],
    findings: list[Finding],
    title: str,
    pixels: list[str] | None = None,
) -> str:
    """The explain table, coverage check and pixel policy as Markdown, sorted."""
    out = [f"# {title}", "", "| tag | keyword | name | action | code | decided by |"]
    out.append("|---|---|---|---|---|---|")
    for r in rows:
        cells = [r.tag, r.keyword, r.name, r.action, r.code, r.decided_by]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out += ["", "## Coverage against PS3.15 Table E.1-1", ""]
    covered = len({row.tag for row in table_e1_1()})
    out.append(f"All {covered} rows of the table were checked.")
    if not findings:
        out.append(
            "No row is left weaker than the table asks for the options in force."
        )
    else:
        rows_word = "row is" if len(findings) == 1 else "rows are"
        out.append(f"{len(findings)} {rows_word} weaker than the table asks:")
        out.append("")
        out.append("| tag | name | basic | this policy | finding |")
        out.append("|---|---|---|---|---|")
        for f in findings:
            out.append(f"| {f.tag} | {f.name} | {f.basic} | {f.code} | {f.message} |")
    if pixels:
        out += ["", "## Pixel data", ""]
        out += [f"- {line}" for line in pixels]
    return "\n".join(out) + "\n"


def to_csv(rows: list[Explained], findings: list[Finding]) -> str:
    """The explain table as CSV; findings as rows with a ``finding`` column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["tag", "keyword", "name", "action", "code", "decided_by", "finding"]
    )
    flagged = {f.tag: f.message for f in findings}
    for r in rows:
        writer.writerow(
            [
                r.tag,
                r.keyword,
                r.name,
                r.action,
                r.code,
                r.decided_by,
                flagged.pop(r.tag, ""),
            ]
        )
    for tag, message in sorted(flagged.items()):
        writer.writerow([tag, "", "", "", "K", "", message])
    return buffer.getvalue()


def diff(a: list[Explained], b: list[Explained]) -> list[tuple[str, str, str, str]]:
    """Attributes whose treatment differs: (tag, name, in A, in B), sorted by tag.

    An attribute only one policy names shows as ``no rule`` on the other side.
    """
    left = {r.tag: r for r in a}
    right = {r.tag: r for r in b}
    changes = []
    for tag in sorted(left.keys() | right.keys()):
        x, y = left.get(tag), right.get(tag)
        before = f"{x.action} ({x.code})" if x else "no rule"
        after = f"{y.action} ({y.code})" if y else "no rule"
        if before != after:
            known = x if x is not None else y
            changes.append((tag, known.name if known else "", before, after))
    return changes


def diff_markdown(changes: list[tuple[str, str, str, str]], a: str, b: str) -> str:
    """The differences as a Markdown table."""
    out = [f"# {a} -> {b}", ""]
    if not changes:
        return "\n".join([*out, "The two policies treat every attribute alike."]) + "\n"
    count = (
        "1 attribute differs"
        if len(changes) == 1
        else f"{len(changes)} attributes differ"
    )
    out += [f"{count}.", ""]
    out += [f"| tag | name | {a} | {b} |", "|---|---|---|---|"]
    out += [f"| {t} | {n} | {x} | {y} |" for t, n, x, y in changes]
    return "\n".join(out) + "\n"


def to_html(rows: list[Explained], findings: list[Finding], title: str) -> str:
    """The explain table and coverage check as one self-contained HTML page."""
    esc = html.escape
    body = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px;text-align:left}"
        ".weak{background:#fdd}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<table><thead><tr><th>tag</th><th>keyword</th><th>name</th><th>action</th>"
        "<th>code</th><th>decided by</th></tr></thead><tbody>",
    ]
    weak = {f.tag for f in findings}
    for r in rows:
        cls = ' class="weak"' if r.tag in weak else ""
        cells = [r.tag, r.keyword, r.name, r.action, r.code, r.decided_by]
        body.append(
            f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
        )
    body.append("</tbody></table>")
    body.append("<h2>Coverage against PS3.15 Table E.1-1</h2>")
    if not findings:
        body.append("<p>No row is left weaker than the table asks.</p>")
    else:
        body.append(f"<p>{len(findings)} weaker than the table asks:</p><ul>")
        body += [
            f"<li>{esc(f.tag)} {esc(f.name)}: {esc(f.message)}</li>" for f in findings
        ]
        body.append("</ul>")
    body.append("</body></html>")
    return "\n".join(body) + "\n"
