"""The documents: every measured figure comes from a file, every Python example runs.

The figure rule, over README.md, docs/*.md and checkpoints/ml-100k/NOTES.md
------------------------------------------------------------------------------
Generated blocks (`<!-- NAME:start -->` … `<!-- NAME:end -->`, filled by
scripts/update_readme.py), fenced code, inline code, link targets and the YAML front matter are not
read for figures. The rest is cut into units: a paragraph, a list item, a table row or a heading.

1. In a unit these are *figures* (measurements): a decimal (0.1215, 13.45); a ratio, a number
   written right before × or x (2.04×, 4x); a percentage (80 %); a number followed by a time unit
   (16.8 ms, 15 s, 34 minutes). Any other integer is not a figure: counts (1,682 items, 943
   users), K in HR@10, years, seeds, epochs, a hyphenated budget (a 6-minute budget).
2. Not figures either: a number right after a setting name or a comparison (`ρ = 0.25`,
   `lr 0.001`, `dropout 0.2`, `≥ 2×`, `at least 1.15×`; the names are SETTING_WORDS), or a
   version (`1.2.1`, `Python 3.11`).
3. A unit with a figure cites, in the same unit, a repository file or folder: inline code holding
   a path from the repository root (`results/bench-quality-ml-100k.md`) or a markdown link
   (relative to the document). A folder stands for every file under it.
4. Each figure is found in a cited file: some number in the file rounds to it at its precision
   (0.1215 matches 0.12153; 80 % matches 80 or 0.8). A ratio may instead be the quotient of two
   decimals quoted in the same unit, to within one unit of its last digit (0.0940 against 0.1100:
   0.85×).
5. Files named README.md or NOTES.md and the pages of docs/ never back a figure: they are, or
   embed, prose written by hand. Git history is not a file.

The Python examples
-------------------
Every ```python block of README.md and docs/*.md runs here against the shipped checkpoint
(checkpoints/ml-100k), from the repository root. A block that talks to http://127.0.0.1:7860/ gets
the app served by demo.testing.serve (as in tests/test_app.py) and its URL in place of that one. A
block whose first line is `# needs: NAME, …` runs only when each NAME is there (an environment
variable when written in capitals, else a path in the repository) and is skipped otherwise, with
what is missing as the reason; no other block is skipped.
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "ml-100k"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), CHECKPOINT / "NOTES.md"]
README_LIMIT = 12 * 1024
APP_URL = "http://127.0.0.1:7860/"

SETTING_WORDS = [
    "ρ", "rho", "w", "τ", "tau", "T", "lr", "default", "defaults", "learning rate", "dropout", "decay", "EMA",
    "weighted",
    "weight", "p_uncond", "p_intention", "p_t_max", "future_k", "future_decay", "residual_scale",
    "ce_weight", "scale", "Python", "torch", "gradio", "RecBole", "recbole", "version", "arXiv",
    "≥", "≤", ">", "<", "at least", "at most",
]
_SETTING = re.compile(
    r"(?:" + "|".join(rf"(?<![\w]){re.escape(w)}" if w[0].isalnum() else re.escape(w)
                      for w in sorted(SETTING_WORDS, key=len, reverse=True))
    + r")\s*[=:]?\s*$", re.I)

_FRONT = re.compile(r"\A---\n.*?\n---\n", re.S)
_BLOCK = re.compile(r"<!-- ([\w.-]+):start -->.*?<!-- \1:end -->", re.S)
_FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```[ \t]*$", re.S | re.M)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")
_URL = re.compile(r"https?://\S+")
_NUMBER = re.compile(r"(?<![\w.@/\\-])(\d+(?:,\d{3})*(?:\.\d+)?)")
_RATIO = re.compile(r"\s?[×x](?![\w])(?!\s*\d)")
_TIME = re.compile(r"(?:\s?(?:ms|sec|seconds?|min|minutes?|hours?)|\s[sh])(?![\w])")  # "90s" is a decade
_PERCENT = re.compile(r"\s?%")
_FILE_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


# -- the figure checker --------------------------------------------------------------------------

def _blank(m: re.Match) -> str:
    """A removed span becomes its line breaks (line numbers and paragraphs stay as they were)."""
    return "\n" * m.group(0).count("\n")


def units(text: str) -> list[tuple[int, str]]:
    """(first line, text) of every paragraph, list item, table row and heading outside code."""
    text = _FRONT.sub(_blank, text)
    text = _BLOCK.sub(lambda m: _blank(m) or "\n", text)  # a removed block or fence ends a paragraph
    text = _FENCE.sub(lambda m: _blank(m) or "\n", text)
    text = _COMMENT.sub(_blank, text)
    out: list[list] = []
    open_unit = False
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            open_unit = False
        elif line.lstrip().startswith(("|", "#")):
            out.append([n, line])
            open_unit = False
        elif _ITEM.match(line) or not open_unit:
            out.append([n, line])
            open_unit = True
        else:
            out[-1][1] += "\n" + line
    return [(n, u) for n, u in out]


def _is_prose(path: Path) -> bool:
    return path.name in ("README.md", "NOTES.md") or (ROOT / "docs") in path.parents


def citations(unit: str, doc: Path) -> list[Path]:
    """Repository files and folders cited in a unit (inline-code paths and markdown links)."""
    found = []
    for s in _CODE.findall(unit):
        s = s.strip().rstrip(".,;:")
        if s and not re.search(r"\s", s):
            found.append(ROOT / s)
    for _, target in _LINK.findall(unit):
        target = target.split("#")[0]
        if target and "://" not in target:
            found += [doc.parent / target, ROOT / target]
    out = []
    for p in found:
        try:
            p = p.resolve()
        except OSError:
            continue
        if p.exists() and (p == ROOT or ROOT in p.parents) and p not in out:
            out.append(p)
    return out


@lru_cache(maxsize=None)
def file_numbers(path: Path) -> tuple[float, ...]:
    """Every number written in a text file, sorted (empty for binary files)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ()
    nums = set()
    for tok in _FILE_NUMBER.findall(text):
        try:
            nums.add(float(tok.replace(",", "")))
        except ValueError:
            pass
        try:
            nums.add(float(tok))
        except ValueError:
            pass
    return tuple(sorted(nums))


def backing_files(cited: list[Path]) -> list[Path]:
    files = []
    for p in cited:
        for f in ([p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())):
            if not _is_prose(f) and ".git" not in f.parts and f not in files:
                files.append(f)
    return files


def _near(value: float, tol: float, nums: tuple[float, ...]) -> bool:
    i = bisect.bisect_left(nums, value - tol)
    return i < len(nums) and nums[i] <= value + tol


def figures(unit: str) -> list[dict]:
    """The figures of a unit: {text, value, places, kind} (kind: decimal, ratio, percent, time)."""
    clean = _CODE.sub(" ", unit)
    clean = _LINK.sub(lambda m: m.group(1), clean)
    clean = _URL.sub(" ", clean)
    out = []
    for m in _NUMBER.finditer(clean):
        tok, rest, before = m.group(1), clean[m.end():], clean[:m.start()]
        if re.match(r"\.\d", rest):  # 1.2.1: a version
            continue
        if _RATIO.match(rest):
            kind = "ratio"
        elif _PERCENT.match(rest):
            kind = "percent"
        elif _TIME.match(rest):
            kind = "time"
        elif rest[:1].isalnum() or rest[:1] == "_":  # 100k, 1M, 1e-3, x0: not a number here
            continue
        elif "." in tok:
            kind = "decimal"
        else:
            continue  # an integer: a count, K, a seed, a year
        if _SETTING.search(before):
            continue
        places = len(tok.split(".")[1]) if "." in tok else 0
        out.append({"text": tok + ("×" if kind == "ratio" else "%" if kind == "percent" else ""),
                    "value": float(tok.replace(",", "")), "places": places, "kind": kind})
    return out


def check_text(text: str, doc: Path) -> list[str]:
    """Problems with the figures of one document (empty: every figure is cited and found)."""
    problems = []
    name = doc.relative_to(ROOT).as_posix() if ROOT in doc.parents else doc.name
    for line, unit in units(text):
        figs = figures(unit)
        if not figs:
            continue
        cited = citations(unit, doc)
        if not cited:
            shown = ", ".join(f["text"] for f in figs)
            problems.append(f"{name}:{line}: {shown} with no file cited in the same paragraph or item")
            continue
        files = backing_files(cited)
        decimals = [f for f in figs if f["kind"] == "decimal"]
        for f in figs:
            tol = 0.5 * 10 ** -f["places"] + 1e-9
            ok = any(_near(f["value"], tol, file_numbers(p)) or
                     (f["kind"] == "percent" and _near(f["value"] / 100, tol / 100, file_numbers(p)))
                     for p in files)
            if not ok and f["kind"] == "ratio":
                ok = any(b["value"] and abs(a["value"] / b["value"] - f["value"]) <= 10 ** -f["places"] + 1e-9
                         for a in decimals for b in decimals if a is not b)
            if not ok:
                where = ", ".join(p.relative_to(ROOT).as_posix() for p in cited)
                problems.append(f"{name}:{line}: {f['text']} is in none of the files it cites ({where})")
    return problems


def check_document(path: Path) -> list[str]:
    return check_text(path.read_text(encoding="utf-8"), path)


# -- tests of the checker itself -----------------------------------------------------------------

SAMPLE = ROOT / "docs" / "sample.md"


def test_checker_reports_a_figure_without_a_citation():
    problems = check_text("iDream reaches NDCG@10 0.1234 on test.\n", SAMPLE)
    assert len(problems) == 1 and "0.1234" in problems[0] and "no file cited" in problems[0]


def test_checker_accepts_a_figure_found_in_its_cited_file():
    text = ("Unguided one-step test NDCG@10 is 0.0944 (`checkpoints/ml-100k/metrics.json`).\n\n"
            "- validation 0.1215, in [the config](../checkpoints/ml-100k/config.json)\n")
    assert check_text(text, SAMPLE) == []


def test_checker_reports_a_figure_missing_from_its_cited_file():
    text = "Test NDCG@10 0.0999 and 0.0944 (`checkpoints/ml-100k/metrics.json`).\n"
    problems = check_text(text, SAMPLE)
    assert len(problems) == 1 and "0.0999" in problems[0]


def test_checker_rules_for_ratios_percentages_times_and_settings():
    ok = ("0.0944 against 0.0449: 2.10×, and 80 % of targets at t = T−1 "
          "(`tests/data/figure-sample.json`).\n\n"
          "History 10, ρ = 0.25, lr 0.001, dropout 0.2, HR@10 over 1,682 items, ≥ 2×, "
          "a 6-minute budget, 64×384, Python 3.11, recbole 1.2.1, seed 0, films from the 90s.\n\n"
          "<!-- x:start -->\n0.4242 in a generated block\n<!-- x:end -->\n\n"
          "```\n0.4242 in code\n```\n")
    assert check_text(ok, SAMPLE) == []
    bad = ("0.0944 against 0.0449: 2.50×; 13 minutes; 42 % (`tests/data/figure-sample.json`).\n\n"
           "Test 0.0944 (`checkpoints/ml-100k/README.md`: a model card never backs a figure).\n\n"
           "| change | before | after | record |\n|---|---|---|---|\n"
           "| a row | 0.0944 | 0.0945 | `tests/data/figure-sample.json` |\n")
    problems = check_text(bad, SAMPLE)
    assert [p.split(": ", 1)[1].split()[0] for p in problems] == ["2.50×", "13", "42%", "0.0944", "0.0945"]


# -- the documents -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_figure_comes_from_a_cited_file(path):
    problems = check_document(path)
    assert not problems, "figures not backed by a file:\n" + "\n".join(problems)


def _update_readme():
    from conftest import load_script
    return load_script(ROOT / "scripts" / "update_readme.py")


def test_generated_blocks_are_current_and_listed(capsys):
    mod = _update_readme()
    stale = [doc for doc, (old, new) in mod.updated_documents().items() if old != new]
    warnings = capsys.readouterr().err
    assert not warnings, warnings
    assert not stale, f"run `python scripts/update_readme.py`: stale blocks in {stale}"


def test_recbole_ships_only_data_and_comes_without_its_dependencies():
    # recbole is there for ml-100k's files alone: its dependencies (ray, tensorboard, ...) must
    # stay out of every install, so it lives in a file of its own that is installed with --no-deps
    from idream.data.datasets import ML100K_INSTALL
    pins = [ln.split("#")[0].strip() for ln in (ROOT / "requirements-data.txt").read_text().splitlines()]
    assert [p for p in pins if p] == ["recbole==1.2.1"] == [ML100K_INSTALL.split()[-1]]
    runtime = (ROOT / "requirements.txt").read_text().lower()
    assert not re.search(r"^\s*recbole", runtime, re.M)
    for name in ("README.md", "scripts/test.sh", "docs/usage.md", "Dockerfile"):
        text = (ROOT / name).read_text(encoding="utf-8")
        installs = re.findall(r"pip install[^\n`&]*requirements-data\.txt", text)
        assert installs and all("--no-deps" in c for c in installs), (name, installs)


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_LIMIT
    assert text.startswith("---\ntitle: iDream\n")
    assert ("pip install -r requirements.txt && pip install --no-deps -r requirements-data.txt && "
            "python app.py") in text
    assert "bash scripts/test.sh" in text
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", text))
    assert linked == {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}


def test_the_space_is_the_dockerfile_running_the_readme_install():
    """The Space (sdk: docker) builds the Dockerfile: it installs what the README's first command
    installs, the data wheel without its dependencies, and serves app.py on the Space's port."""
    front = (ROOT / "README.md").read_text(encoding="utf-8").split("\n---\n")[0]
    assert "\nsdk: docker\n" in front
    port = re.search(r"^app_port: (\d+)$", front, re.M).group(1)
    docker = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    steps = [ln.strip() for ln in docker.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    python = re.fullmatch(r"FROM python:(\d+\.\d+)(-slim)?", steps[0])
    floor = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert python and tuple(map(int, python.group(1).split("."))) >= tuple(map(int, floor.groups()))
    run = " ".join(s for s in steps if s.startswith("RUN pip"))
    assert re.search(r"pip install [^&]*-r requirements\.txt", run)
    assert re.search(r"pip install [^&]*--no-deps -r requirements-data\.txt", run)
    env = " ".join(s for s in steps if s.startswith("ENV"))
    assert "GRADIO_SERVER_NAME=0.0.0.0" in env and f"GRADIO_SERVER_PORT={port}" in env
    assert f"EXPOSE {port}" in steps and steps[-1] == 'CMD ["python", "app.py"]'
    # both requirement files reach the image before their install runs
    copy = next(i for i, s in enumerate(steps) if s.startswith("COPY") and "requirements-data.txt" in s)
    install = next(i for i, s in enumerate(steps) if s.startswith("RUN pip"))
    assert "requirements.txt" in steps[copy].split() and copy < install


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_and_anchors_resolve(path):
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = []
    for _, target in _LINK.findall(text):
        if "://" in target:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", _FENCE.sub("", dest.read_text(encoding="utf-8")), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
            if anchor not in slugs:
                broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"


def test_public_api_imports_lazily():
    code = ("import sys, idream\n"
            "assert 'torch' not in sys.modules, 'import idream loaded torch'\n"
            "from idream import Recommender, Recommendation, UnknownItemError, load_checkpoint, load_dataset\n"
            "assert Recommender.__module__ == 'idream.serving.recommender'\n"
            "try:\n    idream.nothing_here\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- the Python examples -------------------------------------------------------------------------

_PY_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks() -> list:
    blocks = []
    for path in DOCUMENTS[:-1]:  # README.md and docs/*.md
        text = path.read_text(encoding="utf-8")
        for m in _PY_BLOCK.finditer(text):
            line = text[:m.start()].count("\n") + 1
            ref = f"{path.relative_to(ROOT).as_posix()}:{line}"
            blocks.append(pytest.param(m.group(1), id=ref))
    return blocks


@pytest.fixture(scope="module")
def app_url():
    """The app on the shipped checkpoint, served once for the blocks that call it over HTTP."""
    pytest.importorskip("gradio")
    from demo.testing import serve

    return serve(CHECKPOINT, background_umap=False)[1]


def test_documents_have_python_examples():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("code", python_blocks())
def test_python_example_runs(code, request, monkeypatch):
    need = re.match(r"#\s*needs:(.*)", code.strip())
    missing = [n for n in (need.group(1).replace(",", " ").split() if need else [])
               if not (os.environ.get(n) if re.fullmatch(r"[A-Z_][A-Z0-9_]*", n) else (ROOT / n).exists())]
    if missing:
        pytest.skip(f"{request.node.callspec.id} needs {', '.join(missing)}")
    if APP_URL in code:
        code = code.replace(APP_URL, request.getfixturevalue("app_url"))
    monkeypatch.chdir(ROOT)
    exec(compile(code, request.node.callspec.id, "exec"), {"__name__": "__docs__"})


if __name__ == "__main__":  # list every problem: python tests/test_docs.py
    found = [p for d in DOCUMENTS for p in check_document(d)]
    print("\n".join(found) or "every figure is backed")
    sys.exit(1 if found else 0)
