"""A checkpoint's guidance defaults (config.json's "guidance"), read in one place with one set of
fallbacks and one set of checks: what a request gets when it names no w or ρ, and the slider's top."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from idream.core.checks import first, number_problem, string_problem
from idream.core.steer import STEER_RANGE
from idream.serving.request import MAX_GUIDANCE

NUMBERS = ("w", "rho", "kappa", "rho_max")


@dataclass(frozen=True)
class Guidance:
    """w and ρ chosen on validation, κ (the learned term's weight per unit of ρ) and the slider's
    top chosen on the dev half; a key a config lacks takes the value a fresh model would use."""

    w: float = 0.0  # the history alone, unstrengthened
    rho: float = 0.0  # the intention ignored until a ρ was chosen
    kappa: float = 0.5  # TrainConfig's default
    rho_max: float = STEER_RANGE[1]  # the slider runs to the intention alone
    mode: str | None = None  # "turn": ρ turns the oracle toward the intention's text (None: no intentions)
    # how they were chosen (chosen_on, the validation grids), kept as written
    record: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        """Refuse what no request could be answered with, naming the field; numbers become floats."""
        lo, hi = STEER_RANGE
        problem = first(*(number_problem(f"guidance.{k}", getattr(self, k), -MAX_GUIDANCE, MAX_GUIDANCE)
                          for k in NUMBERS),
                        None if self.mode is None else string_problem("guidance.mode", self.mode))
        if problem is None and not lo <= self.rho <= hi:
            problem = f"guidance.rho = {self.rho!r}: it must be between {lo:g} and {hi:g}"
        if problem is None and self.rho and self.mode != "turn":  # (a model without intentions keeps ρ = 0)
            problem = ("guidance: made with the paper's learned ρ (a weight on the learned guidance term "
                       "alone), which this version no longer serves; retrain the model, or apply "
                       "results/experiments/learned-guidance.patch")
        if problem is None and not (self.rho <= self.rho_max <= hi and self.rho_max > lo):
            problem = (f"guidance.rho_max = {self.rho_max!r}: the slider's top, between the default ρ "
                       f"and {hi:g}")
        if problem:
            raise ValueError(problem)
        for k in NUMBERS:
            object.__setattr__(self, k, float(getattr(self, k)))

    @classmethod
    def from_dict(cls, d: dict) -> "Guidance":
        """From config.json's "guidance": the settings typed, the rest kept as the record."""
        names = {f.name for f in fields(cls)} - {"record"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   record={k: v for k, v in d.items() if k not in names})

    @classmethod
    def of(cls, config: dict) -> "Guidance":
        """From a checkpoint config (read at every use: training and `guidance` rewrite it)."""
        return cls.from_dict(config.get("guidance") or {})

    def to_dict(self) -> dict:
        """The settings, then the record (a mode of None is left out)."""
        d = {k: getattr(self, k) for k in ("w", "rho", "mode", "kappa", "rho_max")}
        return {k: v for k, v in d.items() if v is not None} | self.record
