"""Export one study: read, de-identify, gate, write; runs in a worker process.

A worker gets everything it needs in a ``StudyTask`` (picklable) and returns a
``StudyResult``; only the parent process writes to the state database.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray
from pydicom import dcmwrite
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from exporter import __version__
from exporter.catalog import instance_row, study_tables
from exporter.engine.files import review_picture, safe_component, write_atomic
from exporter.engine.rawfile import (
    DamagedFile,
    SourceFile,
    encode_body,
    encode_file_meta,
    read_source,
)
from exporter.errors import ActionError
from exporter.pixels.clean import clean_pixel_data, sample_shows_text
from exporter.pixels.ocr import rapidocr_detector
from exporter.pixels.regions import Verdict, judge
from exporter.pixels.thumbnail import thumbnail_png
from exporter.policy.annex_e import BASIC_PROFILE_CODE, OPTIONS
from exporter.policy.apply import apply_recipe, encode_raw
from exporter.policy.functions import InstanceContext
from exporter.policy.gate import burned_in_risk, pixel_data_problem, release_problems
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import CompiledRecipe, compile_recipe
from exporter.policy.text import identifying_tokens
from exporter.verify.witness import PER_PATIENT, witness

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyTask:
    """One study to export, with everything a worker needs."""

    task_id: int
    ordinal: int
    study_uid: str
    patient_id: str
    subject_id: str | None
    items: tuple[str, ...]
    out_dir: str
    job_dir: str
    secret: bytes
    recipe_text: str
    recipe_path: str
    options: tuple[str, ...] | None  # Annex E options, None for a custom recipe
    shard: int = 0  # a large study runs as several shards, on several workers
    clean_pixels: bool = False  # scrub burned-in text instead of quarantining
    # Series (original UIDs) whose every instance is read by OCR: a sample of
    # them showed text in another shard of the study.
    ocr_series: frozenset[str] = frozenset()
    # (item, reason) of instances the source could not deliver.
    missing: tuple[tuple[str, str], ...] = ()


@dataclass
class StudyResult:
    """What happened to one study, or one shard of it; the parent records it."""

    task_id: int
    shard: int = 0
    exported: int = 0
    bytes_out: int = 0
    pixels_cleaned: int = 0
    outcomes: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    linkage: dict[tuple[str, str], str] = field(default_factory=dict)
    witness: set[tuple[str, str, str]] = field(default_factory=set)  # for verify
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Sampling of series not expected to carry text (original series UIDs):
    # what each series' first sampled instance showed (True: text), and the
    # series of which instances were released without being read whole.
    samples: dict[str, bool] = field(default_factory=dict)
    released_unread: set[str] = field(default_factory=set)
    # Export path -> boxes cleaned in it, for the audit report's thumbnails.
    painted: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)

    def merge(self, other: StudyResult) -> None:
        """Add another shard's result of the same study."""
        self.exported += other.exported
        self.bytes_out += other.bytes_out
        self.pixels_cleaned += other.pixels_cleaned
        self.outcomes += other.outcomes
        self.linkage.update(other.linkage)
        self.witness |= other.witness
        self.rows += other.rows
        for series, text in other.samples.items():
            self.samples[series] = self.samples.get(series, False) or text
        self.released_unread |= other.released_unread
        self.painted.update(other.painted)

    @property
    def text_series(self) -> set[str]:
        """Series in which a sample showed text."""
        return {series for series, text in self.samples.items() if text}

    @property
    def quarantined(self) -> int:
        """Instances held back in the workspace quarantine."""
        return sum(1 for o in self.outcomes if o[1] == "quarantined")

    @property
    def failed(self) -> int:
        """Instances that could not be processed."""
        return sum(1 for o in self.outcomes if o[1] == "failed")


_RECIPES: dict[str, CompiledRecipe] = {}


def _recipe(task: StudyTask) -> CompiledRecipe:
    key = hashlib.sha256(task.recipe_text.encode()).hexdigest()
    if key not in _RECIPES:
        _RECIPES[key] = compile_recipe(task.recipe_text, task.recipe_path)
    return _RECIPES[key]


@cache
def _stamp_dataset(digest: str, options: tuple[str, ...] | None) -> Dataset:
    """The elements that record the de-identification (PS3.15 E.1.1, PS3.3 C.12.1)."""
    ds = Dataset()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"exporter {__version__}; recipe sha256:{digest[:16]}"
    if options is None:
        return ds
    codes = [BASIC_PROFILE_CODE, *(OPTIONS[o] for o in sorted(options))]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if "retain_long_modified_dates" in options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    elif "retain_long_full_dates" in options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
    return ds


@cache
def _stamp_raw(
    digest: str, options: tuple[str, ...] | None, implicit: bool
) -> tuple[RawDataElement, ...]:
    """The stamp, encoded once per job and syntax."""
    return tuple(encode_raw(e, implicit) for e in _stamp_dataset(digest, options))


def _stamp(
    ds: Dataset, recipe: CompiledRecipe, options: tuple[str, ...] | None
) -> None:
    """Record the de-identification in the instance, replacing what was there."""
    implicit, little = ds.original_encoding
    if little is True and implicit is not None:
        for raw in _stamp_raw(recipe.digest, options, implicit):
            ds[raw.tag] = raw
        return
    for elem in _stamp_dataset(recipe.digest, options):
        ds[elem.tag] = copy.deepcopy(elem)


def _encode(
    ds: Dataset, source: SourceFile, rewritten: UID | None = None
) -> list[bytes | memoryview]:
    """Serialize with a file meta rebuilt from the cleaned dataset alone.

    The source's Pixel Data element, when kept apart, follows the header byte
    for byte: same transfer syntax, nothing decoded.
    """
    old = getattr(ds, "file_meta", None)
    syntax = old.get("TransferSyntaxUID") if old is not None else None
    if rewritten is not None:
        syntax = rewritten  # new pixel data, in this syntax
    if syntax is None:
        if ds.original_encoding[0]:
            syntax = ImplicitVRLittleEndian
        elif ds.original_encoding[1]:
            syntax = ExplicitVRLittleEndian
        else:
            syntax = ExplicitVRBigEndian
    # File meta elements misplaced in the dataset go: the meta is rebuilt.
    for tag in [tag for tag in ds.keys() if tag.group == 0x0002]:  # noqa: SIM118
        del ds[tag]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"EXPORTER_{__version__}"[:16]
    ds.file_meta = meta
    if rewritten is not None or syntax in (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    ):
        # Rare syntaxes: let pydicom write everything.
        ds.preamble = b"\x00" * 128
        buffer = io.BytesIO()
        # dcmwrite, not save_as: a big endian source rewritten little endian
        # is a conversion save_as refuses.
        dcmwrite(
            buffer,
            ds,
            implicit_vr=syntax.is_implicit_VR,
            little_endian=syntax.is_little_endian,
            enforce_file_format=True,
        )
        return [buffer.getvalue()]
    head = encode_file_meta(
        str(meta.MediaStorageSOPClassUID),
        str(meta.MediaStorageSOPInstanceUID),
        str(syntax),
        (PYDICOM_IMPLEMENTATION_UID, meta.ImplementationVersionName),
    )
    chunks: list[bytes | memoryview] = [head, encode_body(ds, source.data)]
    if source.pixel_element is not None:
        chunks.append(source.pixel_element)
    return chunks


def _context(task: StudyTask, pseudonyms: Pseudonymizer) -> InstanceContext:
    # A study without PatientID still needs one stable key per patient.
    key = task.patient_id or f"study:{task.study_uid}"
    return InstanceContext(
        pseudonyms=pseudonyms,
        patient_pseudonym=pseudonyms.patient(key, task.subject_id),
        date_offset_days=pseudonyms.date_offset_days(key),
        memo={},
        values={},
    )


@dataclass
class _Pixels:
    """What happens to one instance's pixel data."""

    risk: str | None  # why it is held back, if it is
    check: str = "copied"  # the catalog's pixel_check
    syntax: UID | None = None  # the new transfer syntax, when rewritten
    painted: list[tuple[int, int, int, int]] = field(default_factory=list)
    # First frame before and after cleaning (PNG thumbnails), for review.
    pictures: tuple[bytes, bytes] | None = None


def _pixels(
    task: StudyTask,
    source: SourceFile,
    ds: Dataset,
    risk: str | None,
    verdict: Verdict,
    series: str,
    result: StudyResult,
) -> _Pixels:
    """Clean, check by sample, or copy the pixel data, as the policy says.

    An instance that may carry text is read whole by OCR (with Clean Pixel
    Data) or kept back. Of the others, with Clean Pixel Data, the first frame
    of the first instance of each series in the shard is read; text there
    sends the whole series to OCR. A graylist rule's regions are always
    cleaned.
    """
    by_rule = bool(verdict.regions)
    has_pixels = source.pixel_element is not None or "PixelData" in ds
    data = source.data  # decoded from the bytes read once, not read again
    if task.clean_pixels and risk is None and not by_rule and has_pixels:
        if series in task.ocr_series or result.samples.get(series):
            risk = "a sample of its series showed text"
        elif series not in result.samples:
            shows = sample_shows_text(data, rapidocr_detector)
            result.samples[series] = bool(shows)
            if shows:
                risk = "a sample of its series showed text"
            else:
                result.released_unread.add(series)
                return _Pixels(None, "sampled" if shows is False else "copied")
        else:
            result.released_unread.add(series)
            return _Pixels(None)
    if not by_rule and (risk is None or not task.clean_pixels):
        return _Pixels(risk)
    detect = rapidocr_detector if task.clean_pixels else None
    painted: list[tuple[int, int, int, int]] = []
    views: list[NDArray[np.uint8]] = []
    why = clean_pixel_data(data, ds, detect, verdict.regions, painted, views)
    if why is not None:
        return _Pixels(f"{risk or 'pixel regions'}; {why}")
    result.pixels_cleaned += 1
    used = (("rule", by_rule), ("ocr", detect is not None))
    check = "+".join(name for name, on in used if on)
    pictures = (
        (thumbnail_png(views[0], painted), thumbnail_png(views[1], painted))
        if views
        else None
    )
    return _Pixels(None, check, ExplicitVRLittleEndian, painted, pictures)


def _one(
    task: StudyTask,
    item: str,
    ctx: InstanceContext,
    recipe: CompiledRecipe,
    result: StudyResult,
    rows: list[dict[str, Any]],
) -> None:
    try:
        source = read_source(item)
        ds = source.dataset
        if source.pixel_element is None:
            broken = pixel_data_problem(ds)
        else:
            length = source.pixel_value_length
            broken = pixel_data_problem(ds, length, source.encapsulated)
        if broken:
            result.outcomes.append((item, "failed", f"damaged source: {broken}", None))
            return
        series = str(ds.get("SeriesInstanceUID", "") or "")
        result.witness |= {
            (kind, value, ctx.patient_pseudonym if kind in PER_PATIENT else "")
            for kind, value in witness(ds)
        }
        risk = burned_in_risk(ds)
        verdict = judge(ds, recipe.filters) if recipe.filters else Verdict()
        if verdict.blacklisted:
            risk = f"matched %filter blacklist rule {verdict.blacklisted!r}"
        elif verdict.flagged and risk is None:
            risk = f"matched %filter graylist rule {verdict.flagged!r} (no regions)"
        if recipe.uses("clean_text"):
            ctx.tokens = identifying_tokens(ds)
        apply_recipe(ds, recipe, ctx)
        _stamp(ds, recipe, task.options)
        safe = "retain_safe_private" in (task.options or ())
        problems = release_problems(ds, safe)
        # A blacklisted instance, or one that cannot go anyway, is not cleaned.
        pixels = (
            _Pixels(risk)
            if verdict.blacklisted or problems
            else _pixels(task, source, ds, risk, verdict, series, result)
        )
        data = _encode(ds, source, pixels.syntax)
        sop = safe_component(str(ds.SOPInstanceUID))
        relative = Path(
            "dicom",
            safe_component(ctx.patient_pseudonym),
            safe_component(str(ds.StudyInstanceUID)),
            safe_component(str(ds.get("SeriesInstanceUID", "") or "no-series")),
            f"{sop}.dcm",
        )
    except DamagedFile as exc:
        result.outcomes.append((item, "failed", f"damaged source: {exc}", None))
        return
    except ActionError as exc:
        result.outcomes.append((item, "failed", f"recipe action failed: {exc}", None))
        return
    except Exception as exc:  # one bad file never stops the study
        reason = f"cannot read or write the instance: {type(exc).__name__}"
        result.outcomes.append((item, "failed", reason, None))
        logger.debug("failed %s", item, exc_info=True)
        return

    if pixels.risk or problems:
        reason = "; ".join(
            [
                *([f"may carry burned-in text ({pixels.risk})"] if pixels.risk else []),
                *problems,
            ]
        )
        target = (
            Path(task.job_dir) / "quarantine" / f"{task.ordinal:08d}" / f"{sop}.dcm"
        )
        write_atomic(target, data)
        result.outcomes.append((item, "quarantined", reason, str(target)))
        return

    write_atomic(Path(task.out_dir) / relative, data)
    if pixels.check not in ("copied", "sampled"):
        result.painted[relative.as_posix()] = pixels.painted
    if pixels.pictures is not None:
        # Identifying (text as it was burned in): workspace only, for review.
        for when, png in zip(("before", "after"), pixels.pictures, strict=True):
            write_atomic(_picture_path(task, relative, when), png)
    digest = hashlib.sha256()
    for chunk in data:
        digest.update(chunk)
    size = sum(len(chunk) for chunk in data)
    rows.append(
        instance_row(
            ds,
            ctx.patient_pseudonym,
            relative.as_posix(),
            size,
            digest.hexdigest(),
            ctx.values,
            pixels.check,
        )
    )
    result.exported += 1
    result.bytes_out += size


def export_shard(task: StudyTask) -> StudyResult:
    """Export the instances of one shard; never raises for one bad instance.

    The catalog rows come back in the result; ``write_study_parts`` turns a
    whole study's rows into its catalog parts.
    """
    recipe = _recipe(task)
    pseudonyms = Pseudonymizer(task.secret)
    ctx = _context(task, pseudonyms)
    result = StudyResult(task_id=task.task_id, shard=task.shard)
    # pydicom warns about malformed values by quoting them: never let those
    # reach a terminal or a log at default level.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in task.items:
            _one(task, item, ctx, recipe, result, result.rows)
    result.linkage = pseudonyms.linkage
    return result


def write_study_parts(task: StudyTask, result: StudyResult) -> None:
    """Write a finished study's catalog parts, each atomically, after its files."""
    pseudonyms = Pseudonymizer(task.secret)
    patient = _context(task, pseudonyms).patient_pseudonym
    study_uid = pseudonyms.uid(task.study_uid)
    held = result.quarantined + result.failed
    # Rows in the order of their (pseudonymous) paths: the same catalog
    # whichever order the source delivered the files in.
    rows = sorted(result.rows, key=lambda row: str(row["file_path"]))
    for name, table in study_tables(rows, patient, study_uid, held).items():
        part = Path(task.job_dir) / "parts" / name / f"{task.ordinal:08d}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        tmp = part.with_name(f".tmp-{os.getpid()}-{part.name}")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, part)
    regions = Path(task.job_dir) / "parts" / "painted" / f"{task.ordinal:08d}.json"
    regions.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(regions, json.dumps(result.painted, sort_keys=True).encode())


def _picture_path(task: StudyTask, relative: Path, when: str) -> Path:
    """Where a picture of a cleaned image, before or after, is kept."""
    return review_picture(Path(task.job_dir), task.ordinal, relative.stem, when)


def clear_previous_output(task: StudyTask) -> None:
    """Remove what an earlier run of this study left: files, parts, quarantine.

    A study is always redone whole; without this, an instance that has since
    left the source would stay in the export with no catalog row.
    """
    job_dir = Path(task.job_dir)
    previous = job_dir / "parts" / "instances" / f"{task.ordinal:08d}.parquet"
    if previous.exists():
        for row in pq.read_table(previous, columns=["file_path"]).to_pylist():
            (Path(task.out_dir) / row["file_path"]).unlink(missing_ok=True)
    for name in ("instances", "series", "studies"):
        (job_dir / "parts" / name / f"{task.ordinal:08d}.parquet").unlink(
            missing_ok=True
        )
    (job_dir / "parts" / "painted" / f"{task.ordinal:08d}.json").unlink(missing_ok=True)
    for folder in (job_dir / "parts" / "pictures", job_dir / "quarantine"):
        shutil.rmtree(folder / f"{task.ordinal:08d}", ignore_errors=True)


def export_study(task: StudyTask) -> StudyResult:
    """Export a whole study in this process: all its instances, then its parts."""
    result = export_shard(task)
    write_study_parts(task, result)
    return result
