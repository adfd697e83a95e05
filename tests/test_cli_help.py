"""The command line explains itself: every flag has words, `train --help` is grouped and short."""

import argparse
import dataclasses
import os
import re
import subprocess
import sys

import pytest

from benchmarks import cli as bench_cli
from idream import cli
from idream.training.train import TrainConfig

# knobs that are research-only (off in the shipped model, or always on): `train --help` must keep
# them under "advanced", out of a newcomer's way
RESEARCH_KNOBS = ("residual_scale", "max_train_samples", "future_decay",
                  "p_intention", "intention_pool", "tau", "ce_weight", "p_uncond", "future_k",
                  "encoder_depth")
GROUP_TITLES = ["data", "text", "model", "diffusion", "training", "budget", "output", "advanced"]
# a few flags and the group a newcomer looks for them in
WHERE = {"--dataset": "data", "--history-len": "data", "--text-model": "text", "--tem-dim": "text",
         "--descriptions": "text", "--width": "model", "--depth": "model", "--heads": "model",
         "--dropout": "model", "--T": "diffusion", "--schedule": "diffusion",
         "--p-t-max": "diffusion", "--lr": "training", "--seq-batch-size": "training",
         "--epochs": "training", "--patience": "training", "--seed": "training",
         "--threads": "training", "--device": "training", "--max-minutes": "budget",
         "--out": "output", "--cache-dir": "output", "--no-eval": "output", "--quiet": "output"}


def walk(parser, path=()):
    """(path, parser) for the parser and every subcommand under it, at any depth."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, path + (name,))


def words(text: str) -> list[str]:
    """The words of a help text once its "(default: ...)" parts are gone."""
    return re.findall(r"[A-Za-z]{2,}", re.sub(r"\(default[^)]*\)", "", text))


def test_every_flag_of_every_command_says_what_it_does():
    parsers = list(walk(cli.build_parser())) + list(walk(bench_cli.build_parser(), ("benchmarks",)))
    assert any(len(path) == 2 for path, _ in parsers), "the walk must reach sub-subcommands"
    bad, seen = [], 0
    for path, parser in parsers:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):  # each subcommand has a line too
                for choice in action._choices_actions:
                    if len(words(choice.help or "")) < 2:
                        bad.append(f"{' '.join(path + (choice.dest,))}: {choice.help!r}")
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            seen += 1
            name = " ".join(path) + " " + "/".join(action.option_strings or [action.dest])
            if not action.help or action.help == argparse.SUPPRESS:
                bad.append(f"{name}: no help")
                continue
            text = formatter._expand_help(action)  # also checks the %(default)s placeholders
            if len(words(text)) < 2:
                bad.append(f"{name}: {text!r}")
    assert seen > 60
    assert not bad, "flags without words:\n" + "\n".join(bad)


def train_parser():
    (sub,) = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices["train"]


def test_every_train_config_field_has_a_flag_with_words_from_help():
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    helps = cli.train.train_help()  # the words written beside each field
    assert set(helps) == names and all(helps.values())
    assert set(cli.train.NO_FLAG) <= names
    t = train_parser()
    by_dest = {a.dest: a for a in t._actions}
    defaults = TrainConfig()
    for name in sorted(names - set(cli.train.NO_FLAG)):
        assert len(words(helps[name])) >= 3, name
        action = by_dest.get(name)
        assert action is not None and action.option_strings, f"no flag for TrainConfig.{name}"
        assert action.help.startswith(helps[name]), name
        if name == "item_residual":  # the flag turns the field off
            assert action.option_strings == ["--no-residual"] and action.default is True
            continue
        assert "--" + name.replace("_", "-") in action.option_strings
        assert action.default == getattr(defaults, name), name
        assert "%(default)s" in action.help, name
    assert by_dest["text_model"].option_strings == ["--text-model", "--tem"]


def test_train_flags_parse_as_before():
    a = cli.build_parser().parse_args(["train", "--out", "x"])
    for f in dataclasses.fields(TrainConfig):
        if f.name not in cli.train.NO_FLAG:
            assert getattr(a, f.name) == getattr(TrainConfig(), f.name), f.name
    assert (a.out, a.cache_dir, a.no_eval, a.quiet, a.tem_dim) == ("x", None, False, False, None)
    a = cli.build_parser().parse_args(
        ["train", "--out", "x", "--tem", "hash:32", "--no-residual",
         "--T", "100", "--lr", "0.003", "--descriptions", "llm", "--clock", "cpu", "--no-eval"])
    assert (a.text_model, a.item_residual, a.T, a.lr, a.descriptions, a.clock,
            a.no_eval) == ("hash:32", False, 100, 0.003, "llm", "cpu", True)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--out", "x", "--descriptions", "bogus"])


def test_a_field_without_help_stops_the_parser(monkeypatch):
    import idream.training.train

    # a new field, as someone adding a knob to TrainConfig would: no words, no group
    new = dataclasses.make_dataclass("TrainConfig", [("new_knob", int, 3)], bases=(TrainConfig,))
    monkeypatch.setattr(idream.training.train, "TrainConfig", new)
    with pytest.raises(RuntimeError, match="new_knob"):
        cli.build_parser()
    worded = dataclasses.make_dataclass("TrainConfig", [("new_knob", int, idream.training.train.opt(
        3, "a knob under test"))], bases=(TrainConfig,))
    monkeypatch.setattr(idream.training.train, "TrainConfig", worded)
    with pytest.raises(RuntimeError, match="new_knob"):  # words, but in no group
        cli.build_parser()


@pytest.fixture(scope="module")
def train_help():
    env = dict(os.environ, COLUMNS="100", LINES="50")
    p = subprocess.run([sys.executable, "-m", "idream", "train", "--help"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def sections(text: str) -> dict[str, str]:
    """flag -> the title of the help section it is listed under ("" for the usage part)."""
    where, title = {}, ""
    for line in text.splitlines():
        m = re.match(r"^(\w[\w ]*):$", line)
        if m:
            title = m.group(1)
            continue
        m = re.match(r"^  (--[\w-]+)", line)
        if m:
            assert m.group(1) not in where, f"{m.group(1)} listed twice"
            where[m.group(1)] = title
    return where


def test_train_help_is_grouped_and_short(train_help):
    lines = train_help.splitlines()
    assert len(lines) <= 120
    assert max(map(len, lines)) <= 100
    titles = [line[:-1] for line in lines if re.fullmatch(r"\w[\w ]*:", line)]
    assert titles == ["options"] + GROUP_TITLES
    where = sections(train_help)
    for flag, group in WHERE.items():
        assert where.get(flag) == group, (flag, where.get(flag))
    # every flag of the parser is listed, under a group
    flags = {a.option_strings[0] for a in train_parser()._actions
             if a.option_strings and not isinstance(a, argparse._HelpAction)}
    assert set(where) == flags
    advanced = {f for f, g in where.items() if g == "advanced"}
    assert {"--" + k.replace("_", "-") for k in RESEARCH_KNOBS} <= advanced
    # the advanced flags are not mentioned anywhere before their group (usage included)
    head = train_help[:train_help.index("\nadvanced:\n")]
    for flag in advanced:
        assert not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", head), flag
    body = train_help[train_help.index("\nadvanced:\n"):]
    assert "research" in body.split("\n  --")[0] and "tuned" in body.split("\n  --")[0]


def test_every_command_help_fits(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    for path, parser in [*walk(cli.build_parser()), *walk(bench_cli.build_parser(), ("benchmarks",))]:
        lines = parser.format_help().splitlines()
        assert len(lines) <= 120 and max(map(len, lines)) <= 100, path
    with pytest.raises(SystemExit) as e:
        bench_cli.build_parser().parse_args(["quality", "--help"])
    assert e.value.code == 0 and "--train-overrides JSON" in capsys.readouterr().out
