"""Benchmark: the book's written-out attention against torch's fused kernel.

Prints, for growing sequence lengths, the time per forward call of
``companion.attention.scaled_dot_product_attention`` (which materialises the (L, L) weight
matrix, because the book wants to show it) and of ``torch.nn.functional.scaled_dot_product_attention``
(which need not), and the size of the weight matrix the written-out version allocates. Figures
only, no pass/fail: timings depend on the machine.

    .venv/bin/python benchmarks/attention_speed.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from companion.attention import scaled_dot_product_attention


def seconds_per_call(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch}, heads {args.heads}, head_dim {args.head_dim}, float32, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"{'length':>7s} {'ours ms':>9s} {'fused ms':>9s} {'ratio':>6s} {'weights MB':>11s} {'max |diff|':>11s}")
    for length in (64, 128, 256, 512, 1024, 2048):
        shape = (args.batch, args.heads, length, args.head_dim)
        q, k, v = (torch.randn(shape) for _ in range(3))
        with torch.no_grad():
            ours_out, weights = scaled_dot_product_attention(q, k, v)
            diff = (ours_out - F.scaled_dot_product_attention(q, k, v)).abs().max().item()
            ours = seconds_per_call(lambda: scaled_dot_product_attention(q, k, v), args.repeats)
            fused = seconds_per_call(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats)
        mb = weights.numel() * weights.element_size() / 2**20
        print(f"{length:7d} {ours * 1e3:9.2f} {fused * 1e3:9.2f} {ours / fused:6.2f} {mb:11.1f} {diff:11.2e}")


if __name__ == "__main__":
    main()
