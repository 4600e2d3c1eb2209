"""Benchmark: what the chapter on attention at scale claims, at full size.

Measures, on one CPU thread:

1. The peak extra memory (tensor bytes held at once, counted exactly by
   ``companion.memory.peak_memory``) of the written-out attention
   (``companion.attention.scaled_dot_product_attention``, which builds the (L, L) weights) and
   of ``companion.efficient.tiled_attention`` (block 64), for growing L, d = 64, one head,
   float32; and their largest difference at L = 4096.
2. The time of both, and of ``companion.efficient.linear_attention`` (non-causal) and torch's
   fused ``scaled_dot_product_attention``, at L = 4096.
3. Greedy generation of 256 tokens from a small random ``DecoderOnlyTransformer``
   (``companion.transformer``), with and without its key-value cache: the time of each and
   that both produce the same tokens.

The last line is a JSON object with ``tiled_peak_memory_ratio`` (tiled over written-out, at
L = 4096), ``tiled_max_abs_error``, ``kv_cache_speedup`` (no cache over cache) and
``linear_attention_speedup`` (written-out over linear, at L = 4096), among other figures.
Targets from the issue: a ratio under 1/8 and a cache at least 2 times faster. Figures only, no
pass/fail; times are the best of several rounds, since the load of a shared machine only adds
time. Run by hand:

    .venv/bin/python benchmarks/efficient_attention.py [--rounds K]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from companion.attention import scaled_dot_product_attention
from companion.efficient import linear_attention, tiled_attention
from companion.memory import peak_memory
from companion.transformer import DecoderOnlyTransformer


def best_seconds(fn, rounds: int) -> float:
    """The best wall time of ``rounds`` calls (after one warm-up call)."""
    fn()
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def written_out(q, k, v):
    return scaled_dot_product_attention(q, k, v)[0]


def memory_table(block_size: int, d: int) -> dict:
    print(f"peak extra memory, one head, d = {d}, float32, tiled block = {block_size}")
    print(f"{'L':>6s} {'written-out MB':>15s} {'tiled MB':>9s} {'ratio':>7s}")
    rows = {}
    for length in (256, 512, 1024, 2048, 4096):
        q, k, v = (torch.randn(1, length, d) for _ in range(3))
        _, full = peak_memory(written_out, q, k, v)
        _, tiled = peak_memory(tiled_attention, q, k, v, block_size=block_size)
        rows[length] = (full, tiled)
        print(f"{length:6d} {full / 2**20:15.2f} {tiled / 2**20:9.2f} {tiled / full:7.4f}")
    return rows


def attention_at_4096(rounds: int, block_size: int, d: int) -> dict:
    length = 4096
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, length, d, generator=g) for _ in range(3))
    reference = written_out(q, k, v)
    error = (tiled_attention(q, k, v, block_size=block_size) - reference).abs().max().item()
    error_causal = (tiled_attention(q, k, v, block_size=block_size, is_causal=True)
                    - scaled_dot_product_attention(q, k, v, is_causal=True)[0]).abs().max().item()
    times = {
        "written_out": best_seconds(lambda: written_out(q, k, v), rounds),
        "tiled": best_seconds(lambda: tiled_attention(q, k, v, block_size=block_size), rounds),
        "tiled_causal": best_seconds(lambda: tiled_attention(q, k, v, block_size=block_size,
                                                             is_causal=True), rounds),
        "linear": best_seconds(lambda: linear_attention(q, k, v), rounds),
        "torch_fused": best_seconds(lambda: F.scaled_dot_product_attention(q, k, v), rounds),
    }
    print(f"\nL = {length}, d = {d}, one head, float32: best of {rounds} rounds")
    for name, seconds in times.items():
        print(f"  {name:13s} {seconds * 1e3:9.1f} ms")
    print(f"  tiled vs written-out: max |difference| {error:.2e} (causal {error_causal:.2e})")
    return {"times": times, "error": max(error, error_causal)}


def kv_cache(rounds: int, new_tokens: int = 256) -> dict:
    torch.manual_seed(0)
    model = DecoderOnlyTransformer(vocab_size=64, dim=128, num_heads=4, num_layers=4, ffn_dim=512,
                                   max_len=512).eval()
    prompt = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(1))
    with_cache = model.generate(prompt, new_tokens, use_cache=True)
    without = model.generate(prompt, new_tokens, use_cache=False)
    same = bool(torch.equal(with_cache, without))
    cached = best_seconds(lambda: model.generate(prompt, new_tokens, use_cache=True), rounds)
    uncached = best_seconds(lambda: model.generate(prompt, new_tokens, use_cache=False), rounds)
    print(f"\ngreedy generation of {new_tokens} tokens (d = 128, 4 heads, 4 layers, prompt 16): "
          f"cache {cached:.2f} s, no cache {uncached:.2f} s, speed-up {uncached / cached:.1f}x, "
          f"same tokens: {same}")
    return {"cached": cached, "uncached": uncached, "same_tokens": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    d = 64
    rows = memory_table(args.block_size, d)
    at_4096 = attention_at_4096(args.rounds, args.block_size, d)
    cache = kv_cache(args.rounds)
    full, tiled = rows[4096]
    times = at_4096["times"]
    print(json.dumps({
        "tiled_peak_memory_ratio": round(tiled / full, 5),
        "tiled_peak_memory_mb": round(tiled / 2**20, 2),
        "written_out_peak_memory_mb": round(full / 2**20, 2),
        "tiled_max_abs_error": at_4096["error"],
        "kv_cache_speedup": round(cache["uncached"] / cache["cached"], 2),
        "kv_cache_same_tokens": cache["same_tokens"],
        "linear_attention_speedup": round(times["written_out"] / times["linear"], 2),
        "tiled_slowdown": round(times["tiled"] / times["written_out"], 2),
        "seconds_at_4096": {name: round(s, 4) for name, s in times.items()},
    }))


if __name__ == "__main__":
    main()
