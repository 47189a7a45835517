#!/usr/bin/python3
"""PyTorch peer of bench/model_bench.cpp: the same configurations, full-parameter training in
float32, one process per thread count. Two measurements per configuration, as in model_bench:
"ForwardBackward" (forward + backward) and "TrainStep" (forward + backward + torch.optim.AdamW).

Usage: torch_peer.py THREADS  → one JSON line per configuration on stdout.
The model is fixtures/golden/kiln_reference.py's (batched, idiomatic PyTorch ops).
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "golden"))
import kiln_reference as ref  # noqa: E402

# Keep in step with bench/model_configs.hpp.
CONFIGS = [
    ("d128_L2_V256_T128_B8", dict(vocab_size=256, d_model=128, n_layers=2, d_ff=352), 128, 8),
    ("d256_L4_V256_T256_B8", dict(vocab_size=256, d_model=256, n_layers=4, d_ff=704), 256, 8),
    ("d64_L2_V151936f_T256_B4", dict(vocab_size=151936, d_model=64, n_layers=2, d_ff=192, head="factored"), 256, 4),
]


def make(cfg):
    cfg = dict(cfg, n_heads=cfg["d_model"] // 32, max_context=4096, rope_theta=10000.0, norm_eps=1e-5)
    V, d, L, f = cfg["vocab_size"], cfg["d_model"], cfg["n_layers"], cfg["d_ff"]
    shapes = {"model.norm.weight": (d,)}
    if ref.is_factored(cfg):
        m, A = ref.factored(cfg)
        shapes.update({"model.embed_tokens_hi.weight": (A, d), "model.embed_tokens_lo.weight": (m, d),
                       "lm_head_hi.weight": (A, d), "lm_head_lo.weight": (m, d)})
    else:
        shapes.update({"model.embed_tokens.weight": (V, d), "lm_head.weight": (V, d)})
    for l in range(L):
        shapes[f"model.layers.{l}.input_layernorm.weight"] = (d,)
        shapes[f"model.layers.{l}.post_attention_layernorm.weight"] = (d,)
        for p in "qkvo":
            shapes[ref.proj(l, p) + ".weight"] = (d, d)
        shapes[ref.proj(l, "gate") + ".weight"] = (f, d)
        shapes[ref.proj(l, "up") + ".weight"] = (f, d)
        shapes[ref.proj(l, "down") + ".weight"] = (d, f)
    weights = {n: (torch.randn(s) * 0.02 if len(s) == 2 else torch.ones(s)).requires_grad_(True)
               for n, s in shapes.items()}
    return cfg, weights


def factored_target_logprobs(model, tokens, targets):
    """The factored head as Kiln computes it: α, β and the exact partition function over the V ids
    from their logsumexps, never the V logits (the reference's materialising form is for golden
    values, not for speed)."""
    m, A = ref.factored(model.cfg)
    r = model.cfg["vocab_size"] - (A - 1) * m
    h = model.hidden(tokens)
    alpha, beta = model.linear("lm_head_hi", h), model.linear("lm_head_lo", h)
    lse = alpha[..., A - 1] + torch.logsumexp(beta[..., :r], -1)
    if A > 1:
        lse = torch.logaddexp(torch.logsumexp(alpha[..., :A - 1], -1) + torch.logsumexp(beta, -1), lse)
    picked = alpha.gather(-1, (targets // m).unsqueeze(-1)) + beta.gather(-1, (targets % m).unsqueeze(-1))
    return picked.squeeze(-1) - lse


def step(model, weights, tokens, targets, opt=None):
    for w in weights.values():
        w.grad = None
    lp = factored_target_logprobs(model, tokens, targets) if ref.is_factored(model.cfg) else \
        model.target_logprobs(tokens, targets)
    loss = -lp.sum()
    loss.backward()
    if opt is not None:
        opt.step()


def measure(fn):
    for _ in range(2):  # warm-up
        fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 3.0 or n < 3:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def main():
    threads = int(sys.argv[1])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    for name, cfg, T, B in CONFIGS:
        cfg, weights = make(cfg)
        model = ref.Model(cfg, weights)
        tokens = torch.randint(0, cfg["vocab_size"], (B, T))
        targets = torch.randint(0, cfg["vocab_size"], (B, T))
        opt = torch.optim.AdamW(list(weights.values()), lr=1e-4, betas=(0.9, 0.95), eps=1e-12, weight_decay=0.0)
        for kind, o in (("ForwardBackward", None), ("TrainStep", opt)):
            seconds = measure(lambda: step(model, weights, tokens, targets, o))
            print(json.dumps({"benchmark": kind, "config": name, "threads": threads, "seconds_per_step": seconds,
                              "tokens_per_s": B * T / seconds}), flush=True)


if __name__ == "__main__":
    main()
