"""Plotly figures: the catalog in two UMAP panels with the request drawn on top, and the ρ sweep.

Builders take plain arrays and lists (no Gradio, no recommender), so they are easy to test.
"""

from __future__ import annotations

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
GL_ABOVE = 5_000  # catalog points per panel beyond which the layer is drawn with WebGL (Scattergl)
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
                marker=dict(size=5 if len(rows) <= GL_ABOVE else 3, color=PALETTE[gi % len(PALETTE)],
                            opacity=0.45),
                meta={"space": space, "role": "catalog"}), row=1, col=col)
    if marks is not None:
        _add_marks(fig, coords, titles, marks)
    return fig


def overlay_figure(coords: dict, titles: list[str], marks: Marks | None = None, subtitle: str = "",
                   height: int = 560) -> go.Figure:
    """The marks alone, on the same two panels: what a click sends. The page keeps the catalog
    layer it loaded once and draws these over it (demo/app.py, DRAW_MAP)."""
    fig = _panels(subtitle, height)
    if marks is not None:
        _add_marks(fig, coords, titles, marks)
    return fig


def _panels(subtitle: str, height: int) -> go.Figure:
    """The two empty UMAP panels with their titles and layout."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[PANEL_TITLES[s] for s in SPACES],
                        horizontal_spacing=0.04)
    title = "The catalog in UMAP: raw text embeddings vs the model's item vectors"
    fig.update_layout(
        title=dict(text=f"{title}<br><sup>{subtitle}</sup>" if subtitle else title, x=0.01),
        height=height, margin=dict(l=10, r=10, t=80, b=10), legend=dict(itemsizing="constant"),
        hoverlabel=dict(namelength=-1), plot_bgcolor="white")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    return fig


def _add_marks(fig, coords: dict, titles, marks: Marks) -> None:
    for col, space in enumerate(SPACES, 1):
        _overlays(fig, marks, coords[space], titles, space, col)


def _overlays(fig, marks: Marks, coords, titles, space: str, col: int) -> None:
    """History, top-K, new items, denoising path, intention and oracle on one panel."""
    def xy(rows):  # (n, 2) catalog positions of a few rows, rounded as the catalog layer is
        return np.round(np.asarray(coords)[rows].astype(np.float64), 3)

    def add(name, x, y, text, **kw):
        fig.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=name, showlegend=col == 1,
                                 text=text, hovertemplate="%{text}<extra></extra>",
                                 meta={"space": space, "role": name}, **kw), row=1, col=col)

    if marks.history:
        h = list(marks.history)
        p = xy(h)
        add("history", p[:, 0], p[:, 1], [f"history #{n}: {titles[i]}" for n, i in enumerate(h, 1)],
            mode="markers", marker=MARK["history"])
    if marks.top:
        ranks = marks.top_ranks or list(range(1, len(marks.top) + 1))
        t = list(marks.top)
        p = xy(t)
        add("top-K", p[:, 0], p[:, 1], [f"#{r}: {titles[i]}" for r, i in zip(ranks, t)],
            mode="markers+text", textposition="top center", textfont=dict(size=10),
            marker=MARK["top-K"], texttemplate=[str(r) for r in ranks])
    if marks.new_items is not None and len(marks.new_titles):
        p = np.asarray(marks.new_items[space])
        text = [f"new: {t}" + (f" (#{r:,})" if r else "") for t, r in
                zip(marks.new_titles, marks.new_ranks or [None] * len(marks.new_titles))]
        add("new items", p[:, 0], p[:, 1], text, mode="markers", marker=MARK["new items"])
    if marks.path is not None:
        p = np.asarray(marks.path[space])
        steps = marks.path_steps or list(range(len(p)))
        add("denoising path", p[:, 0], p[:, 1], [f"x̂0 at t={t}" for t in steps], mode="lines+markers",
            line=dict(color="#495057", width=1.5, dash="dot"),
            marker=dict(size=np.linspace(4, 9, len(p)), color="#495057"))
    if marks.intention is not None:
        p = np.asarray(marks.intention[space])
        add("intention", p[:, 0], p[:, 1], ["intention"], mode="markers", marker=MARK["intention"])
    if marks.oracle is not None:
        p = np.asarray(marks.oracle[space])
        add("oracle", p[:, 0], p[:, 1], ["oracle x̂0 (the generated ideal item)"], mode="markers",
            marker=MARK["oracle"])


def sweep_figure(sweep: dict, k: int, subtitle: str = "", height: int | None = None) -> go.Figure:
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
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.14,
                        subplot_titles=[f"rank in the top-{k} at each ρ", "oracle similarity vs ρ"])
    fig.add_trace(go.Heatmap(
        x=[f"{r:g}" for r in rhos], y=names, z=z, text=text,
        texttemplate="%{text}", colorscale="YlOrRd", reversescale=True, zmin=1, zmax=max(k, 2),
        showscale=False, hoverongaps=False, xgap=1, ygap=1, name="rank",
        hovertemplate="ρ=%{x}<br>%{y}<br>rank %{z}<extra></extra>"), row=1, col=1)
    for key, name, color in (("intention_similarity", "cos(oracle, intention)", "#c2255c"),
                             ("history_similarity", "cos(oracle, mean history)", "#111111")):
        vals = sweep.get(key) or []
        if any(v is not None for v in vals):
            fig.add_trace(go.Scatter(x=rhos, y=vals, name=name, mode="lines+markers",
                                     line=dict(color=color)), row=1, col=2)
    fig.update_yaxes(autorange="reversed", row=1, col=1, tickfont=dict(size=10))
    fig.update_xaxes(title_text="ρ (intention strength)", row=1, col=1, type="category")
    fig.update_xaxes(title_text="ρ", row=1, col=2)
    fig.update_yaxes(title_text="cosine similarity", row=1, col=2)
    title = "What ρ does: one batched generation per ρ from the same noise"
    fig.update_layout(
        title=dict(text=f"{title}<br><sup>{subtitle}</sup>" if subtitle else title, x=0.01),
        height=height or max(380, 120 + 18 * len(items)), margin=dict(l=10, r=10, t=80, b=10),
        legend=dict(orientation="h", x=1, xanchor="right", y=-0.12), plot_bgcolor="white")
    return fig


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
