#!/usr/bin/env bash
# Install everything the course needs into .venv and build the website into _build/html.
# Safe to run again: it reuses .venv and the build cache.
set -euo pipefail
cd "$(dirname "$0")"

# System packages: Chromium for the browser test of the website, bubblewrap for the grading
# sandbox, Graphviz (`dot`) to draw the website's diagrams at build time. Debian/Ubuntu only;
# skipped when they are already there.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
      || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}"; } \
      || echo "WARNING: could not install ${need[*]}; the browser and sandbox tests will fail until they are installed."
  else
    echo "WARNING: please install ${need[*]} with your package manager (the browser and sandbox tests need them)."
  fi
fi

# torch==2.13.0 is pinned first in requirements.txt (the CPU build); the last line installs this
# package in editable mode.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

.venv/bin/jupyter-book build . -W -n --keep-going
echo "Website built: _build/html/index.html"
