"""Clean Structured Content: SR content trees cleaned at every depth."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from exporter.policy.apply import apply_recipe
from exporter.policy.functions import InstanceContext
from exporter.policy.profile import build_recipe
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import compile_recipe
from exporter.policy.text import identifying_tokens

OBSERVED = "1.2.826.0.1.3680043.8.498.5550001"


def _item(value_type: str, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = value_type
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "121071", "DCM"
    code.CodeMeaning = "Finding"
    item.ConceptNameCodeSequence = Sequence([code])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _report() -> Dataset:
    ds = Dataset()
    ds.PatientName = "QUIMBYWELL^ADALINE"
    ds.PatientID = "0012345"
    ds.Modality = "SR"
    deep = _item("TEXT", TextValue="Adaline Quimbywell: lesion stable, 12 mm")
    inner = _item("CONTAINER", ContinuityOfContent="SEPARATE")
    inner.ContentSequence = Sequence([deep, _item("UIDREF", UID=OBSERVED)])
    ds.ContentSequence = Sequence(
        [
            _item("PNAME", PersonName="BRACKENWELL^PERPETUA"),
            _item("DATE", Date="20190304"),
            _item("DATETIME", DateTime="20190304101500"),
            _item("TEXT", TextValue="Seen by Dr Brackenwell, MRN 0012345"),
            inner,
        ]
    )
    ds.ReferringPhysicianName = "BRACKENWELL^PERPETUA"
    return ds


def test_sr_content_tree_is_cleaned_at_depth() -> None:
    """TEXT cleaned, PNAME replaced, dates shifted, UIDs mapped; the tree stays."""
    ds = _report()
    pseudonyms = Pseudonymizer(b"structured-content-test-secret!!")
    ctx = InstanceContext(pseudonyms, "P1", -10)
    ctx.tokens = identifying_tokens(ds)
    options = frozenset({"clean_structured_content", "retain_long_modified_dates"})
    recipe = compile_recipe(build_recipe(options), "profile")

    apply_recipe(ds, recipe, ctx)

    items = ds.ContentSequence
    assert len(items) == 5
    assert "BRACKENWELL" not in str(items[0].PersonName)
    assert items[1].Date == "20190222"
    assert items[2].DateTime.startswith("20190222101500")
    assert items[3].TextValue == "Seen by Dr, MRN"
    deep, ref = items[4].ContentSequence
    assert deep.TextValue == "lesion stable, 12 mm"
    assert ref.UID == pseudonyms.uid(OBSERVED) != OBSERVED
    assert items[0].ConceptNameCodeSequence[0].CodeMeaning == "Finding"


def test_without_the_option_the_content_is_emptied() -> None:
    """The default profile empties the content tree (Basic Profile D on a sequence)."""
    ds = _report()
    ctx = InstanceContext(Pseudonymizer(b"structured-content-test-secret!!"), "P1", -10)
    apply_recipe(ds, compile_recipe(build_recipe(), "profile"), ctx)
    assert len(ds.ContentSequence) == 0
