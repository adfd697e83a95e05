"""What a click on Recommend sends back: the marks for the map (never the catalog layer, which the
page loaded once) and a status that says where each of the session's new items went."""

import pytest

from demo.callbacks import Callbacks, ordinal
from demo.service import Query, Service

HISTORY = ["Toy Story (1995)", "GoldenEye (1995)"]
INTENTION = "a quiet drama about a lighthouse keeper"


@pytest.fixture(scope="module")
def service(checkpoint):
    from idream.serving.recommender import Recommender

    return Service(Recommender.load(checkpoint), checkpoint, background_umap=False)


def test_ordinal():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112, 1682)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th",
        "112th", "1,682nd"]


def test_a_click_says_where_a_new_item_outside_the_top_k_went(service):
    cb = Callbacks(service)
    items, *_ = cb.add_item("Ridge 317", "A lighthouse keeper and his daughter on a windswept island.",
                            ["Drama"], 1996, [])
    items, *_ = cb.add_item("Laser *Ninjas*", "Ninjas with lasers fight robots in space.", [], None, items)
    table, marks, status = cb.explore(HISTORY, INTENTION, 0.5, 0.0, 1, 3, 0, items)
    marks = marks.figure()  # plotly validates what is sent
    assert len(table) == 3  # two new items cannot fill it: a catalog item is always among the marks
    # the same request's full ranking, from the library
    rows, _ = service.resolve(HISTORY)
    full = service.recommend(Query(rows, INTENTION, 0.5, 0.0, 1, service.n_items + 2 - len(rows), 0),
                             items).items
    new = {r["title"]: r for r in full if r["new"]}
    assert len(new) == 2
    for title, shown in (("Ridge 317", "Ridge 317"), ("Laser *Ninjas*", "Laser \\*Ninjas\\*")):
        r = new[title]
        line = f"*{shown}* ranks {ordinal(r['rank'])} of {len(full):,} (text match {r['intention_similarity']:.2f})"
        assert line in status, status
    hover = [t for t in marks.data if t.meta["role"] == "new items"][0].text
    assert list(hover) == [f"new: {t} (#{new[t]['rank']:,})" for t in ("Ridge 317", "Laser *Ninjas*")]
    # the click's figure holds the marks only: the page keeps the catalog layer it loaded
    roles = {t.meta["role"] for t in marks.data}
    assert "catalog" not in roles and {"history", "top-K", "oracle", "intention", "new items"} <= roles


def test_a_request_the_app_cannot_answer_draws_no_marks(service):
    table, marks, status = Callbacks(service).explore([], "", 0.5, 0.0, 1, 5, 0, [])
    marks = marks.figure()
    assert len(marks.data) == 0 and status.startswith("⚠️")  # a warning,
    assert marks.layout.annotations  # said on the map too
