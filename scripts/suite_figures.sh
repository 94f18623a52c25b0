#!/usr/bin/env bash
# Reproduces the figures quoted for the task suite: every shipped task through `spbench run`
# with SmolLM2-135M, and the four classification tasks with MiniLM. Short training budgets
# (below); 100 examples per evaluation split. Writes records under results/suite/.
set -euo pipefail
out=${1:-results/suite}
run() { spbench run --results "$out" --quiet --eval-size 100 --set monitor_size=50 "$@"; }

for task in sst2 ag_news rte boolq; do
  run --task "$task" --model minilm-l6 --method prompt_tuning --steps 100 --batch-size 16 --set init=class_labels
done
for task in sst2 ag_news rte boolq; do
  run --task "$task" --model smollm2-135m --method prompt_tuning --steps 40 --batch-size 8 --set init=class_labels
done
run --task squad_v1 --model smollm2-135m --method prompt_tuning --steps 40 --batch-size 4 \
    --set init=text --set "init_text=Answer with the exact words from the context."
run --task samsum --model smollm2-135m --method prompt_tuning --steps 40 --batch-size 4 \
    --set init=text --set "init_text=Summarize the dialogue in one sentence."
