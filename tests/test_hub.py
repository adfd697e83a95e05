"""Checkpoints from the Hugging Face Hub, offline only: an hf:// id is read from a Hub cache filled
here by hand (models--owner--name/{blobs,refs,snapshots}, as huggingface_hub lays it out) and
checked part by part as a folder is; an id not cached, with no network, is one clear line; `push`
checks its arguments and says in one line why it cannot upload."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from idream.serving.checkpoint import CheckpointError
from idream.cli import main
from idream.serving.hub import FILES, HubError, local_path, parse
from idream.serving.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "ml-100k"
REPO = "owner/idream-ml-100k"
MAIN, TAGGED = "a" * 40, "b" * 40  # two commits of the repo: main, and the one tagged v1
HISTORY = ["Toy Story (1995)", "Fargo (1996)", "127"]


def fill_cache(cache: Path, repo: str, folder: Path, commit: str, refs=("main",), skip=()) -> Path:
    """Put `folder`'s checkpoint files into the Hub cache as a download of `commit` would."""
    store = cache / f"models--{repo.replace('/', '--')}"
    snap = store / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (store / "blobs").mkdir(exist_ok=True)
    for name in FILES:
        if (folder / name).exists() and name not in skip:
            data = (folder / name).read_bytes()
            blob = hashlib.sha256(data).hexdigest()
            (store / "blobs" / blob).write_bytes(data)
            (snap / name).symlink_to(Path("..", "..", "blobs", blob))
    (store / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (store / "refs" / ref).write_text(commit)
    return snap


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache, offline (as the test suite always is)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def top(rec: Recommender) -> list:
    out = rec.recommend(HISTORY, intention="a gentle family drama", k=10)
    return [(r["item_id"], round(r["score"], 5)) for r in out.items]


def test_parse_ids():
    assert parse("hf://owner/name") == ("owner/name", None)
    assert parse("hf://owner/name@v1.0") == ("owner/name", "v1.0")
    assert parse("hf://owner/name@refs/pr/3") == ("owner/name", "refs/pr/3")
    for bad in ("hf://name", "hf://owner/na me", "hf://owner/name@", "hf://../x", "hf://owner/name/more",
                "hf://owner/name@../x"):
        with pytest.raises(HubError, match="model id|revision"):
            parse(bad)


def test_local_folders_are_left_alone():
    assert local_path("checkpoints/ml-100k") == Path("checkpoints/ml-100k")


def test_load_from_a_filled_cache_answers_as_the_folder(hub_cache, tmp_path):
    fill_cache(hub_cache, REPO, SHIPPED, MAIN)
    other = tmp_path / "v1"  # the same weights with another default w, as a later commit could be
    shutil.copytree(SHIPPED, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["guidance"]["w"] = 1.5
    (other / "config.json").write_text(json.dumps(cfg))
    fill_cache(hub_cache, REPO, other, TAGGED, refs=("v1",))

    local = Recommender.load(SHIPPED)
    rec = Recommender.load(f"hf://{REPO}")
    assert top(rec) == top(local)
    assert rec.default_w == local.default_w != 1.5
    assert Recommender.load(f"hf://{REPO}@v1").default_w == 1.5  # a tag
    assert Recommender.load(f"hf://{REPO}@{MAIN}").default_w == local.default_w  # a commit


def test_not_cached_and_offline_is_one_clear_line(hub_cache):
    with pytest.raises(CheckpointError) as e:
        Recommender.load("hf://owner/not-downloaded")
    msg = str(e.value)
    assert "\n" not in msg
    assert "hf://owner/not-downloaded is not in the Hugging Face cache" in msg
    assert "HF_HUB_OFFLINE=0" in msg and str(hub_cache) in msg


def test_a_cached_checkpoint_is_checked_part_by_part(hub_cache, tmp_path):
    fill_cache(hub_cache, "owner/half", SHIPPED, MAIN, skip={"model.safetensors"})
    with pytest.raises(CheckpointError, match=r"model.safetensors is missing: the checkpoint is incomplete"):
        Recommender.load("hf://owner/half")
    bad = tmp_path / "bad"
    shutil.copytree(SHIPPED, bad)
    (bad / "model.safetensors").write_bytes((SHIPPED / "model.safetensors").read_bytes()[:1000])
    fill_cache(hub_cache, "owner/cut", bad, MAIN)
    with pytest.raises(CheckpointError, match=r"model.safetensors is not a readable safetensors file"):
        Recommender.load("hf://owner/cut")


def test_command_line_reads_the_cache_named_by_the_environment(tmp_path):
    cache = tmp_path / "hub"
    fill_cache(cache, REPO, SHIPPED, MAIN)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def recommend(spec):
        return subprocess.run([sys.executable, "-m", "idream", "recommend", "--checkpoint", spec, "--json",
                               "--history", *HISTORY], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)

    got = recommend(f"hf://{REPO}")
    assert got.returncode == 0, got.stderr
    want = recommend(str(SHIPPED))
    assert json.loads(got.stdout) == json.loads(want.stdout)
    missing = recommend("hf://owner/elsewhere")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "not in the Hugging Face cache" in missing.stderr


def test_push_checks_its_arguments(tmp_path, capsys, monkeypatch):
    def push(*argv):
        rc = main(["push", *argv])
        return rc, capsys.readouterr().err

    rc, err = push(str(SHIPPED), "not a repo")
    assert rc == 2 and "not a Hugging Face model id" in err and err.count("\n") == 1, err
    rc, err = push(str(SHIPPED), f"{REPO}@v1")
    assert rc == 2 and "not to a revision" in err, err
    rc, err = push(str(tmp_path / "nowhere"), REPO)
    assert rc == 2 and "no checkpoint folder" in err, err
    rc, err = push(str(tmp_path), REPO)
    assert rc == 2 and "not an iDream checkpoint" in err, err
    card_less = tmp_path / "card-less"
    shutil.copytree(SHIPPED, card_less)
    (card_less / "README.md").unlink()
    rc, err = push(str(card_less), REPO)
    assert rc == 2 and "lacks README.md" in err and "model card" in err, err
    with pytest.raises(SystemExit) as e:  # argparse: both arguments are needed
        main(["push", str(SHIPPED)])
    assert e.value.code == 2 and "required: OWNER/NAME" in capsys.readouterr().err

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the test suite: no network
    rc, err = push(str(SHIPPED), REPO)
    assert rc == 2 and err.count("\n") == 1 and "push needs the network" in err, err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    rc, err = push(str(SHIPPED), REPO)
    assert rc == 2 and err.count("\n") == 1 and "no Hugging Face token" in err, err


def test_the_demo_reads_a_hub_checkpoint_from_its_cached_folder(hub_cache):
    """The page's service gets the cached folder, so the model card and the map are found there."""
    from demo.service import get_service
    fill_cache(hub_cache, REPO, SHIPPED, MAIN)
    s = get_service(f"hf://{REPO}", background_umap=False)
    assert Path(s.checkpoint).is_dir() and (Path(s.checkpoint) / "README.md").is_file()
    assert str(hub_cache) in str(Path(s.checkpoint).resolve())
    assert s.model_card()
