"""The Gradio app over real HTTP: gradio_client against the app served on 127.0.0.1.

A tiny checkpoint is trained once per session (seconds); set IDREAM_TEST_CHECKPOINT to use
another folder (e.g. checkpoints/ml-100k).
"""

import math
import re

import pytest

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from demo.service import EMPTY_HINT, Query, Service, get_service  # noqa: E402
from demo.testing import serve  # noqa: E402

HISTORY = ["Toy Story (1995)", "GoldenEye (1995)", "Get Shorty (1995)"]
INTENTION = "a dark, tense crime thriller"


@pytest.fixture(scope="session")
def served(checkpoint):
    return serve(checkpoint)


@pytest.fixture(scope="session")
def client(served) -> Client:
    return Client(served[1], verbose=False)


@pytest.fixture(scope="session")
def service(served, checkpoint) -> Service:
    return get_service(checkpoint)  # the one the served app uses (one per process)


def recommend(client, history=HISTORY, intention="", rho=0.5, w=0.0, steps=1, k=10, seed=0) -> dict:
    return client.predict(history, intention, rho, w, steps, k, seed, api_name="/recommend")


def _label(row) -> str:
    return f"{row['title']} ({row['year']})" if row["year"] else row["title"]


def test_recommend_returns_k_rows_none_in_history(client, service):
    out = recommend(client, intention=INTENTION, k=7)
    rows = out["items"]
    assert [r["rank"] for r in rows] == list(range(1, 8))
    assert not {_label(r) for r in rows} & set(HISTORY)
    assert all({"title", "year", "genres", "score", "intention_similarity"} <= set(r) for r in rows)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert out["notices"] == []
    # catalog items, distinct, described as the catalog describes them; similarities are cosines
    catalog = {m["item_id"]: m for m in service.metas}
    assert len({r["item_id"] for r in rows}) == 7
    assert all(r["title"] == catalog[r["item_id"]]["title"] for r in rows)
    assert all(-1 <= r["intention_similarity"] <= 1 for r in rows)
    assert len({r["intention_similarity"] for r in rows}) > 1  # per item, not one number for all


def test_rho_zero_with_intention_equals_no_intention(client):
    plain = recommend(client, intention="", rho=0.0, k=10)["items"]
    zero = recommend(client, intention=INTENTION, rho=0.0, k=10)["items"]
    assert [r["item_id"] for r in zero] == [r["item_id"] for r in plain]
    assert all(math.isclose(a["score"], b["score"], rel_tol=1e-3, abs_tol=1e-3) for a, b in zip(zero, plain))


def test_sweep_returns_one_list_per_rho(client, service):
    out = client.predict(HISTORY, INTENTION, 0.0, 1, 5, 0, api_name="/sweep")
    # the app's checkpoint is text-steered: positions 0.1 apart from 0 (history) to the slider's top
    top = service.rec.rho_range[1]
    n = round(top / 0.1) + 1
    assert out["rho"] == [round(i / 10, 4) for i in range(n)] and n >= 5
    assert len(out["items"]) == n and all(len(rows) == 5 for rows in out["items"])
    assert len(out["intention_similarity"]) == len(out["history_similarity"]) == n
    cos = out["intention_similarity"]
    assert all(b > a for a, b in zip(cos, cos[1:]))  # a dial toward the intention
    assert cos[-1] > (0.999 if top == 1.0 else 0.9)
    # ρ = 0 in the sweep is the unguided ranking of /recommend (same noise, same seed)
    plain = recommend(client, intention="", rho=0.0, k=5)["items"]
    assert [r["item_id"] for r in out["items"][0]] == [r["item_id"] for r in plain]


def test_sweep_caps_its_steps_with_a_notice(client, service):
    from demo.service import SWEEP_MAX_STEPS

    out = client.predict(HISTORY, INTENTION, 0.0, SWEEP_MAX_STEPS + 5, 3, 0, api_name="/sweep")
    assert out["steps"] == SWEEP_MAX_STEPS and len(out["items"]) == len(service.rec.rho_positions())
    assert any(f"at most {SWEEP_MAX_STEPS}" in n for n in out["notices"])


def test_bad_inputs_give_readable_notices(client):
    with pytest.raises(Exception) as err:
        recommend(client, history=[], intention="  ")
    assert EMPTY_HINT.format(kinds="films") in str(err.value) and "Traceback" not in str(err.value)

    out = recommend(client, history=["No Such Film 1234", "Toy Story (1995)"], intention="x" * 2500,
                    k=100000, steps=0, rho=50)
    notes = " ".join(out["notices"])
    # one notice per mended input, each naming what it mended (the wording is the page's own)
    assert len(out["notices"]) >= 5 and "No Such Film 1234" in notes and "2,000" in notes
    assert "top-K" in notes and "steps" in notes and "ρ" in notes
    assert len(out["items"]) == 100  # k = 100,000 clipped to the most the API gives

    with pytest.raises(Exception) as err:
        recommend(client, history=["No Such Film 1234"], intention="")
    assert "No Such Film 1234" in str(err.value)


def numbers_in(text: str) -> set[str]:
    """The whole numbers a message shows (thousands separators dropped)."""
    return set(re.findall(r"\d+", text.replace(",", "")))


def test_explore_endpoint_returns_table_plot_and_status(client, service):
    table, plot, status = client.predict(HISTORY, INTENTION, 0.5, 0.0, 4, 6, 0, api_name="/explore")
    assert len(table["data"]) == 6 and table["headers"][:2] == ["rank", "title"]
    assert [row[0] for row in table["data"]] == [1, 2, 3, 4, 5, 6]
    assert plot["type"] == "plotly" and '"oracle"' in plot["plot"] and "denoising path" in plot["plot"]
    # the count shown, of how many items, with how many steps (whole numbers, not digits anywhere)
    assert {"6", str(service.n_items - len(HISTORY)), "4"} <= numbers_in(status), status
    # the table is the /recommend answer to the same request
    same = recommend(client, intention=INTENTION, rho=0.5, w=0.0, steps=4, k=6, seed=0)["items"]
    assert [row[1] for row in table["data"]] == [r["title"] for r in same]
    table, plot, status = client.predict([], "", 0.5, 0.0, 1, 6, 0, api_name="/explore")
    assert not any(any(row) for row in table["data"])
    assert EMPTY_HINT.format(kinds="films") in status and "Traceback" not in status


def user_labels(service, user) -> list[str]:
    """A user's last history_len items before their held-out (last) one, read off the dataset."""
    seq = [int(i) for i in service.rec.dataset.user_sequence(user)]
    return [service.labels[i] for i in seq[:-1][-service.rec.history_len:]]


def test_history_helpers(client, service):
    labels, note = client.predict("1", api_name="/load_user")
    assert 0 < len(labels) <= service.rec.history_len and "User 1" in note
    assert labels == user_labels(service, "1")
    table = client.predict(labels, api_name="/history_table")
    assert len(table["data"]) == len(labels)
    assert [row[0] for row in table["data"]] == list(range(1, len(labels) + 1))
    by_label = {label: m for label, m in zip(service.labels, service.metas)}
    assert [row[1] for row in table["data"]] == [by_label[label]["title"] for label in labels]
    labels, user, note = client.predict(api_name="/random_user")
    assert isinstance(user, str) and service.rec.dataset.has_user(user)
    assert labels == user_labels(service, user) and labels and f"User {user}" in note
    kept, note = client.predict("no-such-user", api_name="/load_user")
    assert "no-such-user" in note and "value" not in kept  # the history is left as it was


def test_a_typed_title_finds_its_item(service):
    from demo.service import SEARCH_SHOWN

    for typed in ("Toy Story", "toy st", "TOY STORY (1995)", "  goldeneye "):
        found = service.search_titles(typed)
        assert found and len(found) <= SEARCH_SHOWN, typed
        assert found[0] in ("Toy Story (1995)", "GoldenEye (1995)"), (typed, found[:3])
        assert all(typed.strip().lower() in f.lower() for f in found)
    # those that start with it first, then a word starting with it, then anywhere inside
    star = service.search_titles("star")
    starts = [f.lower().startswith("star") for f in star]
    assert starts == sorted(starts, reverse=True) and starts[0]
    assert service.search_titles("Wars") and all("wars" in f.lower() for f in service.search_titles("Wars"))
    assert service.search_titles("no such title 12345") == []
    # nothing typed: the most interacted-with items; anything else typed: no error, no matches
    pop = service.rec.dataset.popularity()
    first = [service.label_index[f] for f in service.search_titles("")]
    assert len(first) == SEARCH_SHOWN and pop[first[0]] == pop.max()
    assert [pop[i] for i in first] == sorted((pop[i] for i in first), reverse=True)
    for odd in (None, 12, ["Toy Story"], "x" * 100_000, "(", ".*", "\\"):
        assert isinstance(service.search_titles(odd), list)


def test_the_history_is_built_from_searches(served, client, service):
    """Typing in the search box offers the matching titles; picking one adds it to the end of the
    history, once; Enter adds the first title found that the history lacks; the page never holds
    the whole catalog as choices."""
    import gradio as gr
    import httpx  # comes with gradio

    from demo.callbacks import Callbacks
    from demo.service import SEARCH_SHOWN

    cb = Callbacks(service)
    offered = cb.search_titles("goldeneye")
    assert offered["choices"] == service.search_titles("goldeneye") and "GoldenEye (1995)" in offered["choices"]
    history, box = cb.pick_title(["Toy Story (1995)"], gr.EventData(None, {"value": "GoldenEye (1995)",
                                                                          "index": 0, "selected": True}))
    assert history == ["Toy Story (1995)", "GoldenEye (1995)"] and box["value"] is None
    again, _ = cb.pick_title(history, gr.EventData(None, {"value": "Toy Story (1995)"}))
    assert again == history  # already there: kept once, in its place
    for odd in (None, {}, {"value": "No Such Film"}, {"value": 12}):
        assert cb.pick_title(history, gr.EventData(None, odd))[0] == history
    star = service.search_titles("star wars")
    first, _ = cb.pick_first_match([], "star wars")
    assert first == star[:1]
    assert cb.pick_first_match(first, "star wars")[0] == star[:2]  # Enter again: the next one
    for odd in ("", "no such title 12345", None, 5):
        assert cb.pick_first_match(first, odd)[0] == first
    # over HTTP: the search by its text; a pick without the page's event data changes nothing
    offered = client.predict("toy story", api_name="/search_titles")["choices"]  # [label, value] pairs
    assert ["Toy Story (1995)", "Toy Story (1995)"] in offered
    assert client.predict(["Toy Story (1995)"], api_name="/add_to_history")[0] == ["Toy Story (1995)"]
    assert client.predict([], "goldeneye", api_name="/add_first_match")[0] == ["GoldenEye (1995)"]
    # the page's components carry one search's titles at most, never the catalog's
    config = httpx.get(served[1] + "config", timeout=30).json()
    props = {c["props"].get("elem_id"): c["props"] for c in config["components"]}
    assert len(props["title-matches"]["choices"]) == SEARCH_SHOWN and props["history"]["choices"] == []
    assert max(len(p.get("choices") or []) for p in props.values()) < service.n_items


def test_every_event_has_an_api_name(served):
    deps = served[0].config["dependencies"]
    assert deps and all(d.get("api_name") for d in deps)
    names = {d["api_name"] for d in deps}
    assert {"recommend", "sweep", "explore", "sweep_view", "add_item"} <= names


def test_a_click_asks_for_the_map_and_the_sweep_at_once(served):
    """The page sends the events of one trigger one by one, each after the previous answered, and
    the events that follow a finished one together: the click's first step runs in the page, and
    /explore and /sweep_view both follow it, so the sweep never waits for the map."""
    demo = served[0]
    deps = {d["api_name"]: d for d in demo.config["dependencies"]}
    ids = {c["id"]: c["props"].get("elem_id") for c in demo.config["components"]}
    click = deps["recommend_click"]
    assert not click["backend_fn"] and click["js"]
    assert ("recommend-btn", "click") in [(ids.get(t), e) for t, e in click["targets"]]
    assert ("intention", "submit") in [(ids.get(t), e) for t, e in click["targets"]]
    for name in ("explore", "sweep_view"):
        assert deps[name]["backend_fn"] and deps[name]["trigger_after"] == click["id"], name
        assert not deps[name]["trigger_only_on_success"]
    assert deps["draw_map"]["trigger_after"] == deps["explore"]["id"]


def test_the_page_process_runs_torch_and_blas_on_one_thread(monkeypatch):
    """A request's numpy solves ran on two BLAS threads: on a busy two-core machine a click's
    explore and sweep took a second each instead of 40 ms."""
    import torch

    from demo.service import blas_threads, set_blas_threads, set_threads

    pytest.importorskip("threadpoolctl")
    monkeypatch.delenv("IDREAM_TORCH_THREADS", raising=False)
    torch_threads, blas = torch.get_num_threads(), blas_threads()
    try:
        assert set_threads() == 1 and blas_threads() == 1
        monkeypatch.setenv("IDREAM_TORCH_THREADS", "2")
        assert set_threads() == 2 and blas_threads() == 2
    finally:
        torch.set_num_threads(torch_threads)
        set_blas_threads(blas)


def test_the_page_keeps_no_run_history_in_the_browser(served):
    """The browser does not store each event's inputs and component props (slow on a large
    catalog, and a visitor's intentions would stay in their localStorage)."""
    import httpx  # comes with gradio

    assert served[0].run_history is False
    config = httpx.get(served[1] + "config", timeout=30).json()
    assert config["run_history"] is False


def test_new_item_is_recommendable_in_its_session_only(service):
    from demo.callbacks import Callbacks

    cb = Callbacks(service)
    items, table, msg, *_ = cb.add_item("Heist of the Magicians", "Three retired magicians rob a casino.",
                                        ["Comedy", "Crime"], 2024, [])
    assert len(items) == 1 and "Added" in msg and len(table) == 1 and "no description" not in msg
    _, _, msg, *_ = cb.add_item("", "", [], None, items)
    assert "title" in msg
    # no description: added, with a word on what that costs
    bare, _, msg, *_ = cb.add_item("Untold", "", [], None, [])
    assert len(bare) == 1 and "Added" in msg and "no description" in msg and "genres" not in msg
    rows, _ = service.resolve(HISTORY)
    n = service.n_items + 1 - len(rows)
    q = Query(rows, INTENTION, 1.0, 0.0, 1, n, 0)
    out = service.recommend(q, items)
    new = [r for r in out.items if r["new"]]
    assert len(out.items) == n and len(new) == 1 and new[0]["title"] == "Heist of the Magicians"
    assert not any(r["new"] for r in service.recommend(q).items)  # other sessions: no new item


@pytest.mark.filterwarnings("ignore:Intentions are off")
def test_text_model_off_disables_intentions_plainly(service):
    from demo.app import build_app
    from demo.callbacks import Callbacks

    base = service
    svc = Service(base.rec, base.checkpoint, background_umap=False)
    svc.text_reason = "OPENAI_API_KEY is not set"
    cb = Callbacks(svc)
    _, _, status = cb.explore(HISTORY, INTENTION, 1.0, 0.0, 1, 5, 0, [])
    assert "intention" in status.lower() and "5" in numbers_in(status)  # answered, the intention not used
    items, _, msg, *_ = cb.add_item("A film", "text", [], None, [])
    assert msg and not items  # no item added without the text model
    demo = build_app(service=svc)
    comps = {c["props"].get("elem_id"): c["props"] for c in demo.config["components"]}
    assert comps["intention"]["interactive"] is False
    assert "OPENAI_API_KEY is not set" in comps["text-off"]["value"]


def test_the_app_clips_to_the_library_limits(service):
    """A value the library refuses comes back from the app's check clipped to the library's own
    bound (or within it, where the app offers less), with a notice; the clipped request is one
    the library answers as it is."""
    rec, hard = service.rec, service.rec.limits()
    cases = [("steps", 0, hard.steps[0]), ("steps", rec.T + 1, hard.steps[1]), ("k", 0, hard.k[0]),
             ("k", -5, hard.k[0])]
    cases += [("rho", hard.rho[1] + 1, rec.rho_range[1]), ("rho", hard.rho[0] - 1, hard.rho[0])]  # 0 … the slider's top
    cases += [("w", hard.w[1] * 10, None), ("rho", 1e300, None)]  # None: within the library's range
    for name, value, bound in cases:
        call = dict(rho=None, w=None, steps=1, k=10, seed=0)
        call[name] = value
        with pytest.raises(ValueError, match=f"^{name} must"):
            rec.recommend(HISTORY, "", **call)
        q = service.check(HISTORY, "", *call.values())
        got = getattr(q, name)
        assert got == bound if bound is not None else getattr(hard, name)[0] <= got <= getattr(hard, name)[1]
        clipped = [n for n in q.notices if " is outside " in n]
        assert len(clipped) == 1 and f"using {got:g}" in clipped[0], q.notices
        out = rec.recommend(HISTORY, q.intention, rho=q.rho, w=q.w, steps=q.steps, k=q.k, seed=q.seed)
        assert len(out.items) == q.k
