"""Plotly figures: the catalog in two UMAP panels with the request drawn on top, and the ρ sweep.

Builders take plain arrays and lists (no Gradio, no recommender), so they are easy to test.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

SPACES = ("raw", "whitened")
PANEL_TITLES = {"raw": "raw text embeddings E", "whitened": "item vectors z (the model's scoring space)"}
PALETTE = qualitative.Dark24 + qualitative.Light24
MARK = {  # overlay name -> marker style
    "history": dict(symbol="square", size=11, color="#111111", line=dict(width=1.5, color="white")),
    "top-K": dict(symbol="diamond", size=11, color="#e8590c", line=dict(width=1.5, color="white")),
    "new items": dict(symbol="triangle-up", size=12, color="#2b8a3e", line=dict(width=1, color="white")),
    "intention": dict(symbol="x", size=15, color="#c2255c", line=dict(width=1, color="white")),
    "oracle": dict(symbol="star", size=20, color="#fab005", line=dict(width=1.5, color="#111111")),
}
# Catalog points per panel beyond which the layer is drawn with WebGL (Scattergl): every click
# redraws the map, and on this machine's headless Chromium the SVG layer of ml-100k's 1,682 items
# took 0.2-1.1 s a redraw where WebGL took 0.05-0.3 s.
GL_ABOVE = 1_000
MAP_POINTS = 20_000  # catalog points per panel at most: beyond, a seeded sample is drawn


@dataclass
class Marks:
    """What to draw over the catalog; every position is given per space as (n, 2) arrays."""

    history: list[int] = field(default_factory=list)  # catalog rows, oldest first
    top: list[int] = field(default_factory=list)  # catalog rows of the top-K, best first
    top_ranks: list[int] = field(default_factory=list)  # their ranks (defaults to 1, 2, ...)
    intention: dict | None = None  # space -> (1, 2)
    oracle: dict | None = None  # space -> (1, 2)
    path: dict | None = None  # space -> (S, 2), x̂0 at each drawn DDIM step; the last is the oracle
    path_steps: list[int] = field(default_factory=list)  # the DDIM timestep of each path point
    new_items: dict | None = None  # space -> (m, 2)
    new_titles: list[str] = field(default_factory=list)
    new_ranks: list[int | None] = field(default_factory=list)  # their ranks, when known


def primary_genre(genres) -> str:
    return genres[0] if genres else "unknown"


def _hover(titles, genres) -> list[str]:
    return [f"{t}<br><i>{', '.join(g) or 'no genre'}</i>" for t, g in zip(titles, genres)]


def catalog_rows(n: int, max_points: int = MAP_POINTS, seed: int = 0) -> np.ndarray:
    """The catalog rows drawn on the map: all of them, or a seeded sample of max_points (the same
    rows in both panels) where more dots would only pile up.  -> sorted (m,)"""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def embedding_figure(coords: dict, titles: list[str], genres: list, marks: Marks | None = None,
                     subtitle: str = "", height: int = 560, max_points: int = MAP_POINTS) -> go.Figure:
    """Raw and whitened UMAP panels side by side, catalog coloured by (first) genre, with the
    marks on top. Above GL_ABOVE drawn points the catalog layer is WebGL; above max_points items,
    a sample of them (said in the subtitle)."""
    n = len(titles)
    rows = catalog_rows(n, max_points)
    if len(rows) < n:
        subtitle = "; ".join([s for s in (subtitle, f"a sample of {len(rows):,} of the {n:,} items drawn") if s])
    fig = _panels(subtitle, height)
    hover = np.array(_hover([titles[i] for i in rows], [genres[i] for i in rows]), dtype=object)
    first = np.array([primary_genre(genres[i]) for i in rows], dtype=object)
    order = sorted(set(first), key=lambda g: (-int((first == g).sum()), g))
    Trace = go.Scattergl if len(rows) > GL_ABOVE else go.Scatter
    for col, space in enumerate(SPACES, 1):
        xy = np.round(np.asarray(coords[space], dtype=np.float64)[rows], 3)
        for gi, g in enumerate(order):
            sel = np.flatnonzero(first == g)
            fig.add_trace(Trace(
                x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=g, legendgroup=f"genre:{g}",
                showlegend=col == 1, text=hover[sel], hovertemplate="%{text}<extra></extra>",
                marker=dict(size=5 if len(rows) <= 5_000 else 3, color=PALETTE[gi % len(PALETTE)],  # dense: smaller
                            opacity=0.45),
                meta={"space": space, "role": "catalog"}, xaxis="x" if col == 1 else f"x{col}",
                yaxis="y" if col == 1 else f"y{col}"))
    if marks is not None:
        _add_marks(fig, coords, titles, marks)
    return fig


def overlay_figure(coords: dict, titles: list[str], marks: Marks | None = None, subtitle: str = "",
                   height: int = 560) -> "FigureJSON":
    """The marks alone, on the same two panels: what a click sends. The page keeps the catalog
    layer it loaded once and draws these over it (demo/app.py, DRAW_MAP)."""
    layout = _panels_layout(height)
    layout["title"] = _title(MAP_TITLE, subtitle)
    return FigureJSON(_mark_traces(coords, titles, marks) if marks is not None else [], layout)


class FigureJSON:
    """A plotly figure kept as plain JSON-ready lists and dicts. Built and sent in milliseconds
    where plotly's validated objects took a third of a second a click; gr.Plot sends it as it
    sends a go.Figure (by its to_json), and `figure()` gives the validated go.Figure."""

    def __init__(self, data: list[dict], layout: dict):
        self.data, self.layout = data, layout

    def to_dict(self) -> dict:
        return {"data": self.data, "layout": self.layout}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def figure(self) -> go.Figure:
        return go.Figure(self.to_dict())


MAP_TITLE = "The catalog in UMAP: raw text embeddings vs the model's item vectors"


def _title(title: str, subtitle: str) -> dict:
    return dict(text=f"{title}<br><sup>{subtitle}</sup>" if subtitle else title, x=0.01)


@functools.lru_cache(maxsize=8)
def _subplots_json(cols: int, titles: tuple, spacing: float, widths: tuple | None = None) -> str:
    """make_subplots' layout (axis domains, panel titles) as JSON, made once: it costs a tenth
    of a second each time."""
    fig = make_subplots(rows=1, cols=cols, subplot_titles=list(titles), horizontal_spacing=spacing,
                        column_widths=list(widths) if widths else None)
    return json.dumps(fig.layout.to_plotly_json())


def _panels_layout(height: int) -> dict:
    """The two UMAP panels' layout, without a title.  -> a fresh dict"""
    layout = json.loads(_subplots_json(2, tuple(PANEL_TITLES[s] for s in SPACES), 0.04))
    for axis in ("xaxis", "xaxis2", "yaxis", "yaxis2"):
        layout[axis].update(showticklabels=False, showgrid=False, zeroline=False)
    layout.update(height=height, margin=dict(l=10, r=10, t=80, b=10), legend=dict(itemsizing="constant"),
                  hoverlabel=dict(namelength=-1), plot_bgcolor="white")
    return layout


def _panels(subtitle: str, height: int) -> go.Figure:
    """The two empty UMAP panels with their titles and layout."""
    layout = _panels_layout(height)
    layout["title"] = _title(MAP_TITLE, subtitle)
    return go.Figure(layout=layout)


def _add_marks(fig, coords: dict, titles, marks: Marks) -> None:
    fig.add_traces(_mark_traces(coords, titles, marks))


def _mark_traces(coords: dict, titles, marks: Marks) -> list[dict]:
    return [t for col, space in enumerate(SPACES, 1) for t in _overlays(marks, coords[space], titles, space, col)]


def _xy(p, catalog: bool) -> tuple[list, list]:
    """x and y lists of (n, 2) positions; catalog rows rounded as the catalog layer is, so a mark
    sits exactly on its dot."""
    p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
    p = np.round(p, 3) if catalog else p
    return p[:, 0].tolist(), p[:, 1].tolist()


def _overlays(marks: Marks, coords, titles, space: str, col: int) -> list[dict]:
    """History, top-K, new items, denoising path, intention and oracle on one panel, as traces."""
    traces = []
    axes = dict(xaxis="x" if col == 1 else f"x{col}", yaxis="y" if col == 1 else f"y{col}")

    def add(name, p, text, **kw):
        x, y = _xy(p, catalog=name in ("history", "top-K"))
        traces.append(dict(type="scatter", x=x, y=y, name=name, legendgroup=name, showlegend=col == 1,
                           text=text, hovertemplate="%{text}<extra></extra>",
                           meta={"space": space, "role": name}, **axes, **kw))

    if marks.history:
        h = list(marks.history)
        add("history", np.asarray(coords)[h], [f"history #{n}: {titles[i]}" for n, i in enumerate(h, 1)],
            mode="markers", marker=MARK["history"])
    if marks.top:
        ranks = marks.top_ranks or list(range(1, len(marks.top) + 1))
        t = list(marks.top)
        add("top-K", np.asarray(coords)[t], [f"#{r}: {titles[i]}" for r, i in zip(ranks, t)],
            mode="markers+text", textposition="top center", textfont=dict(size=10),
            marker=MARK["top-K"], texttemplate=[str(r) for r in ranks])
    if marks.new_items is not None and len(marks.new_titles):
        text = [f"new: {t}" + (f" (#{r:,})" if r else "") for t, r in
                zip(marks.new_titles, marks.new_ranks or [None] * len(marks.new_titles))]
        add("new items", marks.new_items[space], text, mode="markers", marker=MARK["new items"])
    if marks.path is not None:
        p = np.asarray(marks.path[space])
        steps = marks.path_steps or list(range(len(p)))
        add("denoising path", p, [f"x̂0 at t={t}" for t in steps], mode="lines+markers",
            line=dict(color="#495057", width=1.5, dash="dot"),
            marker=dict(size=np.linspace(4, 9, len(p)).round(2).tolist(), color="#495057"))
    if marks.intention is not None:
        add("intention", marks.intention[space], ["intention"], mode="markers", marker=MARK["intention"])
    if marks.oracle is not None:
        add("oracle", marks.oracle[space], ["oracle x̂0 (the generated ideal item)"], mode="markers",
            marker=MARK["oracle"])
    return traces


def sweep_figure(sweep: dict, k: int, subtitle: str = "", height: int | None = None) -> "FigureJSON":
    """Left: rank of every item that enters the top-K at some ρ; right: oracle similarities vs ρ."""
    rhos = [float(r) for r in sweep["rho"]]
    ranks: dict[str, dict[float, int]] = {}  # item id -> {ρ: rank}
    labels: dict[str, str] = {}
    for rho, rows in zip(rhos, sweep["items"]):
        for row in rows:
            key = str(row["item_id"])
            labels.setdefault(key, _row_label(row))
            ranks.setdefault(key, {})[rho] = int(row["rank"])
    # order: by mean rank over the grid, an absence counting as K + 1
    items = sorted(ranks, key=lambda t: np.mean([ranks[t].get(r, k + 1) for r in rhos]))
    z = [[ranks[t].get(r) for r in rhos] for t in items]
    text = [[("" if v is None else str(v)) for v in row] for row in z]
    names, used = [], set()
    for t in items:  # unique row names: the catalog has a few titles listed twice
        name = _short(labels[t])
        name = name if name not in used else f"{name} [#{t}]"
        used.add(name)
        names.append(name)
    layout = json.loads(_subplots_json(2, (f"rank in the top-{k} at each ρ", "oracle similarity vs ρ"),
                                       0.14, (0.62, 0.38)))
    data = [dict(type="heatmap", x=[f"{r:g}" for r in rhos], y=names, z=z, text=text, xaxis="x", yaxis="y",
                 texttemplate="%{text}", colorscale="YlOrRd", reversescale=True, zmin=1, zmax=max(k, 2),
                 showscale=False, hoverongaps=False, xgap=1, ygap=1, name="rank",
                 hovertemplate="ρ=%{x}<br>%{y}<br>rank %{z}<extra></extra>")]
    for key, name, color in (("intention_similarity", "cos(oracle, intention)", "#c2255c"),
                             ("history_similarity", "cos(oracle, mean history)", "#111111")):
        vals = sweep.get(key) or []
        if any(v is not None for v in vals):
            data.append(dict(type="scatter", x=rhos, y=list(vals), name=name, mode="lines+markers",
                             line=dict(color=color), xaxis="x2", yaxis="y2"))
    layout["yaxis"].update(autorange="reversed", tickfont=dict(size=10))
    layout["xaxis"].update(title=dict(text="ρ (intention strength)"), type="category")
    layout["xaxis2"].update(title=dict(text="ρ"))
    layout["yaxis2"].update(title=dict(text="cosine similarity"))
    layout.update(
        title=_title("What ρ does: one batched generation per ρ from the same noise", subtitle),
        height=height or max(380, 120 + 18 * len(items)), margin=dict(l=10, r=10, t=80, b=10),
        legend=dict(orientation="h", x=1, xanchor="right", y=-0.12), plot_bgcolor="white")
    return FigureJSON(data, layout)


def _row_label(row: dict) -> str:
    new = " [new]" if row.get("new") else ""
    return f"{row['title']} ({row['year']}){new}" if row.get("year") else f"{row['title']}{new}"


def _short(s: str, n: int = 42) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def message_figure(message: str, height: int = 260) -> go.Figure:
    """An empty figure that says why there is nothing to draw yet."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#555"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white")
    return fig
