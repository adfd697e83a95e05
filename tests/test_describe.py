"""LLM item descriptions: the resumable cache, faults, interruption, `--descriptions llm`, and a
checkpoint built from ChatGPT-style descriptions and OpenAI embeddings, all against the fake
OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py) through the real openai client."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_openai import FAST_RETRIES, FakeOpenAI, fake_description, script, server_fixtures
from idream import cli
from idream.data import catalog
from idream.text import llm
from idream.data.datasets import load_dataset
from idream.text.llm import DescriptionCache, MissingDescriptionsError, build_messages, describe_catalog
from idream.text.openai_backend import OpenAIServiceError
from idream.serving.recommender import Recommender
from idream.text.descriptions import FILM

KEY = "sk-test-DESCRIBEKEY-41c9e07b2a5d3f68"
FIELDS = {"item_id", "meta_sha256", "model", "prompt_version", "text"}


@pytest.fixture(scope="module")
def items(synthetic_dir):
    return load_dataset(str(synthetic_dir)).all_item_meta()  # 40 items


fake, env = server_fixtures(KEY)


def assert_complete(path: Path, items, model="fake-chat", kind=FILM):
    """The file holds exactly one correct record per item, in catalog order, every line JSON, each
    asked for with the prompt of the catalog's kind."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["item_id"] for r in records] == [str(m["item_id"]) for m in items]
    for rec, meta in zip(records, items):
        assert set(rec) == FIELDS
        assert rec["model"] == model and rec["prompt_version"] == llm.prompt_version(kind)
        assert rec["meta_sha256"] == llm.metadata_sha256(meta)
        assert rec["text"] == fake_description(build_messages(meta, kind))


def answered(fake) -> list[str]:
    """Titles of the items the server answered successfully (one entry per answer)."""
    out = []
    for body in fake.requests("chat", ok_only=True):
        title = [ln for ln in body["messages"][-1]["content"].splitlines() if ln.startswith("Title: ")]
        out.append(title[0][len("Title: "):])
    return out


def test_prompt_and_metadata_hash(items):
    meta = dict(items[0])
    msgs = build_messages(meta)
    assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user"
    assert "Title: Synthetic Film 0" in msgs[1]["content"] and "Year: 1950" in msgs[1]["content"]
    h = llm.metadata_sha256(meta)
    assert h == llm.metadata_sha256(dict(meta)) and len(h) == 64
    assert h != llm.metadata_sha256({**meta, "genres": ("Western",)})


def test_every_fault_ends_with_the_complete_cache(env, items, tmp_path):
    env.fault = script(chat={1: "429", 3: "500", 5: "stall", 7: "malformed", 9: "half", 11: "drop",
                             13: "503"})
    path = tmp_path / "d.jsonl"
    plans = []
    summary = describe_catalog(items, "fake-chat", path, concurrency=4, progress=False,
                               on_plan=plans.append)
    assert plans[0].requests == 40 and plans[0].cached == 0
    assert summary["written"] == 40 and summary["complete"] == 40 and summary["retries"] == 7
    assert_complete(path, items)
    assert sorted(answered(env)) == sorted(m["title"] for m in items)  # nobody answered twice
    assert env.counts["chat"] == 47
    # a second run has nothing to do
    again = describe_catalog(items, "fake-chat", path, progress=False)
    assert again["requested"] == 0 and env.counts["chat"] == 47


def test_server_down_midway_then_resume(env, items, tmp_path):
    env.fault = lambda kind, n, body: "500" if n > 10 else None  # errors forever after 10
    path = tmp_path / "d.jsonl"
    with pytest.raises(OpenAIServiceError, match="10/40 items done.*run the same command again"):
        describe_catalog(items, "fake-chat", path, concurrency=4, progress=False)
    saved = DescriptionCache(path).load()
    assert len(saved) == 10 and len(path.read_text().splitlines()) == 10
    first = answered(env)
    env.fault = None  # the server is back
    describe_catalog(items, "fake-chat", path, concurrency=4, progress=False)
    assert_complete(path, items)
    resumed = answered(env)[len(first):]
    assert sorted(first + resumed) == sorted(m["title"] for m in items)  # none lost, none twice


def test_keyboard_interrupt_then_resume(env, items, tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    real_append, calls = DescriptionCache.append, []

    def append(self, record):
        calls.append(record["item_id"])
        if len(calls) == 6:
            raise KeyboardInterrupt  # Ctrl-C between an answer and its save: the worst moment
        real_append(self, record)

    monkeypatch.setattr(DescriptionCache, "append", append)
    with pytest.raises(KeyboardInterrupt):
        describe_catalog(items, "fake-chat", path, concurrency=3, progress=False)
    monkeypatch.setattr(DescriptionCache, "append", real_append)
    saved = DescriptionCache(path).load()
    assert list(saved) == calls[:5]
    with FakeOpenAI(key=KEY) as fresh:  # stragglers of the first run may still reach `env`
        monkeypatch.setenv("OPENAI_BASE_URL", fresh.base_url)
        summary = describe_catalog(items, "fake-chat", path, concurrency=3, progress=False)
        assert summary["requested"] == 35
        assert sorted(answered(fresh)) == sorted(m["title"] for m in items
                                                 if str(m["item_id"]) not in saved)
    assert_complete(path, items)


def test_torn_last_line_is_ignored_then_healed(env, items, tmp_path):
    path = tmp_path / "d.jsonl"
    describe_catalog(items, "fake-chat", path, max_items=3, progress=False)
    with open(path, "a", encoding="utf-8") as f:  # a crash in the middle of writing a record
        f.write('{"item_id": "103", "meta_sha256": "ab')
    assert len(DescriptionCache(path).load()) == 3
    summary = describe_catalog(items, "fake-chat", path, progress=False)
    assert summary["requested"] == 37
    assert_complete(path, items)


def test_max_items_stale_metadata_and_model_change(env, items, tmp_path):
    path = tmp_path / "d.jsonl"
    s = describe_catalog(items, "fake-chat", path, max_items=7, progress=False)
    assert (s["requested"], s["complete"]) == (7, 7)
    assert describe_catalog(items, "fake-chat", path, progress=False)["requested"] == 33
    edited = [dict(m) for m in items]
    edited[4]["title"] = "A Renamed Film"
    s = describe_catalog(edited, "fake-chat", path, progress=False)
    assert s["requested"] == 1
    assert_complete(path, edited)
    assert describe_catalog(edited, "other-chat", path, progress=False)["requested"] == 40
    assert_complete(path, edited, model="other-chat")


def test_a_refused_item_is_skipped_but_a_refused_run_stops(env, items, tmp_path):
    refuse = "Title: Synthetic Film 7\n"
    env.fault = lambda kind, n, body: "400" if refuse in body["messages"][-1]["content"] else None
    path = tmp_path / "d.jsonl"
    summary = describe_catalog(items, "fake-chat", path, concurrency=2, progress=False)
    assert summary["skipped"] == ["107"] and summary["complete"] == 39
    assert env.counts["chat"] == 40  # a refusal is not retried
    env.fault = lambda kind, n, body: "400"  # e.g. a parameter this server never accepts
    with pytest.raises(OpenAIServiceError, match="HTTP 400"):
        describe_catalog(items, "other-chat", tmp_path / "e.jsonl", concurrency=2, progress=False)
    assert env.counts["chat"] <= 40 + 4


def test_one_run_at_a_time(env, items, tmp_path):
    path = tmp_path / "d.jsonl"
    with DescriptionCache(path).exclusive():
        with pytest.raises(llm.CacheBusyError, match="another describe run"):
            describe_catalog(items, "fake-chat", path, progress=False)
    assert env.counts["chat"] == 0
    assert describe_catalog(items, "fake-chat", path, max_items=2, progress=False)["written"] == 2


def test_descriptions_llm_needs_the_cache(env, synthetic_dir, tmp_path):
    ds = load_dataset(str(synthetic_dir))
    path = llm.descriptions_path(ds.name, tmp_path)
    kind = ds.item_kind
    describe_catalog(ds.all_item_meta(), "fake-chat", path, max_items=25, progress=False, kind=kind)
    with pytest.raises(MissingDescriptionsError, match="15 of 40 items.*python -m idream describe"):
        catalog.item_texts(ds, "llm", tmp_path)
    describe_catalog(ds.all_item_meta(), "fake-chat", path, progress=False, kind=kind)
    texts = catalog.item_texts(ds, "llm", tmp_path)
    assert texts == [fake_description(build_messages(m, kind)) for m in ds.all_item_meta()]
    assert catalog.item_texts(ds, "template", tmp_path)[0].startswith("Synthetic Film 0")


def test_cli_describes_a_books_folder_as_books(env, books_dir, tmp_path, capsys):
    """The folder's kind reaches the prompt: every request asks about books, never movies, and the
    records are the books prompt's; a film-prompt record does not count for the catalog."""
    ds = load_dataset(str(books_dir))
    args = ["describe", "--dataset", str(books_dir), "--llm", "fake-chat", "--cache-dir", str(tmp_path)]
    assert cli.main([*args, "--quiet"]) == 0
    bodies = env.requests("chat", ok_only=True)
    assert len(bodies) == ds.n_items
    for body in bodies:
        system, user = (m["content"] for m in body["messages"])
        assert "descriptions of books" in system and "the book below" in user and "reader" in user
        assert "movie" not in system + user and "viewer" not in user
    path = llm.descriptions_path(ds.name, tmp_path)
    assert_complete(path, ds.all_item_meta(), kind=ds.item_kind)
    assert catalog.item_texts(ds, "llm", tmp_path)[0].startswith("Fake description")
    DescriptionCache(path).rewrite([llm.make_record(m, "fake-chat", "old") for m in ds.all_item_meta()])
    capsys.readouterr()
    assert cli.main([*args, "--dry-run"]) == 0
    assert f"{ds.n_items} to describe" in capsys.readouterr().out


def _run_cli(args, env_extra):
    env = dict(os.environ, **env_extra)
    # Ctrl-C must reach the command: an ignored SIGINT would be inherited from this process if
    # something earlier in the session ignored it, and the interrupted run would never stop
    return subprocess.Popen([sys.executable, "-m", "idream", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_cli_describe_interrupted_and_resumed_never_shows_the_key(fake, synthetic_dir, tmp_path):
    # slow answers, so that Ctrl-C lands mid-run
    fake.fault = lambda kind, n, body: "stall" if n > 4 else None
    fake.stall_s = 0.5  # 36 stalled answers, two at a time: about 9 s, so the signal lands mid-run
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url, **FAST_RETRIES}
    args = ["describe", "--dataset", str(synthetic_dir), "--llm", "fake-chat", "--concurrency", "2",
            "--cache-dir", str(tmp_path)]
    path = llm.descriptions_path(synthetic_dir.name, tmp_path)
    p = _run_cli(args, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
            not path.exists() or len(path.read_text().splitlines()) < 8):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out1, err1 = p.communicate(timeout=60)
    assert p.returncode == 130, err1[-2000:]
    assert "will make 40 chat requests" in out1
    saved = len(DescriptionCache(path).load())
    assert 8 <= saved < 40
    fake.fault = None
    p = _run_cli([*args, "--quiet"], env)
    out2, err2 = p.communicate(timeout=120)
    assert p.returncode == 0, err2[-2000:]
    assert f"will make {40 - saved} chat requests" in out2 and "40/40 items described" in out2
    ds = load_dataset(str(synthetic_dir))
    assert_complete(path, ds.all_item_meta(), kind=ds.item_kind)
    assert len(answered(fake)) <= 40 + 2  # at most the in-flight answers of the Ctrl-C are repeated
    # the key is nowhere: outputs, errors, files
    blob = out1 + err1 + out2 + err2
    blob += "".join(f.read_text(errors="replace") for f in tmp_path.rglob("*") if f.is_file())
    assert KEY not in blob


def test_cli_describe_plan_and_errors(synthetic_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    base = ["describe", "--dataset", str(synthetic_dir), "--llm", "gpt-4o-mini",
            "--cache-dir", str(tmp_path)]
    assert cli.main([*base, "--dry-run", "--max-items", "5"]) == 0
    out = capsys.readouterr().out
    assert "40 to describe" in out and "will make 5 chat requests" in out
    assert cli.main([*base, "--max-items", "5"]) == 2
    cap = capsys.readouterr()
    assert "will make 5 chat requests" in cap.out and "OPENAI_API_KEY" in cap.err


TRAIN = ["--width", "32", "--depth", "1", "--heads", "2", "--epochs", "1",
         "--max-train-samples", "128", "--threads", "1", "--T", "100", "--history-len", "5",
         "--intention-pool", "2", "--no-eval", "--quiet"]


@pytest.fixture
def torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)  # --threads 1 below must not slow the rest of the session


def test_checkpoint_with_llm_descriptions_and_openai_embeddings(env, synthetic_dir, tmp_path,
                                                                  monkeypatch, capsys, caplog,
                                                                  torch_threads):
    caplog.set_level(logging.DEBUG)
    cache, out = tmp_path / "cache", tmp_path / "ck"
    data = str(synthetic_dir)
    assert cli.main(["describe", "--dataset", data, "--llm", "fake-chat", "--cache-dir", str(cache),
                     "--quiet"]) == 0
    env.fault = script(embeddings={2: "429", 3: "half"})
    assert cli.main(["train", "--dataset", data, "--out", str(out), "--cache-dir", str(cache),
                     "--tem", "openai:fake-embed", "--tem-dim", "16", "--descriptions", "llm",
                     *TRAIN]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["text"]["backend"] == cfg["text"]["name"] == "openai:fake-embed@16"
    assert cfg["text"]["descriptions"] == "llm" and cfg["text"]["dim"] == 16
    # the item matrix is the embedding of the LLM descriptions
    first = env.requests("embeddings", ok_only=True)[0]
    assert first["dimensions"] == 16
    ds = load_dataset(data)
    assert first["input"][0] == fake_description(build_messages(ds.item_meta(0), ds.item_kind))

    rec = ["recommend", "--checkpoint", str(out), "--history", "100", "101", "--json"]
    assert cli.main([*rec, "--descriptions", "template"]) == 2
    assert "trained on llm descriptions, not template" in capsys.readouterr().err
    assert cli.main([*rec, "--tem", "hash:32"]) == 2
    assert "text model openai:fake-embed@16" in capsys.readouterr().err
    assert cli.main(["evaluate", "--checkpoint", str(out), "--descriptions", "template"]) == 2
    assert "trained on llm descriptions" in capsys.readouterr().err
    assert cli.main([*rec, "--tem", "openai:fake-embed", "--tem-dim", "16",
                     "--descriptions", "llm", "--intention", "something scary"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 10

    # without a key: a plain message for the UI, history-only still works, intentions say why
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    status = Recommender.load(out).text_status()
    assert "OPENAI_API_KEY" in status and "openai:fake-embed@16" in status
    assert cli.main(rec) == 0
    capsys.readouterr()
    assert cli.main([*rec, "--intention", "something scary"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "OPENAI_API_KEY" in err and "Traceback" not in err

    blob = caplog.text + "".join(capsys.readouterr())
    blob += "".join(f.read_text(errors="replace") for d in (cache, out) for f in d.rglob("*")
                    if f.is_file() and f.suffix in (".json", ".jsonl", ".md"))
    blob += "".join(f.read_bytes().decode("latin-1") for d in (cache, out) for f in d.rglob("*")
                    if f.is_file() and f.suffix == ".safetensors")
    assert KEY not in blob and KEY[:16] not in blob
