#!/usr/bin/env bash
# Reproduces the figures quoted for the core run path: every method on sst2 with the embedded
# encoder and causal LM, and prompt tuning on squad_v1. Writes records under results/core/.
# Roughly an hour on 2 CPU cores.
set -euo pipefail
out=${1:-results/core}
run() { spbench run --results "$out" --quiet "$@"; }

# MiniLM (encoder + classification head), 150 steps of 32, full validation (872) and test (1821)
run --task sst2 --model minilm-l6 --method full_ft --steps 150 --batch-size 32 --set lr=3e-5
run --task sst2 --model minilm-l6 --method full_ft --steps 150 --batch-size 32 --set lr=1e-4
run --task sst2 --model minilm-l6 --method prompt_tuning --steps 150 --batch-size 32 --set num_virtual_tokens=20 --set lr=0.03
run --task sst2 --model minilm-l6 --method p_tuning --steps 150 --batch-size 32 --set encoder=mlp --set lr=0.01
run --task sst2 --model minilm-l6 --method prefix_tuning --steps 150 --batch-size 32 --set lr=0.01
run --task sst2 --model minilm-l6 --method lora --steps 150 --batch-size 32

# SmolLM2-135M (causal LM, label words scored), 100 steps of 8
run --task sst2 --model smollm2-135m --method prompt_tuning --steps 100 --batch-size 8 --eval-size 872 --set init=class_labels --set lr=0.03
run --task sst2 --model smollm2-135m --method p_tuning --steps 100 --batch-size 8 --eval-size 300 --set encoder=lstm --set lr=0.003
run --task sst2 --model smollm2-135m --method prefix_tuning --steps 100 --batch-size 8 --eval-size 300 --set lr=0.01

# SQuAD with SmolLM2: prompt tuning from a text init, 100 evaluation questions per split
run --task squad_v1 --model smollm2-135m --method prompt_tuning --steps 80 --batch-size 4 --eval-size 100 \
    --set init=text --set "init_text=Answer with the exact words from the context." --set lr=0.03
