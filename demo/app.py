"""The page: history builder, intention, controls, results, the two UMAP panels, the ρ sweep,
new items and the About tab. `build_app(checkpoint)` returns the Blocks; `launch_kwargs()` the
app-level options Gradio 6 takes in `launch()`."""

from __future__ import annotations

import json
import os
import sys
from importlib.util import find_spec
from types import SimpleNamespace

import gradio as gr

from . import figures
from .callbacks import HISTORY_COLUMNS, NEW_ITEM_COLUMNS, RESULT_COLUMNS, Callbacks
from .projection import PARAMS
from .service import Service, get_service

DEFAULT_CHECKPOINT = "checkpoints/ml-100k"
# chosen from results/app-load.md; the environment overrides. The API's /recommend and /sweep
# wait in demo.batcher (bounded there, with a "busy, try again in N s"), not in Gradio's queue
QUEUE_SIZE = int(os.environ.get("IDREAM_QUEUE_SIZE", "256"))  # the page's events waiting
MODEL_CONCURRENCY = int(os.environ.get("IDREAM_CONCURRENCY", "2"))  # the page's model calls at once
MAX_THREADS = int(os.environ.get("IDREAM_MAX_THREADS", "512"))  # events in progress (API ones wait
# without a thread, so this bounds the API requests handed to the batcher, not threads)

FILM_EXAMPLES = [  # for catalogs of films; others get examples from their own genres
    "something light and funny from the 90s",
    "a dark, tense crime thriller",
    "a romantic comedy for a date night",
    "an animated film the whole family can watch",
    "mind-bending science fiction",
    "a classic western with gunfights",
]


def intention_examples(ds) -> list[str]:
    """Example intentions that fit the catalog: film examples for films, else its common genres."""
    if ds.item_kind[0] == "film":
        return FILM_EXAMPLES
    counts = {}
    for gs in ds.items["genres"]:
        for g in gs:
            counts[g] = counts.get(g, 0) + 1
    top = sorted(counts, key=counts.get, reverse=True)[:4]
    return [f"something {g.lower()}" for g in top]


METHOD = r"""
### The method in a few lines
iDream (after iDreamRec, arXiv 2410.13428) **generates** the embedding of an ideal next item, the
*oracle* x̂₀, with a diffusion model conditioned on your history H and, optionally, an intention q
typed in plain words; it then ranks every catalog item by ⟨x̂₀, zᵢ⟩ (history items are left out).

- **One text space.** Each item's description is embedded by a fixed text model and passed through
  a linear transform fitted on the catalog only (none, scale or ZCA whitening, chosen on validation;
  a learned per-item residual is added for items seen in training); intentions go through the same
  text model and transform.
- **Guidance.** With u = f(x_t, ∅, ∅), c_h = f(x_t, H, ∅), c_hq = f(x_t, H, q):
  x̂₀ = u + (1 + w)(c_h − u) + ρ (c_hq − c_h). w strengthens the history; ρ the intention.
- **Text steering** (models trained with it): the learned term runs at κρ, then the oracle is
  turned toward the intention's own text direction d (the scoring-space direction whose scores
  are the text model's cosines) by ρ·90°, its spread kept. ρ = 0: the history alone; ρ = 1: the
  intention alone, as a text search would rank.
- **Sampling.** Deterministic DDIM over `steps` evenly strided timesteps; one step is a single
  batched forward pass. The denoising path shows x̂₀ after each step.
- **New items need no retraining:** describe → embed → whiten → score like any other item. Having
  no learned residual, a new item also scores as high as its text is close to something in your
  history (the checkpoint's new-item rule, chosen on items held out of training).
"""

# The map's catalog layer comes once, with the page; a click sends only its marks (a small figure
# on the same two panels, into a hidden Plot), and this draws them over the layer the page holds.
DRAW_MAP = """(marks) => {
  const div = document.querySelector('#space-plot .js-plotly-plot');
  if (!div || !window.Plotly || !marks || !marks.plot) return [];
  const fig = JSON.parse(marks.plot);
  const base = (div.data || []).filter(t => t.meta && t.meta.role === 'catalog');
  window.Plotly.react(div, base.concat(fig.data), Object.assign({}, div.layout, {title: fig.layout.title}));
  return [];
}"""

# the history box's value without blank entries, the same value when it has none (nothing changes)
DROP_BLANK = """(history) => {
  const kept = (history || []).filter(h => typeof h !== 'string' || h.trim() !== '');
  return [kept.length === (history || []).length ? history : kept];
}"""

CSS = """
#results table { font-size: 0.9em; }
.notice { min-height: 1.5em; }
"""


def launch_kwargs() -> dict:
    """App-level launch options (server name and port come from GRADIO_SERVER_NAME / _PORT).

    No run history: Gradio 6 would copy every event's inputs, with the props of its input and
    output components, into the browser's localStorage and parse and rewrite that whole list as
    each event starts and answers; on a large catalog this cost seconds per click on Recommend."""
    return {"theme": gr.themes.Soft(primary_hue="orange"), "css": CSS, "show_error": False,
            "footer_links": ["api", "gradio"], "max_threads": MAX_THREADS, "run_history": False}


def lighten_gradio() -> None:
    """Two costs Gradio 6 pays on every event, set aside before the queue is made (the environment
    still overrides): it rebuilds a pandas summary of up to 10,000 past events after each one (a
    quarter of the event loop's time under a crowd; here once per 1,000 events, over the last
    100), and it tries `import matplotlib` twice per call, which, where matplotlib is not
    installed, searches sys.path each time; a None in sys.modules makes that failure immediate."""
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
    if "matplotlib" not in sys.modules and find_spec("matplotlib") is None:
        sys.modules["matplotlib"] = None


def build_app(checkpoint: str | None = None, background_umap: bool = True,
              service: Service | None = None) -> gr.Blocks:
    """The Gradio Blocks for one checkpoint folder (the model is loaded once per process)."""
    lighten_gradio()
    checkpoint = checkpoint or os.environ.get("IDREAM_CHECKPOINT", DEFAULT_CHECKPOINT)
    s = service or get_service(checkpoint, background_umap=background_umap)
    checkpoint = str(s.checkpoint)
    cb = Callbacks(s)

    with gr.Blocks(title="iDream: text-guided diffusion recommender") as demo:
        _header(s)
        ui = {"new_items": gr.State([])}
        with gr.Tabs():
            with gr.Tab("Recommend", id="recommend"):
                ui |= _recommend_tab(s)
            with gr.Tab("New item", id="new-item"):
                ui |= _new_item_tab(s)
            with gr.Tab("About", id="about"):
                _about_tab(s, checkpoint)
        _wire_events(cb, SimpleNamespace(**ui))

    # queue positions sent once a second, not to every waiting event each time one starts
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=MODEL_CONCURRENCY, status_update_rate=1)
    return demo


def _header(s: Service) -> None:
    """The title and what the page does, and a warning when intentions are off on this server."""
    rec, kinds = s.rec, s.kinds
    rho_lo, rho_hi = rec.rho_range
    gr.Markdown(
        "# iDream · text-guided diffusion recommender\n"
        f"Build a history from the **{rec.dataset.name}** catalog ({s.n_items:,} {kinds}), say what "
        "you are in the mood for, and watch a diffusion model *generate* the ideal next item, "
        f"then rank real {kinds} around it. Turn ρ up to follow your words more "
        f"({rho_lo:g}: your history alone, {rho_hi:g}: " +
        ("your words alone" if rho_hi >= 1 else "strongly your words") + "), w to follow your "
        "history more.")
    if s.text_reason is not None:
        gr.Markdown(f"⚠️ **Intentions and new items are off on this server:** {s.text_reason} "
                    "Recommendations from the history alone still work.", elem_id="text-off")


def _recommend_tab(s: Service) -> dict:
    """The Recommend tab: history, intention and controls beside the results, then the map and
    the ρ sweep. Returns its components by name."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=5, min_width=340):
            ui = _history_panel(s) | _intention_box(s) | _controls(s.rec)
        with gr.Column(scale=6, min_width=380):
            ui |= _results_panel()
    return ui | _map_and_sweep(s)


def _history_panel(s: Service) -> dict:
    """Step 1: the history picker, a user's history by id or at random, and the history table."""
    gr.Markdown("### 1 · History (oldest first)")
    # the catalog is searched on the server: the page holds one search's matches, never every
    # title (Gradio copies a component's props whenever an event touches it: seconds at 100,000)
    search = gr.Textbox(label=f"Add {s.kinds} to your history", lines=1, max_lines=1, elem_id="title-search",
                        placeholder="Type part of a title, then pick it below (Enter: the first one found)")
    matches = gr.Radio(choices=s.search_titles(""), value=None, interactive=True, elem_id="title-matches",
                       label=f"{s.kinds.capitalize()} found (the most interacted-with first)",
                       info="The order you pick them in is the order the model reads.")
    history = gr.Dropdown(  # holds any label, as the API does: the service checks each one
        choices=[], value=[], multiselect=True, allow_custom_value=True, interactive=True,
        label=f"{s.kinds.capitalize()} in your history", elem_id="history", info="✕ takes one out.")
    history.filterable = False  # nothing is typed here (Gradio would turn what is typed into an item)
    with gr.Row():
        user_id = gr.Textbox(label="User id", placeholder="e.g. 42", scale=2,
                             min_width=90, elem_id="user-id")
        load_user = gr.Button("Load user", scale=1, min_width=80)
        random_user = gr.Button("Random user", scale=1, min_width=80)
        clear = gr.Button("Clear", scale=1, min_width=60)
    history_table = gr.Dataframe(headers=HISTORY_COLUMNS, value=None, interactive=False,
                                 max_height=260, label="Your history", elem_id="history-table")
    return dict(search=search, matches=matches, history=history, user_id=user_id, load_user=load_user,
                random_user=random_user, clear=clear, history_table=history_table)


def _intention_box(s: Service) -> dict:
    """Step 2: the intention, with examples that fit the catalog (off, saying why, without text)."""
    text_on = s.text_reason is None
    examples = intention_examples(s.rec.dataset)
    gr.Markdown("### 2 · Intention (optional)")
    intention = gr.Textbox(
        label="What are you in the mood for?", lines=2, elem_id="intention",
        interactive=text_on,
        placeholder=f"e.g. {examples[0]}" if examples and text_on else "" if text_on
        else f"Off on this server: {s.text_reason}")
    gr.Examples([[e] for e in examples] or [[""]], inputs=[intention],
                label="Example intentions", api_name="intention_example",
                visible=text_on and bool(examples))
    return dict(intention=intention)


def _controls(rec) -> dict:
    """Step 3: ρ and w within the model's ranges, DDIM steps, top-K, seed and the button."""
    rho_lo, rho_hi = rec.rho_range
    gr.Markdown("### 3 · Controls")
    with gr.Row():
        rho = gr.Slider(rho_lo, rho_hi, value=rec.default_rho,
                        step=0.05 if rho_hi - rho_lo <= 2 else 0.25,
                        label="ρ · intention strength", elem_id="rho")
        w = gr.Slider(*rec.w_range, value=rec.default_w, step=0.1,
                      label="w · history guidance", elem_id="w")
    with gr.Row():
        steps = gr.Slider(1, rec.T, value=1, step=1, label="DDIM steps (1 = one-step)",
                          elem_id="steps")
        k = gr.Slider(1, 50, value=10, step=1, label="top-K", elem_id="k")
        seed = gr.Number(value=0, precision=0, label="seed", min_width=80, elem_id="seed")
    go_btn = gr.Button("Recommend", variant="primary", elem_id="recommend-btn")
    return dict(rho=rho, w=w, steps=steps, k=k, seed=seed, go_btn=go_btn)


def _results_panel() -> dict:
    """The status line and the ranked items."""
    gr.Markdown("### Recommendations")
    status = gr.Markdown(elem_id="status", elem_classes="notice")
    results = gr.Dataframe(headers=RESULT_COLUMNS, value=None, interactive=False,
                           max_height=620,
                           label="Ranked items (history never included). Text match: "
                                 "cosine of the item's description and your intention "
                                 "in the text model's space, higher = closer",
                           elem_id="results", wrap=True,
                           column_widths=["9%", "33%", "10%", "24%", "11%", "13%"])
    return dict(status=status, results=results)


def _map_and_sweep(s: Service) -> dict:
    """The embedding map (its catalog layer sent once; a click sends only the marks), how to read
    it, and the ρ sweep."""
    gr.Plot(
        value=figures.embedding_figure(s.projection.coords, s.labels, [m["genres"] for m in s.metas],
                                       subtitle="press Recommend to draw your history, intention, "
                                                "oracle, denoising path and top-K"),
        label="Embedding space", elem_id="space-plot")
    map_marks = gr.Plot(visible=False, elem_id="map-marks")
    gr.Markdown(
        f"**Reading the map.** Each dot is one of the {s.kinds} (colour: first genre; hover for the title). "
        "■ history, ◆ top-K (with ranks), ✕ your intention, ★ the generated oracle, dotted "
        "line: x̂₀ after each DDIM step, ending at the oracle. Left: raw text embeddings; "
        "right: the item vectors the model scores with (transformed text vector + learned "
        "residual). Click legend entries to hide them.")
    sweep_plot = gr.Plot(value=figures.message_figure(
        "The ρ sweep appears here after Recommend (it needs an intention)."),
        label="Guidance strength ρ", elem_id="sweep-plot")
    return dict(map_marks=map_marks, sweep_plot=sweep_plot)


def _new_item_tab(s: Service) -> dict:
    """The New item tab: a title, description, year and genres added to this session's catalog."""
    text_on = s.text_reason is None
    gr.Markdown(
        "### Add an item without retraining\nTitle + description → embedded with the "
        "checkpoint's text model and transform → added to **your session's** catalog only, "
        "marked [new], and immediately recommendable." +
        ("" if text_on else f"\n\n⚠️ Off on this server: {s.text_reason}"))
    with gr.Row():
        new_title = gr.Textbox(label="Title", interactive=text_on, elem_id="new-title", scale=2)
        new_year = gr.Number(value=None, label="Year (optional)", precision=0, interactive=text_on, scale=1)
    new_desc = gr.Textbox(label="Description", lines=3, interactive=text_on, elem_id="new-desc",
                          placeholder="e.g. A heist comedy about three retired magicians.")
    new_genres = gr.Dropdown(choices=s.genres, multiselect=True, label="Genres (optional)",
                             interactive=text_on)
    with gr.Row():
        add_btn = gr.Button("Add to my catalog", variant="primary", interactive=text_on)
        forget_btn = gr.Button("Forget my new items")
    new_status = gr.Markdown(elem_classes="notice")
    new_table = gr.Dataframe(headers=NEW_ITEM_COLUMNS, value=None, interactive=False,
                             label="This session's new items")
    return dict(new_title=new_title, new_year=new_year, new_desc=new_desc, new_genres=new_genres,
                add_btn=add_btn, forget_btn=forget_btn, new_status=new_status, new_table=new_table)


def _about_tab(s: Service, checkpoint: str) -> None:
    """The About tab: the method, this server's setup, the model card and its metrics."""
    gr.Markdown(METHOD)
    gr.Markdown(_setup_note(s, checkpoint))
    with gr.Accordion("Model card", open=True):
        gr.Markdown(s.model_card())
    with gr.Accordion("metrics.json", open=False):
        gr.JSON(s.metrics())


def _wire_events(cb: Callbacks, ui: SimpleNamespace) -> None:
    """Every event of the page, each with an API name, and the batched API endpoints."""
    model = dict(concurrency_limit=MODEL_CONCURRENCY, concurrency_id="model")
    light = dict(concurrency_limit=4, show_progress="hidden")
    # one search in flight at a time, then one more with what is typed by then
    ui.search.input(cb.search_titles, ui.search, ui.matches, api_name="search_titles", trigger_mode="always_last",
                    **light)
    added = [ui.history, ui.matches]
    ui.matches.select(cb.pick_title, ui.history, added, api_name="add_to_history", **light)
    ui.search.submit(cb.pick_first_match, [ui.history, ui.search], added, api_name="add_first_match", **light)
    ui.history.change(cb.history_table, ui.history, ui.history_table, api_name="history_table", **light)
    # Enter in the history box (where nothing can be typed) adds an empty entry: the page drops it
    ui.history.key_up(None, ui.history, ui.history, js=DROP_BLANK, api_name="drop_blank")
    picked = [ui.history, ui.status]
    ui.load_user.click(cb.load_user, ui.user_id, picked, api_name="load_user", **light)
    ui.user_id.submit(cb.load_user, ui.user_id, picked, api_name="load_user_submit", **light)
    reset = [ui.history, ui.user_id, ui.status]
    ui.random_user.click(cb.random_user, None, reset, api_name="random_user", **light)
    ui.clear.click(cb.clear, None, reset, api_name="clear_history", **light)

    inputs = [ui.history, ui.intention, ui.rho, ui.w, ui.steps, ui.k, ui.seed, ui.new_items]
    # the map's marks and the ρ sweep are asked for side by side: neither waits for the other. The
    # page sends one trigger's events one after another, each once the previous has answered, but
    # the events that follow a finished one all at once: hence a first step in the page itself
    clicks = [ui.go_btn.click, ui.intention.submit]
    go = gr.on(clicks, None, None, None, js="() => []", api_name="recommend_click")
    go.then(cb.explore, inputs, [ui.results, ui.map_marks, ui.status], api_name="explore",
            **model).then(None, ui.map_marks, None, js=DRAW_MAP, api_name="draw_map")
    go.then(cb.sweep_view, inputs, ui.sweep_plot, api_name="sweep_view", show_progress="minimal",
            **model)

    ui.add_btn.click(cb.add_item, [ui.new_title, ui.new_desc, ui.new_genres, ui.new_year, ui.new_items],
                     [ui.new_items, ui.new_table, ui.new_status, ui.new_title, ui.new_desc],
                     api_name="add_item", concurrency_limit=1)
    ui.forget_btn.click(cb.clear_items, None, [ui.new_items, ui.new_table, ui.new_status],
                        api_name="forget_items", **light)

    # no limit here: each request waits in the batcher, which answers the waiting ones together
    api = dict(concurrency_limit=None, concurrency_id="api")
    gr.api(cb.recommend_api, api_name="recommend", **api)
    gr.api(cb.sweep_api, api_name="sweep", **api)


def _setup_note(s, checkpoint) -> str:
    proj = s.projection
    cfg = s.rec.config
    return (
        "### This server\n"
        f"- Checkpoint `{checkpoint}`: text model `{cfg['text'].get('name', cfg['text']['backend'])}` "
        f"({cfg['text']['dim']}-d), transform `{cfg['transform']}`, T = {s.rec.T}, history window "
        f"{s.rec.history_len}, defaults w = {s.rec.default_w:g}, ρ = {s.rec.default_rho:g}.\n"
        f"- UMAP coordinates from `{proj.source}` with {json.dumps(PARAMS)}; new points "
        "(intention, oracle, path, new items) are placed by a k-NN average of the catalog's "
        "coordinates. The map's catalog layer comes once with the page (a sample of it beyond "
        f"{figures.MAP_POINTS:,} items); a click sends only its marks.\n"
        "- Your new items live in this browser tab's session only.")
