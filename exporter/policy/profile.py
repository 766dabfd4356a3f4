"""Compile PS3.15 Table E.1-1 and a set of options into a deid recipe.

The recipe is the reviewable form of the policy: one commented line per row of
the table, then the few rules exporter adds for places the table names only by
pattern or not at all. ``tools/build_recipes.py`` writes it to ``recipes/``;
a test checks the committed file is what this module generates.
"""

from __future__ import annotations

import textwrap

from pydicom.datadict import DicomDictionary, dictionary_VR

from exporter.policy.annex_e import (
    EDITION,
    OPTIONS,
    AnnexERow,
    decide,
    table_e1_1,
    validate_options,
)

DEFAULT_OPTIONS = frozenset(
    {"retain_long_modified_dates", "retain_patient_characteristics"}
)

# The profiles shipped in recipes/, by file name: options, and who it is for.
NAMED_PROFILES: dict[str, tuple[frozenset[str], str]] = {
    "basic-profile.dicom": (
        DEFAULT_OPTIONS,
        "research inside an approved protocol: intervals between a patient's "
        "studies and age, sex, size and weight are kept; dates are shifted per "
        "patient; names, IDs, UIDs, institutions and free text are not.",
    ),
    "public-release.dicom": (
        frozenset(),
        "data leaving the institution for public release: the Basic Profile "
        "alone; dates are emptied or removed, patient characteristics too.",
    ),
}

# UI attributes outside Table E.1-1 that name a class, syntax or registry entry,
# never an instance: kept. Every other UI attribute outside the table is mapped.
_CLASS_UID_MARKERS = ("SOPClass", "TransferSyntax", "ImplementationClass")
_REGISTRY_UIDS = {"CodingSchemeUID", "ContextUID", "MappingResourceUID"}

# Attributes Table E.1-1 does not list that can still identify, removed as
# defence in depth: locators that name a host and often embed original UIDs,
# free text about the patient or procedure, and issuers of identifiers.
_EXTRA_REMOVE = (
    "RetrieveURL",
    "RetrieveURI",
    "StorageURL",
    "PixelDataProviderURL",
    "FileAccessURI",
    "FolderAccessURI",
    "StoredInstanceBaseURI",
    "ContactURI",
    "FilenameInContainer",
    "UniformResourceLocatorTrial",
    "TextValue",
    "CommentsOnTheScheduledProcedureStep",
    "CommentsOnPatientPerformanceOfVisualField",
    "InstructionPerformanceComment",
    "ReportStatusCommentTrial",
    "IdentificationDescriptionTrial",
    "LocalNamespaceEntityID",
    "UniversalEntityID",
)

_CLEANED_TEXT_VALUE = [
    "# Text of SR content items: cleaned under the option in force.",
    "REPLACE TextValue func:clean_text",
]

# File meta elements (PS3.10 7.1) that name the sending system or carry
# private data; the writer rebuilds file meta anyway.
_FILE_META_REMOVE = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "SourcePresentationAddress",
    "SendingPresentationAddress",
    "ReceivingPresentationAddress",
    "PrivateInformationCreatorUID",
    "PrivateInformation",
)


_TEXT_VRS = {"SH", "LO", "ST", "LT", "UT", "UC"}
_OVERLAY_GROUPS = range(0x6000, 0x6020, 2)


def _field(row: AnnexERow) -> str:
    if row.keyword:
        return row.keyword
    group, element = row.tag.split(",")
    return f"({group},{element})"


def _vr(row: AnnexERow) -> str:
    try:
        return str(dictionary_VR(row.tag_int))
    except KeyError:
        return ""


def _row_rule(row: AnnexERow, options: frozenset[str]) -> tuple[str, str]:
    """The recipe line for one concrete row, and the note that explains it."""
    code, decided_by = decide(row, options)
    field = _field(row)
    vr = _vr(row)
    note = f"{code} ({decided_by})"

    # The patient's identity becomes the pseudonym; ages over 89 are capped.
    if row.keyword in ("PatientID", "PatientName") and code in ("Z", "D"):
        return f"REPLACE {field} func:patient_id", f"{note}; the pseudonym"
    if vr == "AS" and code == "K":
        return f"REPLACE {field} func:age_cap", f"{note}; over 89 -> 090Y"

    if code == "C":
        if decided_by == "retain_long_modified_dates" and vr in ("DA", "DT"):
            return f"JITTER {field} func:date_shift", f"{note}; shifted per patient"
        if decided_by == "retain_long_modified_dates" and vr == "TM":
            return f"KEEP {field}", f"{note}; times of day kept, dates shifted"
        if decided_by in ("clean_structured_content", "clean_graphics") and vr == "SQ":
            # The content items are cleaned by their own rules: TextValue
            # cleaned, PersonName a dummy, dates shifted, UIDs mapped.
            return "", f"{note}; kept, its content items cleaned by their rules"
        if decided_by == "clean_descriptors" and vr in _TEXT_VRS:
            return f"REPLACE {field} func:clean_text", f"{note}; identifying words out"
        # TODO(issue 3): structured content, graphics and the other C cells;
        # until then C falls back to the Basic Profile, which removes more.
        code = decide(row, frozenset())[0]
        note += f"; no cleaner yet, Basic Profile {code} applies"

    if code == "K":
        if vr == "SQ":
            return "", f"{note}; sequence kept, its items follow their own rules"
        return f"KEEP {field}", note
    if code == "D" and vr == "SQ":
        # An empty sequence is the dummy that carries nothing; BLANK also lets
        # deid's engine drop the items' fields (its REPLACE would not).
        return f"BLANK {field}", f"{note}; emptied"
    if code == "U*":
        return "", f"{note}; sequence kept, the UIDs inside are replaced"
    actions = {
        "X": f"REMOVE {field}",
        "Z": f"BLANK {field}",
        "D": f"REPLACE {field} func:dummy",
        "U": f"REPLACE {field} func:uid",
    }
    return actions[code], note


# The function that matches each pattern row of Table E.1-1 in every group.
PATTERN_FUNCS = {
    "50xx,xxxx": "is_curve",
    "60xx,3000": "is_overlay_data",
    "60xx,4000": "is_overlay_comments",
    "gggg,eeee": "is_private",
}


def _pattern_rules(row: AnnexERow, options: frozenset[str]) -> list[str]:
    code, decided_by = decide(row, options)
    if row.tag == "gggg,eeee" and decided_by == "retain_safe_private":
        return [
            f"# ({row.tag}) {row.name}: {code} ({decided_by}); the attributes of "
            "Table E.3.10-1 (by private creator and offset) and their creators stay",
            "REMOVE ALL func:is_unsafe_private",
        ]
    if row.tag == "60xx,4000" and decided_by == "clean_graphics":
        # The comments are text: cleaned in each of the 16 overlay groups.
        return [
            f"# ({row.tag}) {row.name}: {code} ({decided_by}); text cleaned",
            *[f"REPLACE ({g:04X},4000) func:clean_text" for g in _OVERLAY_GROUPS],
        ]
    # TODO(issue 4): curve and overlay bitmaps may hold drawn text that only
    # pixel analysis can find; until then they are removed even under Clean
    # Graphics, which is stricter than the option asks.
    note = "; removed in every group"
    if decided_by == "clean_graphics":
        note += " (bitmaps and curves cannot be cleaned yet)"
    return [
        f"# ({row.tag}) {row.name}: {code} ({decided_by}){note}",
        f"REMOVE ALL func:{PATTERN_FUNCS[row.tag]}",
    ]


def _additions(options: frozenset[str]) -> list[str]:
    cleaned = {"clean_structured_content", "clean_descriptors"} & options
    extra_remove = [k for k in _EXTRA_REMOVE if not (cleaned and k == "TextValue")]
    if "clean_graphics" in options:
        overlay_text = [
            "# Overlay Description and Label are cleaned under Clean Graphics (the",
            "# text of graphic annotations keeps its Basic Profile dummy, D).",
            *[
                f"REPLACE ({g:04X},{e:04X}) func:clean_text"
                for g in _OVERLAY_GROUPS
                for e in (0x0022, 0x1500)
            ],
        ]
    else:
        overlay_text = [
            "# Overlay Description and Label are free text drawn on the image.",
            "REMOVE ALL func:is_overlay_text",
        ]
    lines = [
        "",
        "# --- Added by exporter: places Table E.1-1 does not list by tag ---",
        *overlay_text,
        "# Public elements no dictionary knows: their content is unknown.",
        "REMOVE ALL func:is_unknown_public",
        "# Locators, free text and issuers the table does not list.",
        *[f"REMOVE {keyword}" for keyword in extra_remove],
        *(_CLEANED_TEXT_VALUE if cleaned else []),
        "# File meta that names the sending system.",
    ]
    lines += [f"REMOVE {keyword}" for keyword in _FILE_META_REMOVE]
    listed = {row.tag_int for row in table_e1_1() if not row.is_pattern}
    names, dates = [], []
    keep, remap = [], []
    for tag, entry in sorted(DicomDictionary.items()):
        vr, keyword = entry[0], entry[4]
        if tag in listed or tag >> 16 == 0x0000:
            continue
        if vr == "PN":
            names.append(keyword)
        elif vr in ("DA", "DT") and "retain_long_full_dates" not in options:
            dates.append(keyword)
        if vr != "UI":
            continue
        if any(m in keyword for m in _CLASS_UID_MARKERS) or keyword in _REGISTRY_UIDS:
            keep.append(keyword)
        elif keyword not in _FILE_META_REMOVE:
            remap.append(keyword)
    lines.append("# Person names the table does not list (newer attributes): dummies.")
    lines += [f"REPLACE {keyword} func:dummy" for keyword in names]
    lines.append("# Dates the table does not list: shifted like the listed ones.")
    lines += [f"JITTER {keyword} func:date_shift" for keyword in dates]
    lines.append("# UIDs of classes, syntaxes and registries are not identifying.")
    lines += [f"KEEP {keyword}" for keyword in keep]
    if "retain_uids" not in options:
        lines.append("# Instance UIDs outside the table, mapped like the U rows.")
        lines += [f"REPLACE {keyword} func:uid" for keyword in remap]
    return lines


def _audience_lines(audience: list[str]) -> list[str]:
    """The header lines that say who a named profile is for."""
    if not audience:
        return []
    wrapped = textwrap.wrap(f"For {audience[0]}", 72)
    return [f"# {wrapped[0]}", *[f"#   {line}" for line in wrapped[1:]]]


def build_recipe(options: frozenset[str] = DEFAULT_OPTIONS) -> str:
    """The deid recipe for the Basic Profile with ``options``.

    Parameters
    ----------
    options
        Option columns of Table E.1-1 in force (see ``annex_e.OPTIONS``).

    Returns
    -------
    str
        Recipe text in pydicom/deid's format, deterministic for ``options``.
    """
    validate_options(options)
    names = [OPTIONS[o][1] for o in sorted(options)] or ["(none)"]
    audience = [
        text for name, (chosen, text) in NAMED_PROFILES.items() if chosen == options
    ]
    lines = [
        "FORMAT dicom",
        "",
        "# exporter profile: PS3.15 Basic Application Level Confidentiality",
        f"# Profile, Table E.1-1 edition {EDITION}, with options:",
        *[f"#   {name}" for name in names],
        *_audience_lines(audience),
        "# Generated by tools/build_recipes.py from exporter/data; do not edit.",
        "# Each rule is preceded by its table row: (tag) name: code (decided by).",
        "# Functions: func:uid keyed 2.25 UIDs, func:patient_id the pseudonym,",
        "# func:date_shift the patient's day offset, func:dummy a VR-valid dummy.",
        "",
        "%header",
        "",
    ]
    for row in table_e1_1():
        if row.is_pattern:
            lines += _pattern_rules(row, options)
            continue
        rule, note = _row_rule(row, options)
        lines.append(f"# ({row.tag}) {row.name}: {note}")
        if rule:
            lines.append(rule)
    lines += _additions(options)
    return "\n".join(lines) + "\n"
