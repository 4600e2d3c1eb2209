"""Benchmark: the batch-vectorised NTM against a loop over one sequence at a time.

Both sides run the same model (the ``ntm-copy`` configuration) on the same copy sequences and
do what training does, a forward and a backward pass (gradients summed over the batch): the
vectorised side in one call on a ``(B, T, 9)`` batch, the loop side in ``B`` calls on
``(1, T, 9)`` slices, as a per-sample implementation would. It checks that both give the same
gradients, then prints sequences per second of each and, as the last line, one JSON object
``{"batched_sequences_per_second", "loop_sequences_per_second", "ratio"}``. Figures only, no
pass/fail: timings depend on the machine and its load.

    .venv/bin/python benchmarks/ntm_throughput.py [--threads 1] [--batch 16] [--length 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from companion.experiments.ntm import CopyConfig, model_config
from companion.ntm import NTM
from companion.tasks.copy import copy_batch


def summed_loss(model: NTM, inputs, targets, mask) -> torch.Tensor:
    logits = model(inputs)  # (B, T, bits)
    return F.binary_cross_entropy_with_logits(logits[mask], targets[mask], reduction="sum")


def batched_step(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    summed_loss(model, batch.inputs, batch.targets, batch.mask).backward()


def loop_step(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    for b in range(len(batch)):
        one = slice(b, b + 1)
        summed_loss(model, batch.inputs[one], batch.targets[one], batch.mask[one]).backward()


def grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def sequences_per_second(step, model, batch, repeats: int) -> float:
    step(model, batch)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step(model, batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=CopyConfig().batch_size)
    parser.add_argument("--length", type=int, default=CopyConfig().max_length)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = NTM(model_config(CopyConfig()))
    batch = copy_batch(args.batch, args.length, generator=torch.Generator().manual_seed(0))

    batched_step(model, batch)
    g_batched = grads(model)
    loop_step(model, batch)
    g_loop = grads(model)
    worst = max((a - b).abs().max().item() for a, b in zip(g_batched, g_loop))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(g_batched, g_loop)), worst

    batched = sequences_per_second(batched_step, model, batch, args.repeats)
    loop = sequences_per_second(loop_step, model, batch, args.repeats)
    print(f"NTM copy model, batch {args.batch}, length {args.length} ({2 * args.length + 1} steps), "
          f"forward + backward, {args.threads} thread(s), torch {torch.__version__}")
    print(f"largest gradient difference, batched vs loop: {worst:.2e}")
    print(f"batched: {batched:8.1f} sequences/s")
    print(f"loop:    {loop:8.1f} sequences/s")
    print(json.dumps({"batched_sequences_per_second": round(batched, 1),
                      "loop_sequences_per_second": round(loop, 1), "ratio": round(batched / loop, 2)}))


if __name__ == "__main__":
    main()
