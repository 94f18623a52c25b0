"""Harness overhead: the same training steps through `bench.train.train` and a bare PEFT + PyTorch loop.

Both train MiniLM with a 20-token prompt (PEFT prompt tuning) on the same SST-2 batches, in one
process, in rounds that run both, each in turn first, so machine noise hits both alike. Prints
seconds per step, each round's ratio harness / bare, and their median with its range (target:
<= 1.05); rounds on both sides of the target say the machine was too busy to tell.

    python scripts/bench_overhead.py [--steps 20] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from bench.device import autocast, device_clock, upcast_trainable
from bench.methods import get_method
from bench.modeling import TunedModel
from bench.models import load_base_model
from bench.train import TrainSettings, train
from bench.train.loop import batches
from tasks import load_task


TARGET = 1.05  # harness seconds over bare seconds


def build(task, seed: int = 0):
    base = load_base_model("minilm-l6", num_labels=2)
    torch.manual_seed(seed)
    method = get_method("prompt_tuning")
    model = method.build(base, method.settings(num_virtual_tokens=20), task.card)
    return base, model


def bare_loop(base, model, examples, *, steps: int, batch_size: int, lr: float, max_tokens: int) -> float:
    """What a person would write by hand with PEFT and PyTorch (on CUDA: bf16 autocast around fp32
    trainable weights, as the harness runs)."""
    params = upcast_trainable(model)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps)
    stream = batches(examples, batch_size, seed=0)
    model.train()
    started = device_clock(base.device)
    for _ in range(steps):
        batch = next(stream)
        encoded = base.tokenizer([ex.prompt for ex in batch], padding=True, truncation=True, max_length=max_tokens,
                                 return_token_type_ids=False, return_tensors="pt").to(base.device)
        labels = torch.tensor([ex.label for ex in batch], device=base.device)
        with autocast(base.device, base.dtype):
            loss = F.cross_entropy(model(**encoded).logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return device_clock(base.device) - started


def harness_loop(base, model, task, examples, *, steps: int, batch_size: int, lr: float) -> float:
    """`train` as a run calls it (its prompts cut at the card's `max_input_tokens`, as the bare loop's)."""
    settings = TrainSettings(steps=steps, batch_size=batch_size, eval_every=steps + 1)
    started = device_clock(base.device)
    train(TunedModel(model, base, task.card), examples, settings, lr=lr, progress=False)
    return device_clock(base.device) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=4, help="an even number: each side runs first as often")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.rounds < 2 or args.rounds % 2:
        parser.error(f"--rounds must be an even number of 2 or more, got {args.rounds}")
    task = load_task("sst2")
    examples = task.training_examples(None, seed=0)
    (base_h, model_h), (base_b, model_b) = build(task), build(task)
    kwargs = dict(steps=args.steps, batch_size=args.batch_size, lr=0.03)
    bare_kwargs = {**kwargs, "max_tokens": task.card.max_input_tokens}
    bare_loop(base_b, model_b, examples, **bare_kwargs)  # warm-up, both sides
    harness_loop(base_h, model_h, task, examples, **kwargs)
    harness, bare = [], []
    for round_ in range(args.rounds):
        order = (("harness", "bare") if round_ % 2 == 0 else ("bare", "harness"))
        for side in order:
            if side == "harness":
                harness.append(harness_loop(base_h, model_h, task, examples, **kwargs))
            else:
                bare.append(bare_loop(base_b, model_b, examples, **bare_kwargs))
    steps = args.steps * args.rounds
    print(f"{base_h.device.type} ({str(base_h.dtype).removeprefix('torch.')}), torch threads "
          f"{torch.get_num_threads()}, {args.rounds} rounds x {args.steps} steps, batch {args.batch_size}")
    print(f"harness: {sum(harness) / steps:.4f} s/step   rounds {[round(h, 2) for h in harness]}")
    print(f"bare:    {sum(bare) / steps:.4f} s/step   rounds {[round(b, 2) for b in bare]}")
    # each round's two sides ran back to back, under the same load: their ratio is what compares
    ratios = [h / b for h, b in zip(harness, bare)]
    print(f"ratio harness/bare by round: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"ratio harness/bare: median {statistics.median(ratios):.3f}, range [{min(ratios):.3f}, "
          f"{max(ratios):.3f}]  (target <= {TARGET})"
          + ("; rounds fall on both sides of the target: the machine was too busy to tell, run it again on a "
             "quiet one" if min(ratios) <= TARGET < max(ratios) else ""))


if __name__ == "__main__":
    main()
