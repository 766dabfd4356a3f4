"""The release gate: decide whether a de-identified instance may leave.

An instance that may carry burned-in text is cleaned (Clean Pixel Data, the
recipe's %filter regions) or quarantined; so is anything the header policy
could not fully clean.
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

from exporter.policy.apply import private_survivor

# SOP classes whose pixels are captures of screens, documents or cameras, or
# whose payload is a document: text is likely, and we cannot see it yet.
_CAPTURE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.104.1": "encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.104.2": "encapsulated CDA",
    "1.2.840.10008.5.1.4.1.1.104.3": "encapsulated STL",
    "1.2.840.10008.5.1.4.1.1.104.4": "encapsulated OBJ",
    "1.2.840.10008.5.1.4.1.1.104.5": "encapsulated MTL",
    "1.2.840.10008.5.1.4.1.1.6.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.6.2": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "video endoscopy",
    "1.2.840.10008.5.1.4.1.1.77.1.2.1": "video microscopy",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "video photography",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "photograph",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "endoscopy photograph",
}
_CAPTURE_MODALITIES = {
    "US": "ultrasound",
    "OT": "other",
    "SC": "secondary capture",
    "XC": "external camera",
    "ES": "endoscopy",
    "DOC": "document",
}


def pixel_policy(clean_pixels: bool, filters: dict[str, Any] | None) -> list[str]:
    """How pixel data is treated, in words, for the explain output."""
    kinds = sorted(set(_CAPTURE_CLASSES.values()) | set(_CAPTURE_MODALITIES.values()))
    lines = [
        "Instances that may carry burned-in text: BurnedInAnnotation YES; overlays "
        "kept in pixel bits; encapsulated documents; derived or secondary images and "
        "screen captures without BurnedInAnnotation NO; and, whatever the flag says, "
        f"{', '.join(kinds)}.",
    ]
    if clean_pixels:
        lines.append(
            "Those are decoded and every frame is read by OCR (RapidOCR); text strokes "
            "are painted with their surroundings and the frame is read again; they are "
            "released uncompressed with BurnedInAnnotation NO, or quarantined with "
            "the reason when text remains or the pixels cannot be decoded."
        )
        lines.append(
            "Of every other series, the first frame of its first instance (in each "
            "shard of 64 instances) is read by OCR as a sample: when it shows text, "
            "every instance of the series is read and cleaned as above; otherwise the "
            "series is released with its pixels unchanged. The catalog's pixel_check "
            "says, per instance, which of these happened."
        )
    else:
        lines.append("Those are quarantined in the workspace, not released.")
    if filters:
        from exporter.policy.deid_filters import describe

        lines.append(
            "The recipe's %filter rules also apply: a blacklist match is quarantined; "
            "graylist coordinates are blanked in every frame before release; a "
            "graylist match without coordinates counts as may carry text; whitelist "
            "rules never vouch for an image."
        )
        counted = describe(filters)
        if counted:
            lines.append(counted)
    lines.append(
        "Every other instance keeps its pixel data byte for byte (never decoded)."
    )
    return lines


def _embedded_overlay(ds: Dataset) -> str | None:
    """The group of an overlay kept in unused bits of Pixel Data (retired usage).

    Removing Overlay Data does not remove such an overlay: its bits travel
    with the pixels, and viewers still draw them.
    """
    for group in range(0x6000, 0x6020, 2):
        if (group << 16) | 0x0010 not in ds:  # OverlayRows
            continue
        bits = ds.get((group << 16) | 0x0100)  # OverlayBitsAllocated
        position = ds.get((group << 16) | 0x0102)  # OverlayBitPosition
        inline = (group << 16) | 0x3000 not in ds  # no separate OverlayData
        if inline or (bits and bits.value != 1) or (position and position.value):
            return f"{group:04X}"
    return None


def burned_in_risk(ds: Dataset) -> str | None:
    """Why ``ds`` may carry burned-in text, or None when it is not expected to."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    embedded = _embedded_overlay(ds)
    if embedded is not None:
        return f"overlay {embedded} is stored in the pixel data bits"
    if "EncapsulatedDocument" in ds:
        return "encapsulated document"
    # Captures carry text so often that their flag NO is not trusted alone:
    # they are checked (Clean Pixel Data) or held back whatever it says.
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "")).upper()
    kind = _CAPTURE_CLASSES.get(sop_class) or _CAPTURE_MODALITIES.get(modality)
    if kind is not None and flag == "NO":
        return f"{kind}: BurnedInAnnotation NO is not trusted"
    if kind is not None:
        return f"{kind} without BurnedInAnnotation NO"
    if flag == "NO":
        return None
    value = ds.get("ImageType") or []
    # A single value reads back as a plain string, not a one-item list.
    values = [value] if isinstance(value, str) else list(value)
    image_type = [str(v).upper() for v in values]
    if image_type[:1] == ["DERIVED"] or image_type[1:2] == ["SECONDARY"]:
        return "derived or secondary image without BurnedInAnnotation NO"
    if "SCREEN SAVE" in image_type or "SCREENSHOT" in image_type:
        return "screen capture"
    return None


def release_problems(ds: Dataset, safe_private: bool = False) -> list[str]:
    """Checks on the cleaned dataset; any finding blocks release (fail closed).

    Parameters
    ----------
    safe_private
        Retain Safe Private is in force: Table E.3.10-1 attributes may stay.
    """
    problems = []
    survivor = private_survivor(ds, safe_private)
    if survivor is not None:
        problems.append(f"private element {survivor} survived the recipe")
    if str(ds.get("PatientIdentityRemoved", "")) != "YES":
        problems.append("PatientIdentityRemoved is not YES")
    return problems


def pixel_data_problem(
    ds: Dataset, length: int | None = None, encapsulated: bool = False
) -> str | None:
    """Why the pixel data is incomplete, or None.

    pydicom reads a file cut inside its pixel data without complaint; an export
    of it would look fine and hold a broken image, so it is caught here.

    Parameters
    ----------
    ds
        The dataset; its Pixel Data is used when ``length`` is not given.
    length, encapsulated
        Size and kind of a Pixel Data value kept apart from ``ds``.
    """
    if length is None:
        if "PixelData" not in ds:
            return None
        data = ds.PixelData
        meta_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        encapsulated = meta_syntax is not None and meta_syntax.is_encapsulated
        if encapsulated:
            try:
                if not sum(1 for _ in generate_fragments(data)):
                    return "encapsulated pixel data has no fragments"
            except (ValueError, EOFError, KeyError) as exc:
                return f"encapsulated pixel data is malformed ({type(exc).__name__})"
        length = len(data)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if encapsulated or (syntax is not None and syntax.is_compressed):
        # Compressed data has no expected size (some writers even give it a
        # defined length); its fragments were checked where it was read.
        return None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return "pixel data without readable Rows, Columns or BitsAllocated"
    expected = (rows * columns * samples * frames * bits + 7) // 8
    if length < expected:
        return f"pixel data truncated ({length} of {expected} bytes)"
    return None
