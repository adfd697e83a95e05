#!/usr/bin/env bash
# Time the README's two commands on a fresh clone, each in a fresh virtual environment with an
# empty pip cache (what a new machine does), and write results/fresh-clone.md. Needs the
# package registries; takes about as long as both commands.
#   bash scripts/fresh_clone.sh [REPO]   (default: this checkout's committed HEAD)
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
out="$(cd "$(dirname "$0")/.." && pwd)/results/fresh-clone.md"
work=$(mktemp -d)
trap 'kill "${app:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.0f}')"; }

git clone -q "$repo" "$work/app" && git clone -q "$repo" "$work/tests"
commit=$(git -C "$work/app" rev-parse --short HEAD)

# 1. install and start the app; timed until the page is served, then until a first answer
cd "$work/app" && python3 -m venv .venv && . .venv/bin/activate
t0=$(now)
pip install -q -r requirements.txt && pip install -q --no-deps -r requirements-data.txt
t1=$(now)
GRADIO_SERVER_PORT=7861 python app.py > app.log 2>&1 & app=$!
until curl -sf -o /dev/null http://127.0.0.1:7861/; do
  kill -0 "$app" 2>/dev/null || { cat app.log; exit 1; }
  sleep 0.5
done
t2=$(now)
python - <<'PY'
from gradio_client import Client  # a first answer through the HTTP API, as a person's first click
Client("http://127.0.0.1:7861/", verbose=False).predict(["Toy Story (1995)"], "", api_name="/recommend")
PY
t3=$(now)
kill "$app"; deactivate

# 2. install and run the tests
cd "$work/tests" && python3 -m venv .venv && . .venv/bin/activate
t4=$(now)
bash scripts/test.sh > test.log 2>&1 || { tail -30 test.log; exit 1; }
t5=$(now)
summary=$(tail -1 test.log)
deactivate

cat > "$out" <<MD
# The README's two commands on a fresh clone

Each command in a fresh clone of commit \`$commit\` with a fresh virtual environment and no pip
cache (packages downloaded from the registries; torch from the machine's local CPU wheel), as on
a new machine. Machine: $(python3 -c "import platform, os; print(f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}')"), Python $(python3 -c "import platform; print(platform.python_version())"); date $(date -u +%F).
Command: \`bash scripts/fresh_clone.sh\`.

| step | seconds |
|---|---|
| \`pip install -r requirements.txt && pip install --no-deps -r requirements-data.txt\` | $(secs "$t0" "$t1") |
| \`python app.py\` until the page is served | $(secs "$t1" "$t2") |
| first answer to \`/recommend\` after that | $(secs "$t2" "$t3") |
| \`bash scripts/test.sh\` (installs, lints, runs the suite) | $(secs "$t4" "$t5") |

Test summary: \`$summary\`
MD
cat "$out"
