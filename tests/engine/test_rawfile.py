"""Reading with the pixel data kept apart, and writing by splicing raw bytes."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from exporter.engine.rawfile import DamagedFile, _pydicom_body, encode_body, read_source
from exporter.engine.worker import _encode, _stamp
from exporter.policy.apply import apply_recipe
from exporter.policy.functions import InstanceContext
from exporter.policy.profile import DEFAULT_OPTIONS, build_recipe
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import compile_recipe
from exporter.synthetic import make_source

TEST_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "JPEG2000.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "examples_overlay.dcm",
    "priv_SQ.dcm",
    "reportsi.dcm",
    "no_meta.dcm",
    "MR_small_bigendian.dcm",
]
RECIPE = compile_recipe(build_recipe(), "default")


def _corpus(root: Path) -> list[Path]:
    source = make_source(root, seed=11, patients=2, with_bad_files=False)
    files = [p for study in source.studies for p in study.paths]
    return files + [Path(str(get_testdata_file(name))) for name in TEST_FILES]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _corpus(tmp_path_factory.mktemp("rawfile"))


def _clean(ds: pydicom.Dataset) -> None:
    pseudonyms = Pseudonymizer(b"rawfile-test-secret-of-32-bytes!")
    ctx = InstanceContext(pseudonyms, "P1", -100)
    apply_recipe(ds, RECIPE, ctx)
    _stamp(ds, RECIPE, tuple(sorted(DEFAULT_OPTIONS)))


def test_spliced_body_equals_pydicom(corpus: list[Path]) -> None:
    """Copying untouched raw elements gives exactly the bytes pydicom writes."""
    for path in corpus:
        source = read_source(str(path))
        _clean(source.dataset)
        assert encode_body(source.dataset, source.data) == _pydicom_body(
            source.dataset
        ), path.name


def test_split_file_equals_a_full_pydicom_write(corpus: list[Path]) -> None:
    """Header plus raw pixel bytes equal pydicom writing the whole cleaned file."""
    for path in corpus:
        source = read_source(str(path))
        if "SOPClassUID" not in source.dataset:
            continue  # not exportable: the worker fails it
        _clean(source.dataset)
        fast = b"".join(_encode(source.dataset, source))

        full = pydicom.dcmread(path, force=True)
        _clean(full)
        full.file_meta = source.dataset.file_meta
        full.preamble = b"\x00" * 128
        buffer = io.BytesIO()
        full.save_as(buffer, enforce_file_format=True)
        assert fast == buffer.getvalue(), path.name


def test_pixel_data_is_kept_apart_for_little_endian_files(corpus: list[Path]) -> None:
    """Native and encapsulated little-endian pixel data are split off as bytes."""
    paths = [corpus[0]] + [
        Path(str(get_testdata_file(n)))
        for n in ("JPEG2000.dcm", "MR_small_implicit.dcm")
    ]
    for path in paths:
        source = read_source(str(path))
        assert source.pixel_element is not None, path.name
        assert "PixelData" not in source.dataset


def test_big_endian_is_read_in_full() -> None:
    """Big-endian files keep their pixel data in the dataset."""
    source = read_source(str(get_testdata_file("MR_small_bigendian.dcm")))
    assert source.pixel_element is None
    assert "PixelData" in source.dataset


def test_trailing_elements_are_read_in_full(tmp_path: Path) -> None:
    """An element after the pixel data makes the whole file go through the recipe."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.DataSetTrailingPadding = b"\x00" * 4
    path = tmp_path / "padded.dcm"
    ds.save_as(path)
    source = read_source(str(path))
    assert source.pixel_element is None
    assert "DataSetTrailingPadding" in source.dataset


@pytest.mark.parametrize("cut", [200, 1000])
def test_truncated_pixel_data_is_damage(tmp_path: Path, cut: int) -> None:
    """A file cut inside its pixel data raises DamagedFile."""
    data = Path(str(get_testdata_file("CT_small.dcm"))).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:-cut])
    with pytest.raises(DamagedFile, match="pixel data truncated"):
        read_source(str(path))


def test_truncated_encapsulated_pixel_data_is_damage(tmp_path: Path) -> None:
    """Encapsulated pixel data without its delimiter raises DamagedFile."""
    data = Path(str(get_testdata_file("JPEG2000.dcm"))).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:-20])
    with pytest.raises(DamagedFile, match="encapsulated pixel data"):
        read_source(str(path))


def test_the_series_memo_changes_no_byte(corpus: list[Path]) -> None:
    """A memo shared across files gives the bytes of cleaning each file alone."""
    shared = InstanceContext(
        Pseudonymizer(b"rawfile-test-secret-of-32-bytes!"), "P1", -100, memo={}
    )
    options = tuple(sorted(DEFAULT_OPTIONS))
    for path in corpus * 2:  # the second pass is all memo hits
        if "SOPClassUID" not in pydicom.dcmread(
            path, stop_before_pixels=True, force=True
        ):
            continue
        alone, reused = read_source(str(path)), read_source(str(path))
        _clean(alone.dataset)
        apply_recipe(reused.dataset, RECIPE, shared)
        _stamp(reused.dataset, RECIPE, options)
        assert b"".join(_encode(reused.dataset, reused)) == b"".join(
            _encode(alone.dataset, alone)
        ), path.name
    assert len(shared.memo or {}) > 0
