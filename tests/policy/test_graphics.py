"""Clean Graphics: annotations keep their shapes; overlay text is cleaned."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from exporter.policy.apply import apply_recipe
from exporter.policy.functions import InstanceContext
from exporter.policy.profile import build_recipe
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import compile_recipe
from exporter.policy.text import identifying_tokens


def _presentation_state() -> Dataset:
    ds = Dataset()
    ds.PatientName = "QUIMBYWELL^ADALINE"
    ds.PatientID = "0012345"
    text = Dataset()
    text.UnformattedTextValue = "Quimbywell 0012345"
    text.AnchorPoint = [10.0, 10.0]
    shape = Dataset()
    shape.GraphicType = "POLYLINE"
    shape.GraphicData = [1.0, 1.0, 5.0, 5.0]
    layer = Dataset()
    layer.GraphicLayer = "LAYER1"
    layer.TextObjectSequence = Sequence([text])
    layer.GraphicObjectSequence = Sequence([shape])
    ds.GraphicAnnotationSequence = Sequence([layer])
    ds.add_new(0x60000022, "LO", "Overlay for Adaline Quimbywell, arrow at lesion")
    ds.add_new(0x60024000, "LT", "Marked by QUIMBYWELL; lesion 12 mm")
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)
    return ds


def _clean(options: frozenset[str]) -> Dataset:
    ds = _presentation_state()
    ctx = InstanceContext(Pseudonymizer(b"graphics-test-secret-of-32-bytes"), "P1", -3)
    ctx.tokens = identifying_tokens(ds)
    apply_recipe(ds, compile_recipe(build_recipe(options), "profile"), ctx)
    return ds


def test_clean_graphics_keeps_shapes_and_cleans_text() -> None:
    """Graphic objects stay, annotation text is a dummy, overlay text is cleaned."""
    ds = _clean(frozenset({"clean_graphics"}))
    layer = ds.GraphicAnnotationSequence[0]
    assert layer.GraphicObjectSequence[0].GraphicData == [1.0, 1.0, 5.0, 5.0]
    assert layer.TextObjectSequence[0].UnformattedTextValue == "ANONYMIZED"
    assert ds[0x60000022].value == "Overlay for, arrow at lesion"
    assert ds[0x60024000].value == "Marked by; lesion 12 mm"
    assert 0x60003000 not in ds  # bitmaps cannot be cleaned yet: removed


def test_without_the_option_graphics_go() -> None:
    """The default profile empties annotations and removes overlay text."""
    ds = _clean(frozenset())
    assert len(ds.GraphicAnnotationSequence) == 0
    assert 0x60000022 not in ds and 0x60024000 not in ds and 0x60003000 not in ds
