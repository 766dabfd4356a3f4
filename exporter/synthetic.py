"""Synthetic DICOM studies with planted PHI, for tests, demos and benchmarks.

Everything here is generated deterministically from a seed: the same arguments
give byte-identical files on any machine. The studies carry made-up but
realistic protected health information (PHI) in every place DICOM hides it:
patient and study attributes, nested sequences, private blocks, overlay and
curve groups, the File Meta Information, and the folder and file names. A
:class:`SyntheticSource` lists every planted string, so a test can search an
export for each of them and prove that nothing leaked.

All names, addresses and identifiers are invented. Names are deliberately odd
(``QUIMBYWELL^ZEBEDIAH^Q``) so that a substring search for them in an export
gives no false positives.

Notes
-----
Numeric PHI (MRNs, accession numbers, dates) can occur by chance inside longer
runs of digits, such as the 39-digit tail of a ``2.25.`` UID. Leak checks should
match numeric strings on token boundaries, not as bare substrings.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import functools
import io
import logging
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.charset import default_encoding
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
)

logger = logging.getLogger(__name__)

# Fixed namespace for the name-based UUIDs behind every generated UID.
_UID_NAMESPACE = uuid.UUID("6f1c2a9e-4b7d-5e83-9a41-0c2d7e5b8f36")
_IMPLEMENTATION_VERSION = "EXPORTER_SYNTH"
_DETACHED_STUDY_CLASS = "1.2.840.10008.3.1.2.3.1"
_ACME_CREATOR = "ACME PHI 1.0"
_SIEMENS_CREATOR = "SIEMENS CT VA0  COAD"
_CT_SERIES_SALT = "make_ct_series"
_CT_SERIES_STREAM = 1

# Patient and staff surnames are stem + ending: 18 x 10 distinctive names.
_SURNAME_STEMS = tuple(
    [
        "QUIMBY",
        "THISTLE",
        "BRACKEN",
        "FARTHING",
        "GOSSAMER",
        "LARKSPUR",
        "PEVENSEY",
        "WIMBORNE",
        "ASHGROVE",
        "DUNSTABLE",
        "FENMORE",
        "GRIMSBY",
        "HEPPLE",
        "KESTREL",
        "MOSSBANK",
        "NETTLE",
        "DRAKEWOOD",
        "MERRIDOWN",
    ]
)
_SURNAME_ENDINGS = tuple(
    ["WELL", "HOLT", "FIELD", "STONE", "WICK", "BURY", "HAM", "THORPE", "COMBE", "LEY"]
)
_GIVEN_NAMES = tuple(
    [
        "ZEBEDIAH",
        "PERPETUA",
        "THADDEUS",
        "OTTOLINE",
        "LEOFRIC",
        "WINIFRED",
        "EZEKIAH",
        "ROWENNA",
        "BARNABAS",
        "ISOLDINE",
        "CORDELIA",
        "AMBROSINE",
        "GWENDOLYN",
        "HORATIO",
        "OSBERT",
        "TIBERIUS",
        "URSULINE",
        "VESPERA",
        "WILHELMINA",
        "XANTHIPPE",
    ]
)
_SURNAMES = tuple(a + b for a in _SURNAME_STEMS for b in _SURNAME_ENDINGS)
_MIDDLE_INITIALS = "ABCDEFGHJKLMNPQRSTVW"
_STAFF = 8
# Surnames per patient: own, an alias in OtherPatientNames, the mother's.
_SURNAMES_PER_PATIENT = 3
_NATIONAL_ISSUER = "NHI"
_STREETS = (
    "Elmstone Quarry Rd",
    "Wrenfold Lane",
    "Haddock Mill Way",
    "Cobblewick Terrace",
    "Pimbury Orchard Dr",
    "Saltmarsh Crescent",
)
_TOWNS = (
    ("Tillingham", "VT", "05491"),
    ("Brisbury", "NH", "03882"),
    ("Fenwold", "ME", "04019"),
    ("Harrowgate Falls", "VT", "05733"),
)
_AREA_CODES = ("802", "603", "207")


@dataclass(frozen=True)
class _Site:
    """A made-up hospital: where studies are acquired and MRNs are issued."""

    institution: str
    department: str
    address: str
    phone: str
    code: str
    issuer: str


_SITES = (
    _Site(
        "ST OSWALDINE GENERAL HOSPITAL",
        "RADIOLOGY",
        "1200 Cormorant Wharf Rd, Tillingham, VT 05491",
        "(802) 555-0110",
        "OSW",
        "OSWALDINE-MRN",
    ),
    _Site(
        "MERRIDEW UNIVERSITY MEDICAL CENTER",
        "IMAGING SERVICES",
        "77 Pelham Causeway, Brisbury, NH 03882",
        "(603) 555-0172",
        "MUMC",
        "MERRIDEW-MRN",
    ),
    _Site(
        "HALLOWAY VALLEY CLINIC",
        "DIAGNOSTIC IMAGING",
        "9 Quarrystone Ln, Fenwold, ME 04019",
        "(207) 555-0139",
        "HVC",
        "HALLOWAY-MRN",
    ),
)


@dataclass(frozen=True)
class _ModalitySpec:
    """How one modality's images look: SOP class, geometry and pixel levels."""

    sop_class: str
    bits: int
    field_of_view: float | None
    slice_step: float
    levels: tuple[int, int, int, int]
    noise: int
    protocol: str
    series_descriptions: tuple[str, ...]
    technical: Mapping[str, object] = field(default_factory=dict)


_AXIAL = ["1", "0", "0", "0", "1", "0"]

# Pixel levels are (air, soft tissue, lung, bone) in stored values. They stay
# below 0x3000 so 16-bit pixel data never forms runs of ASCII text.
_MODALITIES: Mapping[str, _ModalitySpec] = {
    "CT": _ModalitySpec(
        CTImageStorage,
        16,
        338.6716,
        5.0,
        (0, 1064, 224, 1724),
        24,
        "CT CHEST WITH CONTRAST",
        ("AXIAL 5MM", "CORONAL MPR 3MM"),
    ),
    "MR": _ModalitySpec(
        MRImageStorage,
        16,
        230.0,
        6.0,
        (0, 620, 80, 310),
        40,
        "MR BRAIN WITHOUT CONTRAST",
        ("AX T1 SE", "AX T2 FSE"),
        {
            "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"],
            "Manufacturer": "SIEMENS",
            "ManufacturerModelName": "Skyra",
            "SoftwareVersions": "syngo MR E11",
            "ScanningSequence": "SE",
            "SequenceVariant": "SK",
            "MRAcquisitionType": "2D",
            "SliceThickness": "5",
            "SpacingBetweenSlices": "6",
            "RepetitionTime": "500",
            "EchoTime": "15",
            "MagneticFieldStrength": "3",
            "ImagingFrequency": "123.2",
            "ImagedNucleus": "1H",
            "EchoTrainLength": "1",
            "PatientPosition": "HFS",
            "ImageOrientationPatient": _AXIAL,
            "PositionReferenceIndicator": "NA",
        },
    ),
    "PT": _ModalitySpec(
        PositronEmissionTomographyImageStorage,
        16,
        700.0,
        3.27,
        (0, 180, 60, 2400),
        30,
        "PET WHOLE BODY FDG",
        ("PET WB AC", "PET WB NAC"),
        {
            "ImageType": ["ORIGINAL", "PRIMARY"],
            "Manufacturer": "GE MEDICAL SYSTEMS",
            "ManufacturerModelName": "Discovery MI",
            "SeriesType": ["STATIC", "IMAGE"],
            "Units": "BQML",
            "CountsSource": "EMISSION",
            "DecayCorrection": "START",
            "CorrectedImage": ["ATTN", "DECY", "NORM"],
            "SliceThickness": "3.27",
            "RescaleIntercept": "0",
            "RescaleSlope": "0.25",
            "PatientPosition": "FFS",
            "ImageOrientationPatient": _AXIAL,
            "PositionReferenceIndicator": "NA",
        },
    ),
    "US": _ModalitySpec(
        UltrasoundImageStorage,
        8,
        None,
        0.0,
        (0, 30, 12, 44),
        3,
        "US ABDOMEN COMPLETE",
        ("ABDOMEN",),
        {
            "ImageType": ["ORIGINAL", "PRIMARY", "ABDOMINAL"],
            "Manufacturer": "ACME SONOGRAPHY",
            "ManufacturerModelName": "SONOVUE 7",
        },
    ),
    "OT": _ModalitySpec(
        SecondaryCaptureImageStorage,
        8,
        None,
        0.0,
        (0, 20, 10, 40),
        3,
        "DOSE REPORT CAPTURE",
        ("SCREEN SAVE",),
        {
            "ImageType": ["DERIVED", "SECONDARY"],
            "ConversionType": "WSD",
            "Manufacturer": "ACME WORKSTATION",
        },
    ),
}

# Technical (non-identifying) attributes copied from pydicom's CT_small.dcm.
_CT_TEMPLATE_KEYWORDS = (
    "ImageType",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "ContrastBolusAgent",
    "ContrastBolusRoute",
    "ScanOptions",
    "SliceThickness",
    "KVP",
    "SpacingBetweenSlices",
    "DataCollectionDiameter",
    "ReconstructionDiameter",
    "DistanceSourceToDetector",
    "DistanceSourceToPatient",
    "GantryDetectorTilt",
    "TableHeight",
    "ExposureTime",
    "XRayTubeCurrent",
    "Exposure",
    "FilterType",
    "FocalSpots",
    "ConvolutionKernel",
    "PatientPosition",
    "ImageOrientationPatient",
    "PositionReferenceIndicator",
    "RescaleIntercept",
    "RescaleSlope",
    "TimezoneOffsetFromUTC",
)
_NOISE_SHIFT = 16
_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate")
_STUDY_KEYS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "StudyInstanceUID",
    "StudyID",
)
_SERIES_KEYS = ("Modality", "SeriesInstanceUID", "SeriesNumber")
# Burned-in glyph level, low enough that 8-bit noise cannot wrap it to black.
_BANNER = 250


@dataclass(frozen=True)
class PlantedPatient:
    """One synthetic patient and the identifiers planted for them.

    Parameters
    ----------
    patient_id
        The MRN, always with a leading zero (``"0012345"``), so that tools that
        turn identifiers into numbers are caught.
    name
        The DICOM person name, ``FAMILY^GIVEN^MIDDLE``.
    birth_date
        ``YYYYMMDD``.
    sex
        ``M``, ``F`` or ``O``.
    age
        The DICOM age string at the patient's first study, for example ``047Y``.
    """

    patient_id: str
    name: str
    birth_date: str
    sex: str
    age: str


@dataclass(frozen=True)
class PlantedStudy:
    """One written study and the identifiers planted in it.

    Parameters
    ----------
    patient
        The study's patient.
    study_uid, accession, study_date, modality
        The study's original StudyInstanceUID, AccessionNumber, StudyDate and
        the modality of its series.
    series_uids, sop_uids
        Original SeriesInstanceUIDs and SOPInstanceUIDs, in writing order.
    paths
        The written files, in the same order as `sop_uids`.
    burned_in
        True for ultrasound and secondary capture studies, whose pixel data may
        carry burned-in text; an export must quarantine them.
    planted_text
        Every other identifying string planted in the study's files: staff and
        site names, addresses, phone numbers, other identifiers, frame of
        reference and other UIDs, private text, serial numbers.
    """

    patient: PlantedPatient
    study_uid: str
    accession: str
    study_date: str
    modality: str
    series_uids: tuple[str, ...]
    sop_uids: tuple[str, ...]
    paths: tuple[Path, ...]
    burned_in: bool
    planted_text: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SyntheticSource:
    """A folder of synthetic studies and what was planted in it.

    Parameters
    ----------
    root
        The folder that holds the studies and the bad files.
    studies
        The readable studies, in writing order.
    bad_files
        Files a reader must reject or skip, by reason: ``"not-dicom"``,
        ``"truncated-pixels"``, ``"truncated-header"``, ``"dicomdir"`` and
        ``"empty"``.
    other_phi
        Identifying strings planted outside `studies`: the patient behind the
        truncated files and the DICOMDIR.
    """

    root: Path
    studies: tuple[PlantedStudy, ...]
    bad_files: Mapping[str, Path]
    other_phi: frozenset[str] = frozenset()

    def phi_strings(self) -> set[str]:
        """Return every planted identifying string.

        Returns
        -------
        set[str]
            Patient names and their parts of three or more characters, MRNs,
            birth dates, accession numbers, study dates (``YYYYMMDD`` and the
            ``YYYY-MM-DD`` form used in folder names), the original UIDs and
            each study's `planted_text`. An export must contain none of them.
        """
        found: set[str] = set(self.other_phi)
        for study in self.studies:
            patient = study.patient
            found.update(_person_strings(patient.name))
            found.update((patient.patient_id, study.accession, study.study_uid))
            found.update(_date_strings(patient.birth_date))
            found.update(_date_strings(study.study_date))
            found.update(study.series_uids)
            found.update(study.sop_uids)
            found.update(study.planted_text)
        return found


@dataclass(frozen=True)
class _PatientRecord:
    """A patient with the extra demographics planted only in headers."""

    planted: PlantedPatient
    surname: str
    given: str
    birth: dt.date
    address: str
    phone: str
    alias_name: str
    mother_name: str
    other_ids: tuple[tuple[str, str], ...]
    weight_kg: float
    height_m: float
    folder: str


@dataclass(frozen=True)
class _StudyPlan:
    """Everything study-level that goes into the headers of one study."""

    patient: _PatientRecord
    site: _Site
    key: str
    uid: str
    accession: str
    study_id: str
    procedure_id: str
    step_id: str
    date: dt.date
    time: str
    modality: str
    referring: str
    performing: str
    operator: str
    operator_code: str
    station: str
    serial: str
    ae_title: str
    referenced_study_uid: str
    directory: Path


@dataclass(frozen=True)
class _SeriesPlan:
    """One series: its UIDs, encoding, and which special elements it carries."""

    number: int
    uid: str
    frame_uid: str | None
    event_uid: str | None
    description: str
    time: str
    transfer_syntax: UID
    sop_uids: tuple[str, ...]
    study_sop_uids: tuple[str, ...]
    study_offset: int
    directory: Path
    source_uids: tuple[str, ...] = ()
    overlay: bool = False
    curve_instance: int | None = None
    raw_instance: int | None = None
    burned_in_annotation: str | None = "NO"


class _UidFactory:
    """Deterministic ``2.25`` UIDs from name-based UUIDs (PS3.5 Annex B.2)."""

    def __init__(self, namespace: str, seed: int) -> None:
        self._prefix = f"exporter.synthetic/{namespace}/{seed}/"

    def __call__(self, *labels: object) -> str:
        """Return the UID for `labels`; distinct labels give distinct UIDs."""
        name = self._prefix + "/".join(str(label) for label in labels)
        return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


class _Generator:
    """Draws every random value of one synthetic source from seeded RNGs."""

    def __init__(self, rng: random.Random, uids: _UidFactory) -> None:
        self.rng = rng
        self.uids = uids
        self._surnames = rng.sample(_SURNAMES, len(_SURNAMES))
        self._used: set[str] = set()
        self._staff = [
            f"{self.surname()}^{rng.choice(_GIVEN_NAMES)}" for _ in range(_STAFF)
        ]

    def surname(self) -> str:
        """Return a surname never returned before by this generator."""
        return self._surnames.pop()

    def draw(self, pattern: str) -> str:
        """Return a value of `pattern`, where each ``#`` becomes a random digit."""
        return "".join(str(self.rng.randrange(10)) if c == "#" else c for c in pattern)

    def unique(self, pattern: str) -> str:
        """Return a value of `pattern` never returned before by this generator."""
        while True:
            value = self.draw(pattern)
            if value not in self._used:
                self._used.add(value)
                return value

    def time(self) -> str:
        """Return a daytime ``HHMMSS``."""
        hour, minute = self.rng.randrange(7, 19), self.rng.randrange(60)
        return f"{hour:02d}{minute:02d}{self.rng.randrange(60):02d}"

    def patient(self, age_years: int, first_study: dt.date) -> _PatientRecord:
        """Return a new patient who is `age_years` old on `first_study`."""
        rng = self.rng
        surname, given = self.surname(), rng.choice(_GIVEN_NAMES)
        mrn = self.unique("00#####")
        birth = _years_before(first_study, age_years, rng.randrange(1, 360))
        town, state, zip_code = rng.choice(_TOWNS)
        other_site = rng.choice(_SITES)
        planted = PlantedPatient(
            patient_id=mrn,
            name=f"{surname}^{given}^{rng.choice(_MIDDLE_INITIALS)}",
            birth_date=birth.strftime("%Y%m%d"),
            sex=rng.choices(("F", "M", "O"), weights=(45, 45, 10))[0],
            age=f"{_age_years(birth, first_study):03d}Y",
        )
        return _PatientRecord(
            planted=planted,
            surname=surname,
            given=given,
            birth=birth,
            address=(
                f"{rng.randrange(10, 9900)} {rng.choice(_STREETS)}, "
                f"{town}, {state} {zip_code}"
            ),
            phone=f"({rng.choice(_AREA_CODES)}) 555-{rng.randrange(10000):04d}",
            alias_name=f"{self.surname()}^{given}",
            mother_name=f"{self.surname()}^{rng.choice(_GIVEN_NAMES)}",
            other_ids=(
                (self.unique("0#######"), other_site.issuer),
                (self.unique("NHI-###-####"), _NATIONAL_ISSUER),
            ),
            weight_kg=round(rng.uniform(48.0, 112.0), 1),
            height_m=round(rng.uniform(1.50, 1.95), 2),
            folder=f"{surname}_{given}_{mrn}",
        )

    def study(
        self,
        patient: _PatientRecord,
        key: str,
        date: dt.date,
        modality: str,
        root: Path,
    ) -> _StudyPlan:
        """Return the plan of one study of `patient` on `date`."""
        site = self.rng.choice(_SITES)
        referring, performing, operator = self.rng.sample(self._staff, 3)
        return _StudyPlan(
            patient=patient,
            site=site,
            key=key,
            uid=self.uids("study", key),
            accession=self.unique("0#########"),
            study_id=self.unique("EX######"),
            procedure_id=self.unique("RP#######"),
            step_id=self.unique("SPS######"),
            date=date,
            time=self.time(),
            modality=modality,
            referring=referring,
            performing=performing,
            operator=operator,
            operator_code=self.unique("OP####"),
            station=self.draw(f"{site.code}{modality}##"),
            serial=self.unique("SN########"),
            ae_title=self.draw(f"{site.code}_PACS#"),
            referenced_study_uid="",
            directory=root / patient.folder / date.isoformat(),
        )


def make_source(
    root: Path,
    *,
    seed: int = 0,
    patients: int = 3,
    studies_per_patient: int = 2,
    instances_per_series: int = 3,
    rows: int = 64,
    columns: int = 64,
    with_bad_files: bool = True,
    with_burned_in: bool = True,
) -> SyntheticSource:
    """Write a folder of synthetic studies with planted PHI.

    Each patient gets `studies_per_patient` studies on different dates (CT, MR
    or PT, one or two series each). Files live in PHI-bearing folders,
    ``root/FAMILY_GIVEN_MRN/YYYY-MM-DD/Snn_MOD/ACCESSION_Snn_NNNN.dcm``. The first
    study always has two series: the first carries an overlay plane (group
    6000), a curve (group 5000) in its first instance and, as its last instance,
    a raw dataset with neither preamble nor File Meta Information; the second
    is written in Implicit VR Little Endian. The last of two or more patients is
    93 years old at the first study.

    Parameters
    ----------
    root
        Folder to write into; created if missing.
    seed
        Seed of every random choice; the same arguments give identical bytes.
    patients, studies_per_patient, instances_per_series
        Size of the source.
    rows, columns
        Image size of the CT, MR and PT series.
    with_bad_files
        Also write files a reader must reject: see
        :attr:`SyntheticSource.bad_files`.
    with_burned_in
        Also give the first patient an ultrasound study (BurnedInAnnotation
        absent) and a secondary capture study (BurnedInAnnotation ``YES``).

    Returns
    -------
    SyntheticSource
        What was written and every planted identifying string.

    Raises
    ------
    ValueError
        If a size is out of range, or there are more patients than distinct
        synthetic names.
    """
    _check_sizes(
        patients=patients,
        studies_per_patient=studies_per_patient,
        instances_per_series=instances_per_series,
        rows=rows,
        columns=columns,
    )
    # The stray patient of the bad files needs surnames too.
    most = (len(_SURNAMES) - _STAFF) // _SURNAMES_PER_PATIENT - 1
    if patients > most:
        raise ValueError(
            f"patients must be at most {most}, got {patients}: the synthetic "
            "name lists would run out"
        )
    root = Path(root)
    gen = _Generator(random.Random(seed), _UidFactory("source", seed))
    np_rng = np.random.default_rng(seed)

    # Plan patients, then each patient's studies on increasing dates.
    studies: list[PlantedStudy] = []
    for p in range(patients):
        first = dt.date(2012, 1, 2) + dt.timedelta(days=gen.rng.randrange(3650))
        old = patients > 1 and p == patients - 1
        age = 93 if old else gen.rng.randrange(21, 86)
        patient = gen.patient(age, first)
        dates = _study_dates(gen.rng, first, studies_per_patient)
        modalities = ["CT"] + [
            gen.rng.choice(("CT", "MR", "PT")) for _ in range(studies_per_patient - 1)
        ]
        plans = [
            gen.study(patient, f"p{p}/s{s}", date, modality, root)
            for s, (date, modality) in enumerate(zip(dates, modalities, strict=True))
        ]
        plans = _link_prior_studies(plans)

        # Write each study; the very first one carries the special encodings.
        for s, plan in enumerate(plans):
            series_count = 2 if p == s == 0 else gen.rng.choice((1, 2))
            studies.append(
                _write_study(
                    gen,
                    np_rng,
                    plan,
                    series_count=series_count,
                    instances=instances_per_series,
                    shape=(rows, columns),
                    special=p == s == 0,
                )
            )

        # Burned-in studies follow the first patient's last regular study.
        if with_burned_in and p == 0:
            studies.extend(
                _write_burned_in(gen, np_rng, plans[-1], root, (rows, columns))
            )

    # Files that readers must reject, with a stray patient of their own.
    bad_files: dict[str, Path] = {}
    other_phi: frozenset[str] = frozenset()
    if with_bad_files:
        bad_files, other_phi = _write_bad_files(gen, np_rng, root, studies[0])
    logger.debug(
        "wrote %d synthetic studies and %d bad files", len(studies), len(bad_files)
    )
    return SyntheticSource(
        root=root,
        studies=tuple(studies),
        bad_files=bad_files,
        other_phi=other_phi,
    )


def make_ct_series(
    root: Path,
    count: int,
    *,
    seed: int = 0,
    rows: int = 512,
    columns: int = 512,
) -> list[Path]:
    """Write one CT study with one series of `count` instances, quickly.

    The instances carry the same planted header as :func:`make_source` (under
    a different patient: the random generators are seeded from `seed` and a
    fixed salt, so both corpora can share a folder). The header is built once;
    each instance changes only its UIDs, position, references and pixels.

    Parameters
    ----------
    root
        Folder to write into; created if missing.
    count
        Number of instances.
    seed
        Seed of every random choice.
    rows, columns
        Image size; pixels are 16-bit, MONOCHROME2.

    Returns
    -------
    list[Path]
        The written files, in instance order.

    Raises
    ------
    ValueError
        If `count`, `rows` or `columns` is out of range.
    """
    _check_sizes(count=count, rows=rows, columns=columns)
    root = Path(root)
    gen = _Generator(
        random.Random(f"{_CT_SERIES_SALT}/{seed}"), _UidFactory(_CT_SERIES_SALT, seed)
    )
    np_rng = np.random.default_rng([seed, _CT_SERIES_STREAM])
    first = dt.date(2012, 1, 2) + dt.timedelta(days=gen.rng.randrange(3650))
    patient = gen.patient(gen.rng.randrange(21, 86), first)
    plan = gen.study(patient, "ct", first, "CT", root)
    study = _write_study(
        gen,
        np_rng,
        plan,
        series_count=1,
        instances=count,
        shape=(rows, columns),
        special=False,
    )
    return list(study.paths)


def write_manifest(path: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    """Write `rows` as a UTF-8 CSV cohort manifest.

    Parameters
    ----------
    path
        The CSV file to write; parent folders are created.
    rows
        The rows. The header is the union of their keys in first-seen order;
        a row without a key gets an empty cell.

    Returns
    -------
    Path
        `path`.
    """
    path = Path(path)
    header: dict[str, None] = {}
    for row in rows:
        header.update(dict.fromkeys(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(header), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _check_sizes(**sizes: int) -> None:
    """Raise ValueError unless every size is positive and images are 8+ pixels."""
    for name, value in sizes.items():
        minimum = 8 if name in ("rows", "columns") else 1
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _years_before(day: dt.date, years: int, extra_days: int) -> dt.date:
    """Return the date `years` and `extra_days` before `day`."""
    try:
        shifted = day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap year
        shifted = day.replace(year=day.year - years, day=28)
    return shifted - dt.timedelta(days=extra_days)


def _age_years(birth: dt.date, on: dt.date) -> int:
    """Return the age in completed years on `on`."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _study_dates(rng: random.Random, first: dt.date, count: int) -> list[dt.date]:
    """Return `count` increasing dates, weeks to months apart, from `first`."""
    dates = [first]
    for _ in range(count - 1):
        dates.append(dates[-1] + dt.timedelta(days=rng.randrange(21, 400)))
    return dates


def _link_prior_studies(plans: list[_StudyPlan]) -> list[_StudyPlan]:
    """Point each study's ReferencedStudySequence at another study of the patient."""
    if len(plans) < 2:
        return plans
    return [
        dataclasses.replace(plan, referenced_study_uid=plans[i - 1 if i else 1].uid)
        for i, plan in enumerate(plans)
    ]


def _person_strings(name: str) -> set[str]:
    """Return a person name and its components of 3+ characters, also title-cased.

    Free text spells staff names in title case (``Perpetua Brackenwell``), so
    both forms are planted and must be searched for.
    """
    parts = {part for part in name.replace("^", " ").split() if len(part) >= 3}
    return {name, *parts, *(part.title() for part in parts)}


def _date_strings(value: str) -> set[str]:
    """Return a ``YYYYMMDD`` date and its ``YYYY-MM-DD`` form."""
    return {value, f"{value[:4]}-{value[4:6]}-{value[6:]}"}


def _write_study(
    gen: _Generator,
    np_rng: np.random.Generator,
    plan: _StudyPlan,
    *,
    series_count: int,
    instances: int,
    shape: tuple[int, int],
    special: bool,
) -> PlantedStudy:
    """Plan the series of one study, write them, and describe what was planted."""
    spec = _MODALITIES[plan.modality]
    uids = gen.uids
    sop_uids = [
        tuple(uids("sop", plan.key, n, i) for i in range(instances))
        for n in range(1, series_count + 1)
    ]
    study_sops = tuple(uid for series in sop_uids for uid in series)

    # Plan the series; the special study shows every encoding readers must take.
    series_plans = []
    for n in range(1, series_count + 1):
        series_plans.append(
            _SeriesPlan(
                number=n,
                uid=uids("series", plan.key, n),
                frame_uid=uids("frame", plan.key, n),
                event_uid=uids("event", plan.key, n) if plan.modality == "CT" else None,
                description=(
                    f"{spec.series_descriptions[n - 1]} {plan.patient.surname}"
                ),
                time=gen.time(),
                transfer_syntax=(
                    ImplicitVRLittleEndian
                    if special and n == 2
                    else ExplicitVRLittleEndian
                ),
                sop_uids=sop_uids[n - 1],
                study_sop_uids=study_sops,
                study_offset=(n - 1) * instances,
                directory=plan.directory / f"S{n:02d}_{plan.modality}",
                source_uids=sop_uids[0] if n > 1 else (),
                overlay=special and n == 1,
                curve_instance=0 if special and n == 1 else None,
                raw_instance=instances - 1 if special and n == 1 else None,
            )
        )

    paths: list[Path] = []
    for series in series_plans:
        frames = _Frames(np_rng, shape, plan.modality)
        paths.extend(_write_series(plan, series, frames))
    return _planted_study(plan, series_plans, paths, burned_in=False)


def _write_burned_in(
    gen: _Generator,
    np_rng: np.random.Generator,
    prior: _StudyPlan,
    root: Path,
    shape: tuple[int, int],
) -> list[PlantedStudy]:
    """Write an ultrasound and a secondary capture study after `prior`."""
    written = []
    patient, day = prior.patient, prior.date
    # Burned-in text must be legible to be found: captures are never tiny.
    shape = (max(shape[0], 256), max(shape[1], 256))
    for modality, annotation in (("US", None), ("OT", "YES")):
        day += dt.timedelta(days=gen.rng.randrange(7, 60))
        plan = gen.study(patient, f"burned/{modality}", day, modality, root)
        plan = dataclasses.replace(plan, referenced_study_uid=prior.uid)
        sop_uid = gen.uids("sop", plan.key, 1, 0)
        series = _SeriesPlan(
            number=1,
            uid=gen.uids("series", plan.key, 1),
            frame_uid=None,
            event_uid=None,
            description=f"{_MODALITIES[modality].series_descriptions[0]} "
            f"{patient.surname}",
            time=gen.time(),
            transfer_syntax=ExplicitVRLittleEndian,
            sop_uids=(sop_uid,),
            study_sop_uids=(sop_uid,),
            study_offset=0,
            directory=plan.directory / f"S01_{modality}",
            burned_in_annotation=annotation,
        )
        banner = f"{patient.given} {patient.surname}\nMRN {patient.planted.patient_id}"
        frames = _Frames(np_rng, shape, modality, banner)
        paths = _write_series(plan, series, frames)
        written.append(_planted_study(plan, [series], paths, burned_in=True))
    return written


def _planted_study(
    plan: _StudyPlan,
    series: Sequence[_SeriesPlan],
    paths: Sequence[Path],
    *,
    burned_in: bool,
) -> PlantedStudy:
    """Describe a written study, with every identifying string it carries."""
    return PlantedStudy(
        patient=plan.patient.planted,
        study_uid=plan.uid,
        accession=plan.accession,
        study_date=plan.date.strftime("%Y%m%d"),
        modality=plan.modality,
        series_uids=tuple(s.uid for s in series),
        sop_uids=tuple(uid for s in series for uid in s.sop_uids),
        paths=tuple(paths),
        burned_in=burned_in,
        planted_text=frozenset(_study_text(plan, series)),
    )


def _study_text(plan: _StudyPlan, series: Iterable[_SeriesPlan]) -> set[str]:
    """Return the identifying strings of `plan` beyond the PlantedStudy fields."""
    patient, site = plan.patient, plan.site
    text = {
        patient.address,
        patient.phone,
        patient.folder,
        _acme_text(plan),
        site.institution,
        site.address,
        site.phone,
        site.issuer,
        plan.study_id,
        plan.procedure_id,
        plan.step_id,
        plan.operator_code,
        plan.station,
        plan.serial,
        plan.ae_title,
    }
    if plan.referenced_study_uid:
        text.add(plan.referenced_study_uid)
    for person in (
        patient.alias_name,
        patient.mother_name,
        plan.referring,
        plan.performing,
        plan.operator,
    ):
        text |= _person_strings(person)
    for other_id, issuer in patient.other_ids:
        text.add(other_id)
        if issuer != _NATIONAL_ISSUER:
            text.add(issuer)
    for s in series:
        text |= {uid for uid in (s.frame_uid, s.event_uid) if uid}
    return text


def _acme_text(plan: _StudyPlan) -> str:
    """Return the free text of the ACME private block."""
    return f"{plan.patient.planted.name} MRN {plan.patient.planted.patient_id}"


def _write_series(plan: _StudyPlan, series: _SeriesPlan, frames: _Frames) -> list[Path]:
    """Write every instance of `series` from one template dataset."""
    series.directory.mkdir(parents=True, exist_ok=True)
    ds = _series_template(plan, series, frames.shape)
    encoder = _SeriesEncoder(series.transfer_syntax)
    paths = []
    for index in range(len(series.sop_uids)):
        _set_instance(ds, plan, series, index, frames)
        path = (
            series.directory
            / f"{plan.accession}_S{series.number:02d}_{index + 1:04d}.dcm"
        )
        if index == series.curve_instance:
            _add_curve(ds, plan)
        if index == series.raw_instance:
            # A bare dataset, as old archives hold: no preamble, no meta.
            pydicom.dcmwrite(path, Dataset(ds), implicit_vr=True, little_endian=True)
        else:
            path.write_bytes(encoder.encode(ds))
        if index == series.curve_instance:
            del ds[0x5000_0000:0x5001_0000]
        paths.append(path)
    return paths


class _SeriesEncoder:
    """Encode the instances of one series as pydicom's ``dcmwrite`` would.

    Only the elements that :func:`_set_instance` changes are encoded for every
    instance; the others are encoded once and their bytes reused, which makes
    large corpora several times faster to write.
    """

    def __init__(self, transfer_syntax: UID) -> None:
        self._implicit_vr = transfer_syntax.is_implicit_VR
        self._cache: dict[BaseTag, bytes] = {}

    def encode(self, ds: Dataset) -> bytes:
        """Return `ds` as a DICOM file: preamble, File Meta, dataset (PS3.10 7.1)."""
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
        charset = ds.get("SpecificCharacterSet", default_encoding)
        for tag in sorted(ds.keys()):
            chunk = self._cache.get(tag)
            if chunk is None:
                chunk = self._element(ds[tag], charset)
                if tag not in _INSTANCE_TAGS:
                    self._cache[tag] = chunk
            fp.write(chunk)
        return fp.getvalue()

    def _element(self, elem: DataElement, charset: str | list[str]) -> bytes:
        """Return one encoded data element."""
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, self._implicit_vr
        write_data_element(fp, elem, charset)
        return fp.getvalue()


def _series_template(
    plan: _StudyPlan, series: _SeriesPlan, shape: tuple[int, int]
) -> Dataset:
    """Return the dataset shared by every instance of `series`."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    _add_technical(ds, plan.modality, shape)
    _add_patient(ds, plan)
    _add_study(ds, plan)
    _add_series(ds, plan, series)
    _add_equipment(ds, plan)
    _add_image(ds, plan, series, shape)
    _add_private(ds, plan)
    if series.overlay:
        _add_overlay(ds, plan, shape)

    ds.file_meta = _file_meta(ds.SOPClassUID, series.sop_uids[0], plan.ae_title)
    ds.file_meta.TransferSyntaxUID = series.transfer_syntax
    return ds


def _file_meta(sop_class: str, sop_uid: str, ae_title: str) -> FileMetaDataset:
    """Return File Meta Information for Explicit VR Little Endian (PS3.10 7.1)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
    if ae_title:
        meta.SourceApplicationEntityTitle = ae_title
    return meta


@functools.cache
def _ct_template() -> Dataset:
    """Return pydicom's CT_small.dcm, read once; callers must not change it."""
    path = get_testdata_file("CT_small.dcm")
    if not isinstance(path, str):
        raise FileNotFoundError(
            "pydicom's bundled test file CT_small.dcm is missing; reinstall pydicom"
        )
    return pydicom.dcmread(path, stop_before_pixels=True)


def _add_technical(ds: Dataset, modality: str, shape: tuple[int, int]) -> None:
    """Add the modality's acquisition attributes; none of them identify anyone."""
    spec = _MODALITIES[modality]
    if modality == "CT":
        template = _ct_template()
        for keyword in _CT_TEMPLATE_KEYWORDS:
            ds[keyword] = copy.deepcopy(template[keyword])
    for keyword, value in spec.technical.items():
        setattr(ds, keyword, copy.copy(value))
    if spec.field_of_view is not None:
        rows, columns = shape
        ds.PixelSpacing = [
            f"{spec.field_of_view / rows:.6f}",
            f"{spec.field_of_view / columns:.6f}",
        ]


def _add_patient(ds: Dataset, plan: _StudyPlan) -> None:
    """Add the Patient module and the other demographics (PS3.3 C.7.1)."""
    patient = plan.patient
    planted = patient.planted
    ds.PatientName = planted.name
    ds.PatientID = planted.patient_id
    ds.IssuerOfPatientID = plan.site.issuer
    ds.PatientBirthDate = planted.birth_date
    ds.PatientSex = planted.sex
    ds.PatientAge = f"{_age_years(patient.birth, plan.date):03d}Y"
    ds.PatientWeight = f"{patient.weight_kg:.1f}"
    ds.PatientSize = f"{patient.height_m:.2f}"
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.OtherPatientIDs = patient.other_ids[0][0]
    ds.OtherPatientIDsSequence = [
        _dataset(PatientID=pid, IssuerOfPatientID=issuer, TypeOfPatientID="TEXT")
        for pid, issuer in patient.other_ids
    ]
    ds.OtherPatientNames = patient.alias_name
    ds.PatientMotherBirthName = patient.mother_name
    ds.AdditionalPatientHistory = (
        f"Seen by {_spoken(plan.referring)}; call {patient.phone} with results."
    )
    ds.PatientIdentityRemoved = "NO"


def _add_study(ds: Dataset, plan: _StudyPlan) -> None:
    """Add the General Study module (PS3.3 C.7.2.1)."""
    date = plan.date.strftime("%Y%m%d")
    ds.StudyInstanceUID = plan.uid
    ds.StudyDate = date
    ds.StudyTime = plan.time
    ds.AccessionNumber = plan.accession
    ds.StudyID = plan.study_id
    ds.StudyDescription = (
        f"{_MODALITIES[plan.modality].protocol} FOR DR {_family(plan.referring)}"
    )
    ds.ReferringPhysicianName = plan.referring
    if plan.referenced_study_uid:
        ds.ReferencedStudySequence = [
            _reference(_DETACHED_STUDY_CLASS, plan.referenced_study_uid)
        ]
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = plan.time


def _add_series(ds: Dataset, plan: _StudyPlan, series: _SeriesPlan) -> None:
    """Add the General Series module and the request it answers (PS3.3 C.7.3.1)."""
    date = plan.date.strftime("%Y%m%d")
    ds.Modality = plan.modality
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = str(series.number)
    ds.SeriesDate = date
    ds.SeriesTime = series.time
    ds.SeriesDescription = series.description
    ds.PerformingPhysicianName = plan.performing
    ds.OperatorsName = plan.operator
    ds.PerformedProcedureStepID = plan.step_id
    ds.PerformedProcedureStepStartDate = date
    ds.PerformedProcedureStepStartTime = series.time
    if series.frame_uid is not None:
        ds.FrameOfReferenceUID = series.frame_uid
    if series.event_uid is not None:
        ds.IrradiationEventUID = series.event_uid

    # Three levels deep: request > protocol code > context item with a name.
    observer = _dataset(
        ValueType="PNAME",
        ConceptNameCodeSequence=[
            _code("121008", "DCM", "Person Observer Name"),
        ],
        PersonName=plan.performing,
    )
    protocol = _code("P-" + plan.modality, "99ACME", f"{plan.modality} ROUTINE")
    protocol.ProtocolContextSequence = [observer]
    ds.RequestAttributesSequence = [
        _dataset(
            AccessionNumber=plan.accession,
            RequestedProcedureID=plan.procedure_id,
            RequestedProcedureDescription=_MODALITIES[plan.modality].protocol,
            ScheduledProcedureStepID=plan.step_id,
            ScheduledProtocolCodeSequence=[protocol],
        )
    ]


def _add_equipment(ds: Dataset, plan: _StudyPlan) -> None:
    """Add the General Equipment module and a contributing device (PS3.3 C.7.5)."""
    site = plan.site
    ds.InstitutionName = site.institution
    ds.InstitutionAddress = site.address
    ds.InstitutionalDepartmentName = site.department
    ds.StationName = plan.station
    ds.DeviceSerialNumber = plan.serial

    # The operator's identification sits two sequences below the top level.
    person = _code(plan.operator_code, "L", _spoken(plan.operator))
    operator = _dataset(
        InstitutionName=site.institution,
        PersonAddress=site.address,
        PersonTelephoneNumbers=site.phone,
        PersonIdentificationCodeSequence=[person],
    )
    ds.ContributingEquipmentSequence = [
        _dataset(
            Manufacturer="ACME RIS BRIDGE",
            InstitutionName=site.institution,
            InstitutionAddress=site.address,
            StationName=plan.station,
            OperatorsName=plan.operator,
            ContributionDateTime=plan.date.strftime("%Y%m%d") + plan.time,
            ContributionDescription=(
                f"Demographics corrected by {_spoken(plan.operator)}"
            ),
            PurposeOfReferenceCodeSequence=[
                _code("109103", "DCM", "Modifying Equipment"),
            ],
            OperatorIdentificationSequence=[operator],
        )
    ]


def _add_image(
    ds: Dataset, plan: _StudyPlan, series: _SeriesPlan, shape: tuple[int, int]
) -> None:
    """Add the image modules: SOP common, dates, comments and pixel layout."""
    spec = _MODALITIES[plan.modality]
    date = plan.date.strftime("%Y%m%d")
    patient = plan.patient.planted
    ds.SOPClassUID = spec.sop_class
    ds.AcquisitionDate = date
    ds.ContentDate = date
    ds.AcquisitionTime = series.time
    ds.ContentTime = series.time
    ds.AcquisitionDateTime = date + series.time
    ds.ImageComments = (
        f"Called back {plan.patient.given} {plan.patient.surname} "
        f"(MRN {patient.patient_id}): motion on first run, repeated."
    )
    if series.burned_in_annotation is not None:
        ds.BurnedInAnnotation = series.burned_in_annotation
    if plan.modality == "PT":
        ds.RadiopharmaceuticalInformationSequence = [
            _dataset(
                Radiopharmaceutical="Fluorodeoxyglucose",
                RadiopharmaceuticalStartTime=plan.time,
                RadiopharmaceuticalStartDateTime=date + plan.time,
                RadionuclideTotalDose="370000000",
                RadionuclideHalfLife="6586.2",
            )
        ]

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = spec.bits
    ds.BitsStored = 12 if spec.bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0


def _add_private(ds: Dataset, plan: _StudyPlan) -> None:
    """Add an identifying private block, a private sequence and a Siemens block."""
    acme = ds.private_block(0x0009, _ACME_CREATOR, create=True)
    acme.add_new(0x01, "LO", _acme_text(plan))
    item = Dataset()
    item.private_block(0x0009, _ACME_CREATOR, create=True).add_new(
        0x01, "LO", plan.accession
    )
    acme.add_new(0x02, "SQ", [item])
    acme.add_new(0x03, "UI", plan.uid)

    siemens = ds.private_block(0x0019, _SIEMENS_CREATOR, create=True)
    siemens.add_new(0x10, "IS", "1040")
    siemens.add_new(0xB0, "DS", "38.4")


def _add_overlay(ds: Dataset, plan: _StudyPlan, shape: tuple[int, int]) -> None:
    """Add overlay plane 6000 with a few set bits and named labels (PS3.3 C.9.2)."""
    rows, columns = shape
    mask = np.zeros(shape, dtype=bool)
    mask[rows // 4, columns // 4 : columns // 4 + 6] = True
    mask[rows // 4 : rows // 4 + 6, columns // 4] = True
    packed = np.packbits(mask.ravel(), bitorder="little").tobytes()
    if len(packed) % 2:
        packed += b"\x00"
    name = plan.patient.planted.name
    ds.add_new(0x6000_0010, "US", rows)
    ds.add_new(0x6000_0011, "US", columns)
    ds.add_new(0x6000_0022, "LO", f"Marker for {name}")
    ds.add_new(0x6000_0040, "CS", "G")
    ds.add_new(0x6000_0050, "SS", [1, 1])
    ds.add_new(0x6000_0100, "US", 1)
    ds.add_new(0x6000_0102, "US", 0)
    ds.add_new(0x6000_1500, "LO", name)
    ds.add_new(0x6000_3000, "OW", packed)
    ds.add_new(0x6000_4000, "LT", f"Lesion marked by {_spoken(plan.performing)}")


def _add_curve(ds: Dataset, plan: _StudyPlan) -> None:
    """Add retired curve group 5000 with identifying text (PS3.3 2004, C.10.2)."""
    points = np.array([0, 12, 40, 18, 3, 0], dtype="<u2")
    ds.add_new(0x5000_0005, "US", 1)
    ds.add_new(0x5000_0010, "US", len(points))
    ds.add_new(0x5000_0020, "CS", "ECG")
    ds.add_new(0x5000_0022, "LO", f"ECG gating trace, {plan.patient.planted.name}")
    ds.add_new(0x5000_0103, "US", 0)
    ds.add_new(0x5000_2500, "LO", f"MRN {plan.patient.planted.patient_id}")
    ds.add_new(0x5000_3000, "OW", points.tobytes())


# The elements _set_instance changes; _SeriesEncoder encodes them every time.
_INSTANCE_TAGS = frozenset(
    BaseTag(tag_for_keyword(keyword) or 0)
    for keyword in (
        "SOPInstanceUID",
        "ReferencedImageSequence",
        "SourceImageSequence",
        "InstanceNumber",
        "ImagePositionPatient",
        "SliceLocation",
        "PixelData",
    )
)


def _set_instance(
    ds: Dataset, plan: _StudyPlan, series: _SeriesPlan, index: int, frames: _Frames
) -> None:
    """Set the attributes that differ between instances of a series."""
    sop_uid = series.sop_uids[index]
    spec = _MODALITIES[plan.modality]
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.InstanceNumber = str(index + 1)
    ds.AcquisitionNumber = "1"
    if spec.field_of_view is not None:
        half = spec.field_of_view / 2
        z = -75.7 - index * spec.slice_step
        ds.ImagePositionPatient = [f"{-half:.4f}", f"{-half:.4f}", f"{z:.4f}"]
        ds.SliceLocation = f"{z:.4f}"

    # References to other instances of the same study, for UID consistency.
    others = series.study_sop_uids
    if len(others) > 1:
        ref = others[(series.study_offset + index + 1) % len(others)]
        ds.ReferencedImageSequence = [_reference(spec.sop_class, ref)]
    if series.source_uids:
        source = series.source_uids[index % len(series.source_uids)]
        ds.SourceImageSequence = [_reference(spec.sop_class, source)]
    ds.add_new(0x7FE0_0010, "OW" if spec.bits == 16 else "OB", frames.frame(index))


def _reference(sop_class: str, sop_uid: str) -> Dataset:
    """Return a reference item (PS3.3 Table 10-11)."""
    return _dataset(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_uid)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    """Return a code sequence item (PS3.3 Table 8.8-1)."""
    return _dataset(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _dataset(**elements: object) -> Dataset:
    """Return a dataset holding `elements`, given by keyword."""
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _family(name: str) -> str:
    """Return the family name component of a person name."""
    return name.split("^")[0]


def _spoken(name: str) -> str:
    """Return a person name as free text would spell it: ``Given Family``."""
    parts = name.split("^")
    return " ".join(part.title() for part in (*parts[1:2], parts[0]) if part)


class _Frames:
    """Pixel frames of one series: a phantom plus noise that shifts per frame."""

    def __init__(
        self,
        rng: np.random.Generator,
        shape: tuple[int, int],
        modality: str,
        banner: str | None = None,
    ) -> None:
        spec = _MODALITIES[modality]
        rows, columns = shape
        self.shape = shape
        self._dtype = np.dtype("<u2") if spec.bits == 16 else np.dtype("u1")
        base = _phantom(shape, spec.levels)
        if spec.bits == 8:
            _burn_banner(base, banner)
        self._base = base.astype(self._dtype)
        noise_shape = (rows + _NOISE_SHIFT, columns)
        self._noise = rng.integers(0, spec.noise, size=noise_shape, dtype=self._dtype)

    def frame(self, index: int) -> bytes:
        """Return the little-endian pixel bytes of frame `index`."""
        shift = (index * 5) % _NOISE_SHIFT
        noise = self._noise[shift : shift + self.shape[0]]
        return np.add(self._base, noise, dtype=self._dtype).tobytes()


def _phantom(
    shape: tuple[int, int], levels: tuple[int, int, int, int]
) -> npt.NDArray[np.int32]:
    """Return a crude axial body phantom: torso, two lungs and a spine."""
    rows, columns = shape
    air, tissue, lung, bone = levels
    y, x = np.ogrid[-1.0 : 1.0 : rows * 1j, -1.0 : 1.0 : columns * 1j]
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1.0
    lungs = ((np.abs(x) - 0.38) / 0.26) ** 2 + (y / 0.4) ** 2 <= 1.0
    spine = x**2 + (y - 0.45) ** 2 <= 0.012
    image = np.full(shape, air, dtype=np.int32)
    image[body] = tissue
    image[body & lungs] = lung
    image[spine] = bone
    return image


def _burn_banner(image: npt.NDArray[np.int32], text: str | None = None) -> None:
    """Burn ``text`` along the top, as scanners do; glyph-like blocks without it.

    Real letters need Pillow (the ``pixels`` extra); without it, blocks stand in.
    """
    rows, columns = image.shape
    if text:
        try:
            from PIL import Image, ImageDraw, ImageFont
        except ImportError:
            pass
        else:
            canvas = Image.new("L", (columns, rows), 0)
            draw = ImageDraw.Draw(canvas)
            size = max(10, rows // 20)
            font = ImageFont.load_default(size=size)
            for line, words in enumerate(text.split("\n")):
                draw.text((6, 4 + line * (size + 6)), words, fill=255, font=font)
            image[np.asarray(canvas) > 96] = _BANNER
            return
    top = max(1, rows // 32)
    height = max(2, rows // 16)
    for left in range(2, columns // 2, 6):
        image[top : top + height, left : left + 4] = _BANNER


def _write_bad_files(
    gen: _Generator,
    np_rng: np.random.Generator,
    root: Path,
    first: PlantedStudy,
) -> tuple[dict[str, Path], frozenset[str]]:
    """Write files readers must reject; return them and the PHI they carry."""
    root.mkdir(parents=True, exist_ok=True)
    bad: dict[str, Path] = {}

    # Text with a DICOM suffix, quoting a real patient's MRN.
    bad["not-dicom"] = root / "scanned_requisition.dcm"
    bad["not-dicom"].write_text(
        f"Requisition for MRN {first.patient.patient_id}, "
        f"accession {first.accession}.\n",
        encoding="utf-8",
    )
    bad["empty"] = root / "empty.dcm"
    bad["empty"].write_bytes(b"")

    # Two instances of a stray patient, cut in the pixels and in the header.
    first_study = dt.date(2015, 6, 1) + dt.timedelta(days=gen.rng.randrange(2000))
    stray = gen.patient(gen.rng.randrange(21, 86), first_study)
    plan = gen.study(stray, "stray", first_study, "CT", root)
    sops = (gen.uids("sop", "stray", 1, 0), gen.uids("sop", "stray", 1, 1))
    series = _SeriesPlan(
        number=1,
        uid=gen.uids("series", "stray", 1),
        frame_uid=gen.uids("frame", "stray", 1),
        event_uid=gen.uids("event", "stray", 1),
        description=f"AXIAL 5MM {stray.surname}",
        time=gen.time(),
        transfer_syntax=ExplicitVRLittleEndian,
        sop_uids=sops,
        study_sop_uids=sops,
        study_offset=0,
        directory=root,
    )
    frames = _Frames(np_rng, (32, 32), "CT")
    ds = _series_template(plan, series, frames.shape)
    encoded = []
    for index in range(2):
        _set_instance(ds, plan, series, index, frames)
        encoded.append(_encode(ds))

    # Cut 256 bytes into the pixel values, past the 12-byte header of the OW
    # element (PS3.5 7.1.2), and 20 characters into the ImageComments text.
    pixels_at = encoded[0].rfind(b"\xe0\x7f\x10\x00")
    bad["truncated-pixels"] = root / f"{plan.accession}_truncated_pixels.dcm"
    bad["truncated-pixels"].write_bytes(encoded[0][: pixels_at + 12 + 256])
    comments_at = encoded[1].find(str(ds.ImageComments).encode("ascii"))
    bad["truncated-header"] = root / f"{plan.accession}_truncated_header.dcm"
    bad["truncated-header"].write_bytes(encoded[1][: comments_at + 20])

    # A DICOMDIR indexing the stray instance: PHI in its directory records.
    bad["dicomdir"] = root / "DICOMDIR"
    bad["dicomdir"].write_bytes(
        _dicomdir_bytes(pydicom.dcmread(io.BytesIO(encoded[0])), gen.uids("dicomdir"))
    )

    phi = _study_text(plan, [series]) | _person_strings(stray.planted.name)
    phi |= _date_strings(stray.planted.birth_date)
    phi |= _date_strings(plan.date.strftime("%Y%m%d"))
    phi |= {stray.planted.patient_id, plan.accession, plan.uid, series.uid, *sops}
    return bad, frozenset(phi)


def _dicomdir_bytes(instance: Dataset, uid: str) -> bytes:
    """Return a DICOMDIR (PS3.10 7.2) indexing `instance`, whose file is absent."""
    records = [
        _directory_record("PATIENT", instance, _PATIENT_KEYS),
        _directory_record("STUDY", instance, _STUDY_KEYS),
        _directory_record("SERIES", instance, _SERIES_KEYS),
        _directory_record("IMAGE", instance, ("InstanceNumber",)),
    ]
    records[-1].ReferencedFileID = ["STRAY", "IM000001"]
    records[-1].ReferencedSOPClassUIDInFile = instance.SOPClassUID
    records[-1].ReferencedSOPInstanceUIDInFile = instance.SOPInstanceUID
    records[-1].ReferencedTransferSyntaxUIDInFile = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = _file_meta(MediaStorageDirectoryStorage, uid, "")
    ds.FileSetID = "RESEARCH"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = records

    # Offsets are byte positions in the file (PS3.3 F.3.2.1). They are fixed
    # size, so a first encoding tells where each record starts.
    first = pydicom.dcmread(io.BytesIO(_encode(ds)))
    starts = [item.seq_item_tell for item in first.DirectoryRecordSequence]
    for record, child in zip(records, [*starts[1:], 0], strict=True):
        record.OffsetOfReferencedLowerLevelDirectoryEntity = child
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = starts[0]
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = starts[0]
    return _encode(ds)


def _directory_record(kind: str, instance: Dataset, keys: Iterable[str]) -> Dataset:
    """Return a directory record of type `kind` with `keys` copied from `instance`."""
    record = _dataset(
        OffsetOfTheNextDirectoryRecord=0,
        RecordInUseFlag=0xFFFF,
        OffsetOfReferencedLowerLevelDirectoryEntity=0,
        DirectoryRecordType=kind,
        SpecificCharacterSet=instance.SpecificCharacterSet,
    )
    for keyword in keys:
        setattr(record, keyword, instance[keyword].value)
    return record


def _encode(ds: Dataset) -> bytes:
    """Return `ds` encoded as a DICOM file."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
