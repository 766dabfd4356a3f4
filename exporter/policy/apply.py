"""Apply a compiled recipe to a dataset: every element, at every depth.

Semantics follow deid's engine (see ``recipe.py``): for each element the rules
that name it run in recipe order; KEEP anywhere wins and leaves the element and
its items untouched; REMOVE yields to a REPLACE or JITTER of the same element;
a sequence that survives is walked item by item. File meta is visited too.
Unlike deid, nothing fails open: a function error or a date that cannot be
shifted raises ``ActionError`` or blanks the value, never keeps the original.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag

from exporter.errors import ActionError
from exporter.policy.dates import DateFormatError, shift_value
from exporter.policy.functions import (
    FUNCTIONS,
    PRIVATE_ONLY,
    PURE,
    TAG_ONLY,
    InstanceContext,
    is_unsafe_private,
)
from exporter.policy.recipe import CompiledRecipe, Rule, repeater_key

# deid never touches these (its config.json "skip" list); neither do we, so
# the two engines agree. None carries text: pixel data, palette LUT data, the
# VOI LUT, and file meta bookkeeping.
SKIPPED = frozenset(
    {
        0x7FE00010,  # PixelData
        0x00281201,  # RedPaletteColorLookupTableData
        0x00281202,  # GreenPaletteColorLookupTableData
        0x00281203,  # BluePaletteColorLookupTableData
        0x00283010,  # VOILUTSequence
        0x00020000,  # FileMetaInformationGroupLength
        0x00020001,  # FileMetaInformationVersion
        0x00020010,  # TransferSyntaxUID
        0x00020012,  # ImplementationClassUID
    }
)
_REWRITES = {"REPLACE", "JITTER"}
_REMOVE, _UNTOUCHED, _PARSE, _KEEP = 1, 2, 3, 4
_GONE = object()  # memo entry: the rules removed the element
_GIVE_UP = 4  # misses in a row after which a tag is no longer remembered
LONG_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ", "UC", "UR", "UT"}


class _Applier:
    def __init__(self, recipe: CompiledRecipe, ctx: InstanceContext) -> None:
        self.recipe = recipe
        self.ctx = ctx
        self.adds: dict[int, list[Rule]] = {}
        for rule in recipe.adds:
            self.adds.setdefault(_add_tag(rule), []).append(rule)
        self.created: dict[int, int] = {}
        self.all_pure = recipe.all_pure

    def rules_for(self, elem: DataElement, name: str) -> list[Rule]:
        tag = int(elem.tag)
        rules = list(self.recipe.by_tag.get(repeater_key(tag), ()))
        if self.recipe.by_private and elem.tag.is_private:
            creator = (elem.private_creator or "").strip()
            key = (elem.tag.group, creator, elem.tag.element & 0xFF)
            rules += self.recipe.by_private.get(key, ())
        rules += [rule for match, rule in self.recipe.dynamic if match(elem, name)]
        if len(rules) > 1:
            rules.sort(key=lambda rule: rule.line)
        return rules

    def call(self, rule: Rule, elem: DataElement) -> Any:
        name = rule.func
        if name is None:
            return rule.value
        try:
            return FUNCTIONS[name](self.ctx, elem)
        except Exception as exc:
            raise ActionError(
                f"{rule.source}: func:{name} failed on {elem.tag} "
                f"({type(exc).__name__})"
            ) from exc

    def jitter(self, rule: Rule, elem: DataElement) -> None:
        if not elem.value:
            return
        days = self.call(rule, elem)
        try:
            elem.value = shift_value(elem.value, elem.VR, int(days))
        except DateFormatError:
            # Fail closed: a date we cannot shift is emptied, never kept.
            elem.value = None

    def element(
        self, ds: Dataset, elem: DataElement, name: str, top: bool = False
    ) -> bool:
        """Apply the rules for one element; True if it is still there after."""
        rules = self.rules_for(elem, name)
        if top and int(elem.tag) in self.adds:
            rules = sorted([*rules, *self.adds[int(elem.tag)]], key=_line)
            created = self.created.get(int(elem.tag))
            if created is not None:
                # Rules above the ADD that created the element never saw it.
                rules = [rule for rule in rules if rule.line > created]
        if any(rule.action == "KEEP" for rule in rules):
            # KEEP shields the element from every rule but ADD, as in deid.
            self.run(ds, elem, [r for r in rules if r.action == "ADD"], True)
            return False
        rewrites = any(rule.action in _REWRITES for rule in rules)
        return self.run(ds, elem, rules, rewrites)

    def run(
        self, ds: Dataset, elem: DataElement, rules: list[Rule], rewrites: bool
    ) -> bool:
        """Run ``rules`` on one element in order; False once it is removed."""
        for rule in rules:
            if rule.action == "REMOVE":
                if rewrites or (rule.value and not self.call(rule, elem)):
                    continue
                del ds[elem.tag]
                return False
            if rule.action == "BLANK":
                elem.value = None
            elif rule.action in ("REPLACE", "ADD"):
                value = self.call(rule, elem)
                if value is not None:
                    elem.value = value
            elif rule.action == "JITTER":
                self.jitter(rule, elem)
        return True

    def untouched(self, ds: Dataset, tag: BaseTag, top: bool) -> bool:
        """Settle an element without parsing it, when its tag alone decides.

        Returns True when the element was removed or no rule changes it (and
        it is no sequence); False when it must be parsed and run in full.
        """
        key = int(tag)
        if top and key in self.adds:
            return False
        decision = self.recipe.tag_decisions.get(key)
        if decision is None:
            decision = self.recipe.tag_decisions[key] = self.decide(tag)
        if decision == _REMOVE:
            del ds[tag]
            return True
        if decision == _KEEP:
            return True  # KEEP shields the element and all its items
        return decision == _UNTOUCHED and not maybe_sequence(ds.get_item(tag))

    def decide(self, tag: BaseTag) -> int:
        """What the tag alone says: remove, leave untouched, or parse and run."""
        rules = self.candidates(int(tag))
        if any(rule.action == "KEEP" for rule in rules):
            return _KEEP
        for rule in rules:
            if rule.action != "REMOVE" or (rule.func and rule.func not in TAG_ONLY):
                return _PARSE
        probe = DataElement(tag, "UN", None)
        if any(not rule.value or self.call(rule, probe) for rule in rules):
            return _REMOVE
        return _UNTOUCHED

    def reuse(self, ds: Dataset, tag: BaseTag) -> tuple[Any, ...] | None:
        """Settle an element from the memo; the key to store under on a miss.

        Only top-level elements whose rules are pure are remembered (sequences
        only when every rule of the recipe is); the result is kept as encoded
        bytes, so a hit costs neither parsing nor encoding. A tag whose values
        never repeat (an instance UID) stops being remembered after a few.
        """
        memo = self.ctx.memo
        raw = ds.get_item(tag)
        if memo is None or not isinstance(raw, RawDataElement):
            return None
        if int(tag) in self.adds or not self.pure(int(tag)):
            return None
        misses = memo.get(("misses", int(tag)), 0)
        if misses >= _GIVE_UP:
            return None
        if maybe_sequence(raw) and not self.all_pure:
            return None  # a sequence's items run every rule of the recipe
        charset = ds.get_item(0x00080005)
        key = (int(tag), raw.VR, raw.value, getattr(charset, "value", None))
        hit = memo.get(key)
        if hit is None:
            memo[("misses", int(tag))] = misses + 1
            return key
        memo[("misses", int(tag))] = 0
        if hit is _GONE:
            del ds[tag]
        else:
            ds[tag] = hit
        return ()

    def candidates(self, tag: int) -> list[Rule]:
        """Rules that may apply to ``tag``, judged from the tag alone.

        A condition that only private elements can meet is left out for an
        element of a public (even) group: it could never remove it.
        """
        public = not (tag >> 16) & 1
        return [
            *self.recipe.by_tag.get(repeater_key(tag), ()),
            *(
                rule
                for _, rule in self.recipe.dynamic
                if not (
                    public and rule.action == "REMOVE" and rule.func in PRIVATE_ONLY
                )
            ),
        ]

    def pure(self, tag: int) -> bool:
        """Whether every rule that can apply to ``tag`` gives the same result
        for the same value."""
        known = self.recipe.tag_purity.get(tag)
        if known is None:
            rules = self.candidates(tag)
            known = all(rule.func is None or rule.func in PURE for rule in rules)
            self.recipe.tag_purity[tag] = known
        return known

    def remember(self, ds: Dataset, tag: BaseTag, key: tuple[Any, ...]) -> None:
        """Store the cleaned element under ``key`` as bytes, ready to splice."""
        assert self.ctx.memo is not None
        if tag not in ds:
            self.ctx.memo[key] = _GONE
            return
        elem = ds[tag]
        implicit, little = ds.original_encoding
        if not little or implicit is None or (elem.VR and " or " in elem.VR):
            return
        if elem.VR == "SQ" and any(private_survivor(i) for i in elem.value or ()):
            return  # never stored: every instance must meet the release check
        charset = ds.get("SpecificCharacterSet")
        self.ctx.memo[key] = encode_raw(elem, bool(implicit), charset)

    def walk(self, ds: Dataset, prefix: str | None) -> None:
        top = prefix is None
        lazy = self.recipe.by_tag_only
        for tag in list(ds.keys()):
            if int(tag) in SKIPPED or (lazy and self.untouched(ds, tag, top)):
                continue
            key = self.reuse(ds, tag) if lazy and top else None
            if key == ():
                continue
            if key is not None:
                self.apply_one(ds, tag, None)
                self.remember(ds, tag, key)
                continue
            self.apply_one(ds, tag, prefix)

    def apply_one(self, ds: Dataset, tag: BaseTag, prefix: str | None) -> None:
        """Parse one element, run its rules, and walk its items if it stays."""
        top = prefix is None
        try:
            elem = ds[tag]
        except Exception as exc:
            raise ActionError(
                f"cannot parse {tag} to apply the recipe ({type(exc).__name__})"
            ) from exc
        name = elem.keyword if top else f"{prefix}__{elem.keyword}"
        try:
            survived = self.element(ds, elem, name, top)
        except ActionError:
            raise
        except Exception as exc:
            raise ActionError(
                f"cannot apply the recipe to {elem.tag} ({type(exc).__name__})"
            ) from exc
        if survived and elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                self.walk(item, name)

    def create(self, ds: Dataset, meta: Dataset | None) -> None:
        """Create the absent elements ADD names, before any rule runs."""
        for tag, rules in self.adds.items():
            target = meta if tag >> 16 == 0x0002 else ds
            if target is None or tag in target:
                continue
            first = rules[0]
            value = self.call(first, DataElement(tag, dictionary_VR(tag), None))
            if value is not None:
                target.add_new(tag, dictionary_VR(tag), value)
                self.created[tag] = first.line


def encode_raw(
    elem: DataElement, implicit: bool, charset: Any = None
) -> RawDataElement:
    """``elem`` encoded once (little endian), kept as a raw element to splice.

    Its ``value_tell`` is -1: it points into no file, and the writer copies its
    bytes with a header of its own.
    """
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, True
    write_data_element(buffer, elem, charset)
    encoded = buffer.getvalue()
    # Keep the length field as written: a sequence may be undefined length.
    if implicit:
        (length,), value = struct.unpack_from("<I", encoded, 4), encoded[8:]
    elif elem.VR in LONG_VRS:
        (length,), value = struct.unpack_from("<I", encoded, 8), encoded[12:]
    else:
        (length,), value = struct.unpack_from("<H", encoded, 6), encoded[8:]
    return RawDataElement(elem.tag, elem.VR, length, value, -1, implicit, True)


def private_survivor(ds: Dataset, safe_allowed: bool = False) -> BaseTag | None:
    """The first private element left in ``ds`` at any depth, or None.

    With ``safe_allowed``, the attributes of Table E.3.10-1 and their creators
    do not count. Elements the engine stored from its memo (``value_tell`` -1)
    are skipped: a sequence holding a private element is never stored there.
    """
    for tag in ds.keys():  # noqa: SIM118  (iterating ds would parse every element)
        if tag.is_private:
            if safe_allowed and not is_unsafe_private(None, ds[tag]):  # type: ignore[arg-type]
                continue
            return tag
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement):
            if elem.value_tell == -1 or not maybe_sequence(elem):
                continue
            elem = ds[tag]
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                found = private_survivor(item, safe_allowed)
                if found is not None:
                    return found
    return None


def maybe_sequence(raw: Any) -> bool:
    """Whether an element may be a sequence, judged without parsing it."""
    vr = raw.VR
    if vr == "SQ":
        return True
    if vr in (None, "UN"):
        # Implicit VR, or a converter's UN: a known sequence is parsed (pydicom
        # restores its VR) so that its items are cleaned like any other.
        if getattr(raw, "length", 0) == 0xFFFFFFFF:
            return True
        try:
            return bool(dictionary_VR(raw.tag) == "SQ")
        except KeyError:
            return False
    return False


def _add_tag(rule: Rule) -> int:
    tag = tag_for_keyword(rule.field)
    if tag is None:
        tag = int(rule.field.strip("()").replace(",", ""), 16)
    return int(tag)


def _line(rule: Rule) -> int:
    return rule.line


def apply_recipe(ds: Dataset, recipe: CompiledRecipe, ctx: InstanceContext) -> None:
    """De-identify ``ds`` in place with ``recipe``.

    Parameters
    ----------
    ds
        The dataset, with its ``file_meta`` when read from a file.
    recipe
        A compiled recipe (``recipe.compile_recipe``).
    ctx
        Pseudonyms and the patient's date offset for this instance.

    Raises
    ------
    ActionError
        When a rule cannot be applied; the instance must not be released.
    """
    applier = _Applier(recipe, ctx)
    meta = getattr(ds, "file_meta", None)
    applier.create(ds, meta)
    applier.walk(ds, None)
    if meta is not None:
        applier.walk(meta, None)
