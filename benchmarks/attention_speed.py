"""Benchmark: the book's written-out attention against torch's fused kernel, and the cost of its checks.

Prints, for growing sequence lengths, the time per forward call of
``companion.attention.scaled_dot_product_attention`` (which materialises the (L, L) weight
matrix, because the book wants to show it) and of ``torch.nn.functional.scaled_dot_product_attention``
(which need not), and the size of the weight matrix the written-out version allocates.

Then, at L = 512, the validation overhead: the public function (type, dtype, shape and mask
checks, then the kernel) against its internal kernel ``companion.attention._attention``
called directly with the same arguments (no checks), and the checks
(``companion.attention._checked_arguments``) timed alone, which is the sharper figure. Both include the softmax's one data
check, on the row maxima it computes anyway; its cost is printed separately, next to the cost
of the scan over every score that this check replaced. Times are the best of several
interleaved rounds, since the load of a shared machine only ever adds time.
Figures only, no pass/fail: timings depend on the machine.

    .venv/bin/python benchmarks/attention_speed.py [--threads N] [--repeats R] [--rounds K]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from companion.attention import _attention, _checked_arguments, scaled_dot_product_attention


def seconds_per_call(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def best_seconds_per_call(fns: dict, repeats: int, rounds: int) -> dict:
    """The best time per call of each function over ``rounds`` interleaved rounds."""
    best = {name: math.inf for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], seconds_per_call(fn, repeats))
    return best


def speed_table(args) -> None:
    print(f"{'length':>7s} {'ours ms':>9s} {'fused ms':>9s} {'ratio':>6s} {'weights MB':>11s} {'max |diff|':>11s}")
    for length in (64, 128, 256, 512, 1024, 2048):
        shape = (args.batch, args.heads, length, args.head_dim)
        q, k, v = (torch.randn(shape) for _ in range(3))
        ours_out, weights = scaled_dot_product_attention(q, k, v)
        diff = (ours_out - F.scaled_dot_product_attention(q, k, v)).abs().max().item()
        ours = seconds_per_call(lambda: scaled_dot_product_attention(q, k, v), args.repeats)
        fused = seconds_per_call(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats)
        mb = weights.numel() * weights.element_size() / 2**20
        print(f"{length:7d} {ours * 1e3:9.2f} {fused * 1e3:9.2f} {ours / fused:6.2f} {mb:11.1f} {diff:11.2e}")


def validation_overhead(args, length: int = 512) -> None:
    B, h, d = args.batch, args.heads, args.head_dim
    q, k, v = (torch.randn(B, h, length, d) for _ in range(3))
    scale = 1 / math.sqrt(d)
    keep = torch.arange(length) < torch.randint(length // 2, length + 1, (B,))[:, None]  # (B, L)
    mask = keep[:, None, None, :]  # (B, 1, 1, L): a padding mask
    print(f"\nvalidation overhead at L = {length} (best of {args.rounds} rounds of {args.repeats} calls)")
    print("  difference: public function minus kernel (noisy: two large times subtracted)")
    print("  checks alone: _checked_arguments timed by itself, over the kernel's time")
    print(f"{'case':>12s} {'public ms':>10s} {'kernel ms':>10s} {'difference':>11s} {'checks ms':>10s} {'checks %':>9s}")
    for case, m in (("no mask", None), ("padding", mask)):
        best = best_seconds_per_call(
            {
                "public": lambda: scaled_dot_product_attention(q, k, v, m),
                "kernel": lambda: _attention(q, k, v, m, scale),
            },
            args.repeats, args.rounds,
        )
        checks = best_seconds_per_call(
            {"checks": lambda: _checked_arguments(q, k, v, m, False, None)}, 100 * args.repeats, args.rounds,
        )["checks"]
        extra = best["public"] - best["kernel"]
        print(f"{case:>12s} {best['public'] * 1e3:10.2f} {best['kernel'] * 1e3:10.2f} "
              f"{100 * extra / best['kernel']:10.1f}% {checks * 1e3:10.4f} {100 * checks / best['kernel']:8.3f}%")
    scores = q @ k.transpose(-2, -1) * scale  # (B, h, L, L)
    row_max = scores.amax(-1, keepdim=True)  # (B, h, L, 1)
    best = best_seconds_per_call(
        {
            "row-max check": lambda: bool((torch.isnan(row_max) | torch.isposinf(row_max)).any()),
            "full scan": lambda: bool(torch.isnan(scores).any()) or bool(torch.isposinf(scores).any()),
        },
        args.repeats, args.rounds,
    )
    print(f"data check kept, on the {row_max.numel()} row maxima (inside both columns above): "
          f"{best['row-max check'] * 1e3:.3f} ms")
    print(f"data check dropped, a NaN/+inf scan of all {scores.numel()} scores: {best['full scan'] * 1e3:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--skip-table", action="store_true", help="print only the validation overhead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch}, heads {args.heads}, head_dim {args.head_dim}, float32, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    with torch.no_grad():
        if not args.skip_table:
            speed_table(args)
        validation_overhead(args)


if __name__ == "__main__":
    main()
