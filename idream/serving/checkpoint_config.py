"""A checkpoint's config.json, typed: one CheckpointConfig built and checked once where a
checkpoint is read (`from_dict`), written back as the same JSON (`to_dict`).

Its parts are the config dataclasses of what they configure (ModelConfig, DiffusionConfig,
Guidance, NewItemRule), each refusing a wrong value with a one-line message that names the field;
the text model and the catalog get small classes here. The training settings ("train") and the
training log stay the JSON objects training wrote: idream.training reads them (TrainConfig sits
below this folder, and the section keeps the command and retired knobs that TrainConfig drops).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from idream.core.checks import first, number_problem, string_problem
from idream.core.diffusion import DiffusionConfig
from idream.core.model import ModelConfig
from idream.core.newitems import NewItemRule
from idream.core.transform import KINDS
from idream.data.catalog import DESCRIPTION_SOURCES
from idream.serving.guidance import Guidance

FORMAT = "idream-checkpoint-v1"
REQUIRED = ("format", "model", "diffusion", "transform", "text", "data")
OBJECTS = ("model", "diffusion", "text", "data", "guidance", "train", "train_log", "new_items")
STRINGS = ("idream_version", "items_fingerprint", "cache_dir")


@dataclass
class TextConfig:
    """config.json's "text": the text model the item vectors came from, and the texts it read."""

    backend: str  # the text model as asked for (minilm, hash:32, openai:MODEL)
    dim: int  # the text vectors' dimension
    name: str | None = None  # the text model's own name (e.g. its Hub id)
    descriptions: str = "template"  # the item texts: from metadata (template) or written by an LLM
    record: dict = field(default_factory=dict)  # how the texts were made (template and prompt versions)

    def __post_init__(self):
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise ValueError("text.backend (the text model, e.g. 'minilm') is missing or not a string")
        if number_problem("text.dim", self.dim, 1, integer=True):
            raise ValueError("text.dim (the text vectors' dimension) is missing or not a positive integer")
        problem = first(None if self.name is None else string_problem("text.name", self.name),
                        string_problem("text.descriptions", self.descriptions))
        if problem:
            raise ValueError(problem)
        if self.descriptions not in DESCRIPTION_SOURCES:
            raise ValueError(f"text.descriptions: unknown description source {self.descriptions!r}; "
                             "upgrade iDream or retrain")

    @classmethod
    def from_dict(cls, d: dict) -> "TextConfig":
        return _typed(cls, d)

    def to_dict(self) -> dict:
        return _plain(self)


@dataclass
class DataConfig:
    """config.json's "data": the catalog the model was trained on."""

    dataset: str  # ml-100k or a dataset folder
    cold_items: tuple = ()  # catalog rows held out of training (the cold-start protocol)
    record: dict = field(default_factory=dict)  # the catalog as it was: name, size, split, item kind

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError("data.dataset (the catalog the model was trained on) is missing or not a string")
        if not isinstance(self.cold_items, (list, tuple)) or any(
                number_problem("", i, 0, integer=True) for i in self.cold_items):
            raise ValueError(f"data.cold_items = {self.cold_items!r} is not a list of catalog rows")
        self.cold_items = tuple(self.cold_items)

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        return _typed(cls, d)

    def to_dict(self) -> dict:
        return _plain(self) | {"cold_items": list(self.cold_items)}


@dataclass
class CheckpointConfig:
    """Everything config.json holds: what rebuilds the model, what it was trained on and how, and
    the defaults chosen after training. A section a config lacks is None (guidance, new_items:
    their defaults apply; see `Recommender.guidance` and `.new_item_rule`)."""

    model: ModelConfig
    diffusion: DiffusionConfig
    transform: str  # the map of the text vectors (idream.core.transform.KINDS)
    text: TextConfig
    data: DataConfig
    guidance: Guidance | None = None
    new_items: NewItemRule | None = None
    train: dict | None = None  # TrainConfig's fields and the command, as trained (idream.training reads it)
    train_log: dict | None = None  # validation per epoch, how the run ended
    format: str = FORMAT
    idream_version: str | None = None
    items_fingerprint: str | None = None  # of the catalog's item ids (idream.serving.checkpoint)
    cache_dir: str | None = None  # the embedding cache of this session (never saved)
    # the keys of each section in the order read ("": the top level), so to_dict writes them back as
    # they were: a field a section lacked stays out while it holds its default
    layout: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.format != FORMAT:
            raise ValueError(f"format {self.format!r}, expected {FORMAT!r}; retrain the checkpoint")
        problem = first(string_problem("transform", self.transform),
                        *(None if getattr(self, k) is None else string_problem(k, getattr(self, k))
                          for k in STRINGS))
        if problem:
            raise ValueError(problem)
        if self.transform not in KINDS:
            raise ValueError(f"unknown transform {self.transform!r} (one of {', '.join(KINDS)})")
        if self.text.dim != self.model.dim:
            raise ValueError(f"text dimension {self.text.dim} does not match the model's {self.model.dim}; "
                             "the config was edited or mixed up; retrain")

    @classmethod
    def from_dict(cls, d: dict) -> "CheckpointConfig":
        """Built from config.json's object, every part checked: a ValueError names what is wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"a checkpoint config is a JSON object, not {type(d).__name__}")
        names = {f.name for f in fields(cls)} - {"layout"}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}: written by another version of iDream; "
                             "upgrade iDream or retrain the checkpoint")
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ValueError(f"lacks {missing}: the checkpoint is incomplete; retrain it")
        if d["format"] != FORMAT:  # before the sections: another format may hold anything
            raise ValueError(f"format {d['format']!r}, expected {FORMAT!r}; retrain the checkpoint")
        for k in OBJECTS:
            if k in d and not isinstance(d[k], dict):
                raise ValueError(f"{k!r} must be a JSON object, not {type(d[k]).__name__}")
        parts = {"model": ModelConfig.from_dict, "diffusion": DiffusionConfig.from_dict,
                 "text": TextConfig.from_dict, "data": DataConfig.from_dict,
                 "guidance": Guidance.from_dict, "new_items": NewItemRule.from_dict}
        layout = {"": tuple(d), **{k: tuple(d[k]) for k in parts if k in d}}
        return cls(**{k: parts[k](v) if k in parts else v for k, v in d.items()}, layout=layout)

    def to_dict(self) -> dict:
        """The JSON object from_dict was built from: to_dict(from_dict(d)) == d."""
        sections = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layout"}
        out = {}
        for k, v in sections.items():
            if v is not None and hasattr(v, "to_dict"):
                v = _as_read(v.to_dict(), _defaults(type(v)), self.layout.get(k))
            out[k] = v
        return _as_read({k: v for k, v in out.items() if v is not None}, {}, self.layout.get(""))


def _typed(cls, d: dict):
    """A section class from its JSON object: its fields typed, the other keys its record (a field
    without a default that the object lacks is None, which the class refuses by name)."""
    names = {f.name for f in fields(cls)} - {"record"}
    required = {f.name: None for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    return cls(**(required | {k: v for k, v in d.items() if k in names}),
               record={k: v for k, v in d.items() if k not in names})


def _plain(obj) -> dict:
    """A section's fields (None left out), then its record."""
    d = {f.name: getattr(obj, f.name) for f in fields(obj) if f.name != "record"}
    return {k: v for k, v in d.items() if v is not None} | obj.record


def _defaults(cls) -> dict:
    """Each field's default (fields without one are left out)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def _as_read(values: dict, defaults: dict, keys) -> dict:
    """values in the order their keys were read, then those added since; a field the section
    lacked stays out while it holds its default (keys None: made here, every value is written)."""
    if keys is None:
        return values
    out = {k: values[k] for k in keys if k in values}
    out.update((k, v) for k, v in values.items()
               if k not in out and not (k in defaults and _same(v, defaults[k])))
    return out


def _same(v, default) -> bool:
    return list(v) == list(default) if isinstance(default, tuple) else v == default
