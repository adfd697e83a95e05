#!/usr/bin/env bash
# Install everything the tests need, then run them. This is the README's test command and what
# CI runs (.ci/run). ml-100k comes from recbole's wheel, installed without its dependencies.
# Debian's chromium drives the browser test (never `playwright install`).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-dev.txt
python -m pip install -q --no-deps -r requirements-data.txt  # ml-100k's files, not recbole's dependencies
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test fails under CI=true and is skipped elsewhere"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -m ruff check .  # the linter settings live in pyproject.toml
python -m pytest -m "not slow" -q "$@"
