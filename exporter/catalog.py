"""The Parquet catalogs of an export: instances, series and studies.

Every value comes from the de-identified dataset, never the source. The
schema is documented field by field (``docs/catalog.md``, and each field's
``description`` in the Parquet metadata); change it only together with
``SCHEMA_VERSION``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

SCHEMA_VERSION = "2"  # 2: pixel_check


def _f(name: str, kind: pa.DataType, doc: str) -> pa.Field:
    return pa.field(name, kind, metadata={"description": doc})


_KEYS = [
    _f("patient_pseudonym", pa.string(), "Pseudonymous patient id (or SubjectID)"),
    _f("study_uid", pa.string(), "Study Instance UID, pseudonymous (2.25.)"),
]
INSTANCES = pa.schema(
    [
        *_KEYS,
        _f("series_uid", pa.string(), "Series Instance UID, pseudonymous"),
        _f("sop_uid", pa.string(), "SOP Instance UID, pseudonymous"),
        _f("file_path", pa.string(), "Path of the file relative to the export"),
        _f("modality", pa.string(), "Modality (0008,0060)"),
        _f("sop_class_uid", pa.string(), "SOP Class UID"),
        _f("transfer_syntax_uid", pa.string(), "Transfer Syntax UID"),
        _f("series_number", pa.int32(), "Series Number"),
        _f("instance_number", pa.int32(), "Instance Number"),
        _f("rows", pa.int32(), "Rows"),
        _f("columns", pa.int32(), "Columns"),
        _f("frames", pa.int32(), "Number of Frames (1 when absent)"),
        _f("bits_allocated", pa.int32(), "Bits Allocated"),
        _f("bits_stored", pa.int32(), "Bits Stored"),
        _f(
            "pixel_representation",
            pa.int32(),
            "0 unsigned, 1 signed (two's complement)",
        ),
        _f("rescale_slope", pa.float64(), "Rescale Slope (stored value to units)"),
        _f("rescale_intercept", pa.float64(), "Rescale Intercept"),
        _f("window_center", pa.float64(), "First Window Center"),
        _f("window_width", pa.float64(), "First Window Width"),
        _f("image_type", pa.list_(pa.string()), "Image Type values"),
        _f("body_part", pa.string(), "Body Part Examined"),
        _f(
            "frame_of_reference_uid",
            pa.string(),
            "Frame of Reference UID, pseudonymous",
        ),
        _f("photometric_interpretation", pa.string(), "Photometric Interpretation"),
        _f("pixel_spacing", pa.list_(pa.float64()), "Pixel Spacing, mm (row, col)"),
        _f("slice_thickness", pa.float64(), "Slice Thickness, mm"),
        _f("spacing_between_slices", pa.float64(), "Spacing Between Slices, mm"),
        _f("image_position", pa.list_(pa.float64()), "Image Position (Patient)"),
        _f("image_orientation", pa.list_(pa.float64()), "Image Orientation (Patient)"),
        _f("study_date", pa.date32(), "Study Date, shifted per patient"),
        _f("series_date", pa.date32(), "Series Date, shifted per patient"),
        _f("content_date", pa.date32(), "Content Date, shifted per patient"),
        _f("patient_age", pa.string(), "Patient's Age as recorded (over 89: 090Y)"),
        _f("patient_sex", pa.string(), "Patient's Sex"),
        _f("manufacturer", pa.string(), "Manufacturer"),
        _f("model", pa.string(), "Manufacturer's Model Name"),
        _f(
            "pixel_check",
            pa.string(),
            "What was done to the pixels: copied, sampled, ocr, rule, rule+ocr",
        ),
        _f("file_size", pa.int64(), "File size in bytes"),
        _f("sha256", pa.string(), "SHA-256 of the file"),
    ]
)
SERIES = pa.schema(
    [
        *_KEYS,
        _f("series_uid", pa.string(), "Series Instance UID, pseudonymous"),
        _f("modality", pa.string(), "Modality"),
        _f("series_number", pa.int32(), "Series Number"),
        _f("series_date", pa.date32(), "Series Date, shifted per patient"),
        _f("instances", pa.int64(), "Instances exported"),
        _f("bytes", pa.int64(), "Bytes exported"),
        _f("rows", pa.int32(), "Rows of the first instance"),
        _f("columns", pa.int32(), "Columns of the first instance"),
        _f(
            "pixel_spacing",
            pa.list_(pa.float64()),
            "Pixel Spacing of the first instance",
        ),
        _f("slice_thickness", pa.float64(), "Slice Thickness of the first instance"),
        _f(
            "frame_of_reference_uid",
            pa.string(),
            "Frame of Reference UID, pseudonymous",
        ),
        _f("body_part", pa.string(), "Body Part Examined"),
        _f("manufacturer", pa.string(), "Manufacturer"),
        _f("model", pa.string(), "Manufacturer's Model Name"),
    ]
)
STUDIES = pa.schema(
    [
        *_KEYS,
        _f("study_date", pa.date32(), "Study Date, shifted per patient"),
        _f("modalities", pa.list_(pa.string()), "Modalities of the series, sorted"),
        _f("series", pa.int64(), "Series exported"),
        _f("instances", pa.int64(), "Instances exported"),
        _f("bytes", pa.int64(), "Bytes exported"),
        _f(
            "instances_not_exported",
            pa.int64(),
            "Instances of the study held back (quarantined or failed)",
        ),
        _f(
            "complete", pa.bool_(), "True when every instance of the study was exported"
        ),
        _f("patient_age", pa.string(), "Patient's Age at this study"),
        _f("patient_sex", pa.string(), "Patient's Sex"),
    ]
)
TABLES = {"instances": INSTANCES, "series": SERIES, "studies": STUDIES}


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _floats(value: Any) -> list[float] | None:
    if value in (None, ""):
        return None
    try:
        items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return None


def _first(value: Any) -> float | None:
    values = _floats(value)
    return values[0] if values else None


def _texts(value: Any) -> list[str] | None:
    if value in (None, ""):
        return None
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [str(v) for v in items]


def _date(value: Any) -> date | None:
    text = str(value or "")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


class _Values:
    """Element values of one dataset, parsed once per distinct raw value.

    The instances of a series repeat most of their header; ``memo``, shared by
    them, keeps each parsed value by tag and encoded bytes.
    """

    def __init__(self, ds: Dataset, memo: dict[tuple[Any, ...], Any] | None) -> None:
        self.ds = ds
        self.memo = memo

    def __call__(self, keyword: str) -> Any:
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in self.ds:
            return None
        raw = self.ds.get_item(tag)
        if self.memo is None or not isinstance(raw, RawDataElement) or not raw.value:
            return self.ds[tag].value
        charset = getattr(self.ds.get_item(0x00080005), "value", None)
        key = (tag, raw.value, charset)
        if key not in self.memo:
            self.memo[key] = self.ds[tag].value
        return self.memo[key]


def instance_row(
    ds: Dataset,
    patient: str,
    file_path: str,
    size: int,
    sha256: str,
    memo: dict[tuple[Any, ...], Any] | None = None,
    pixel_check: str = "copied",
) -> dict[str, Any]:
    """The catalog row of one exported (already de-identified) instance.

    Parameters
    ----------
    memo
        Parsed values shared by the instances of a study, or None.
    """
    get = _Values(ds, memo)
    meta = getattr(ds, "file_meta", None)
    return {
        "patient_pseudonym": patient,
        "study_uid": _text(get("StudyInstanceUID")),
        "series_uid": _text(get("SeriesInstanceUID")),
        "sop_uid": _text(get("SOPInstanceUID")),
        "file_path": file_path,
        "modality": _text(get("Modality")),
        "sop_class_uid": _text(get("SOPClassUID")),
        "transfer_syntax_uid": str(meta.TransferSyntaxUID) if meta else None,
        "series_number": _int(get("SeriesNumber")),
        "instance_number": _int(get("InstanceNumber")),
        "rows": _int(get("Rows")),
        "columns": _int(get("Columns")),
        "frames": _int(get("NumberOfFrames")) or 1,
        "bits_allocated": _int(get("BitsAllocated")),
        "bits_stored": _int(get("BitsStored")),
        "pixel_representation": _int(get("PixelRepresentation")),
        "rescale_slope": _float(get("RescaleSlope")),
        "rescale_intercept": _float(get("RescaleIntercept")),
        "window_center": _first(get("WindowCenter")),
        "window_width": _first(get("WindowWidth")),
        "image_type": _texts(get("ImageType")),
        "body_part": _text(get("BodyPartExamined")),
        "frame_of_reference_uid": _text(get("FrameOfReferenceUID")),
        "photometric_interpretation": _text(get("PhotometricInterpretation")),
        "pixel_spacing": _floats(get("PixelSpacing")),
        "slice_thickness": _float(get("SliceThickness")),
        "spacing_between_slices": _float(get("SpacingBetweenSlices")),
        "image_position": _floats(get("ImagePositionPatient")),
        "image_orientation": _floats(get("ImageOrientationPatient")),
        "study_date": _date(get("StudyDate")),
        "series_date": _date(get("SeriesDate")),
        "content_date": _date(get("ContentDate")),
        "patient_age": _text(get("PatientAge")),
        "patient_sex": _text(get("PatientSex")),
        "manufacturer": _text(get("Manufacturer")),
        "model": _text(get("ManufacturerModelName")),
        "pixel_check": pixel_check,
        "file_size": size,
        "sha256": sha256,
    }


def study_tables(
    rows: list[dict[str, Any]], patient: str, study_uid: str, held: int
) -> dict[str, pa.Table]:
    """Instances, series and studies tables of one study.

    Parameters
    ----------
    rows
        Catalog rows of the exported instances (``instance_row``).
    patient, study_uid
        The study's pseudonymous keys, for a study of which nothing was exported.
    held
        Instances of the study that were quarantined or failed.
    """
    rows = sorted(
        rows,
        key=lambda r: (r["series_uid"] or "", r["instance_number"] or 0, r["sop_uid"]),
    )
    series: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = series.get(row["series_uid"])
        if entry is None:
            entry = series[row["series_uid"]] = {
                key: row[key]
                for key in SERIES.names
                if key in row and key not in ("instances", "bytes")
            }
            entry.update(instances=0, bytes=0)
        entry["instances"] += 1
        entry["bytes"] += row["file_size"]
    first = rows[0] if rows else {}
    studies = [
        {
            "patient_pseudonym": patient,
            "study_uid": study_uid,
            "study_date": first.get("study_date"),
            "modalities": sorted({r["modality"] for r in rows if r["modality"]}),
            "series": len(series),
            "instances": len(rows),
            "bytes": sum(r["file_size"] for r in rows),
            "instances_not_exported": held,
            "complete": held == 0,
            "patient_age": first.get("patient_age"),
            "patient_sex": first.get("patient_sex"),
        }
    ]
    return {
        "instances": pa.Table.from_pylist(rows, schema=INSTANCES),
        "series": pa.Table.from_pylist(list(series.values()), schema=SERIES),
        "studies": pa.Table.from_pylist(studies, schema=STUDIES),
    }


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def merge_parts(
    parts: Iterable[Path], schema: pa.Schema, target: Path, metadata: dict[str, str]
) -> int:
    """Stream part files, in the given order, into one Parquet file; returns rows."""
    full = schema.with_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    tmp = target.with_name(f".{target.name}.tmp")
    total = 0
    with pq.ParquetWriter(tmp, full, compression="zstd") as writer:
        for part in parts:
            table = pq.read_table(part, schema=schema)
            total += table.num_rows
            writer.write_table(table.replace_schema_metadata(full.metadata))
    tmp.replace(target)
    return total
