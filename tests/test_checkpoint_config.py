"""config.json typed: CheckpointConfig is built and checked once from the JSON object, refuses a
wrong value with one line that names the field, and writes back exactly the JSON it was read from."""

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from idream.serving.checkpoint import CheckpointError, read_config
from idream.serving.checkpoint_config import CheckpointConfig

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "ml-100k" / "config.json"


@pytest.fixture
def shipped() -> dict:
    return json.loads(SHIPPED.read_text(encoding="utf-8"))


def test_the_shipped_config_round_trips(shipped):
    cfg = CheckpointConfig.from_dict(shipped)
    assert cfg.to_dict() == shipped
    # the same file, byte for byte: the keys keep their order
    assert json.dumps(cfg.to_dict(), indent=2) + "\n" == SHIPPED.read_text(encoding="utf-8")
    assert cfg.model.n_items == 1682 and cfg.diffusion.T == 1000 and cfg.transform == "whiten"
    assert cfg.text.descriptions == "template" and cfg.data.dataset == "ml-100k"
    assert cfg.guidance.rho == 0.4 and cfg.guidance.rho_max == 0.8 and cfg.new_items.c == 2.5


def test_what_a_config_lacks_stays_out_and_takes_the_default(shipped):
    """An older config (no slider top, no c, no description source, no new-item rule) is written
    back as it was: a default is not a choice."""
    old = copy.deepcopy(shipped)
    del old["guidance"]["rho_max"], old["text"]["descriptions"], old["new_items"]["c"]
    del old["new_items"]["c_chosen_on"], old["items_fingerprint"]
    cfg = CheckpointConfig.from_dict(old)
    assert cfg.to_dict() == old
    assert cfg.guidance.rho_max == 1.0 and cfg.text.descriptions == "template" and cfg.new_items.c == 0.0
    del old["new_items"], old["guidance"]
    cfg = CheckpointConfig.from_dict(old)
    assert cfg.new_items is None and cfg.guidance is None and cfg.to_dict() == old


def test_a_changed_part_is_written(shipped):
    cfg = CheckpointConfig.from_dict(shipped)
    cfg.guidance = replace(cfg.guidance, rho=0.3)
    cfg.cache_dir = "/tmp/cache"
    out = cfg.to_dict()
    assert out["guidance"]["rho"] == 0.3 and list(out["guidance"]) == list(shipped["guidance"])
    assert out["cache_dir"] == "/tmp/cache"


@pytest.mark.parametrize("section, key, value, field", [
    ("model", "width", "wide", "model.width"),
    ("model", "dropout", 1.5, "model.dropout"),
    ("model", "heads", 5, "model.heads"),
    ("diffusion", "T", 2.5, "diffusion.T"),
    ("diffusion", "schedule", 3, "diffusion.schedule"),
    ("text", "dim", "384", "text.dim"),
    ("text", "name", ["x"], "text.name"),
    ("data", "dataset", 7, "data.dataset"),
    ("data", "cold_items", "3", "data.cold_items"),
    ("guidance", "kappa", "half", "guidance.kappa"),
    ("guidance", "rho", True, "guidance.rho"),
    ("new_items", "b", None, "new_items.b"),
    ("new_items", "chosen_on", 1, "new_items.chosen_on"),
    (None, "transform", ["whiten"], "transform"),
    (None, "items_fingerprint", 42, "items_fingerprint"),
    (None, "train", [1], "train"),
])
def test_a_wrong_type_is_refused_in_one_line_naming_the_field(shipped, section, key, value, field):
    (shipped if section is None else shipped[section])[key] = value
    with pytest.raises(ValueError, match=field) as e:
        CheckpointConfig.from_dict(shipped)
    assert "\n" not in str(e.value)


def test_a_missing_field_is_named(shipped):
    del shipped["model"]["width"]
    with pytest.raises(ValueError, match="model lacks width"):
        CheckpointConfig.from_dict(shipped)
    del shipped["text"]
    with pytest.raises(ValueError, match="lacks \\['text'\\]"):
        CheckpointConfig.from_dict(shipped)


def test_read_config_refuses_with_the_file_and_a_way_out(tmp_path, shipped):
    shipped["guidance"]["w"] = "strong"
    (tmp_path / "config.json").write_text(json.dumps(shipped))
    with pytest.raises(CheckpointError) as e:
        read_config(tmp_path)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "config.json")) and "guidance.w" in msg and "restore" in msg


def test_cold_items_beyond_the_catalog_are_refused_with_the_file(checkpoint, tmp_path):
    import shutil

    from idream.serving.checkpoint import read_checkpoint

    copy_ = tmp_path / "ck"
    shutil.copytree(checkpoint, copy_)
    cfg = json.loads((copy_ / "config.json").read_text())
    cfg["data"]["cold_items"] = [10**6]  # typed fine; only the catalog shows it is out of range
    (copy_ / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(copy_)
    msg = str(e.value)
    assert msg.startswith(str(copy_ / "config.json")) and "data.cold_items" in msg and "restore" in msg
