"""model_card.json is a versioned artifact like the three manifests, each under its own name."""

import json

import pytest

from tfmetric.data.manifest import DATASET_MANIFEST
from tfmetric.export import model_card
from tfmetric.json_file import ArtifactError
from tfmetric.search.catalog import CATALOG_MANIFEST
from tfmetric.search.index import INDEX_MANIFEST


def test_card_round_trip_and_version_check(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved_model.pb there"):
        model_card.read_model_card(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"")  # a SavedModel that tfmetric.export did not write
    with pytest.raises(FileNotFoundError, match="not exported by tfmetric.export"):
        model_card.read_model_card(str(tmp_path))
    model_card.write_model_card(str(tmp_path), {"name": "tiny", "embedding_dim": 8})
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card == {"card_version": model_card.CARD_VERSION, "name": "tiny", "embedding_dim": 8}
    assert model_card.read_model_card(str(tmp_path)) == card
    (tmp_path / "model_card.json").write_text(json.dumps(dict(card, card_version=2)))
    with pytest.raises(
        ArtifactError,
        match=f"{tmp_path / 'model_card.json'}: model card of card_version 2; "
        "this tfmetric reads 1. Export the model again",
    ):
        model_card.read_model_card(str(tmp_path))


def test_the_four_artifacts_have_their_own_names():
    artifacts = (DATASET_MANIFEST, CATALOG_MANIFEST, INDEX_MANIFEST, model_card.MODEL_CARD_FILE)
    assert [a.file_name for a in artifacts] == ["manifest.json", "catalog.json", "index.json", "model_card.json"]
    assert len({a.kind for a in artifacts}) == 4
    assert CATALOG_MANIFEST.old_names == INDEX_MANIFEST.old_names == ("manifest.json",)  # still read
