"""Reference data for the optimizer tests (tests/optim/test_optim.c).

Writes optim_ref.json next to this script:
  schedules: transformers' own LambdaLR multipliers for every schedule type
             over several (total, warmup) pairs;
  torch:     torch.optim.AdamW (foreach=False) + torch.nn.utils.clip_grad_norm_
             for 10 steps on three small tensors, with a cosine schedule and
             warm-up, weight decay and clipping — parameters after each step;
  bnb:       the same run through the bitsandbytes 32-bit AdamW CUDA kernel's
             arithmetic (qlora-spec.md §4.2), emulated in numpy float32 one
             operation at a time: decay AFTER the step, bias corrections in
             float32 (the powers correctly rounded), eps*sqrt(1-beta2^t) in the
             denominator. (bnb's own
             CPU backend decays before the step, so it is not used here.)
Floats are stored as their IEEE-754 bit patterns, so the file is exact.

Run: /work/venv/bin/python tests/ref/optim/gen_optim_ref.py
"""
import json
import math
import os

import numpy as np
import torch
from transformers import optimization as hf_opt

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_ref.json")


def bits(a):
    return [int(x) for x in np.asarray(a, dtype=np.float32).view(np.uint32).ravel()]


def schedules():
    out = []
    makers = {
        "linear": lambda o, w, t: hf_opt.get_linear_schedule_with_warmup(o, w, t),
        "cosine": lambda o, w, t: hf_opt.get_cosine_schedule_with_warmup(o, w, t),
        "constant": lambda o, w, t: hf_opt.get_constant_schedule(o),
        "constant_with_warmup": lambda o, w, t: hf_opt.get_constant_schedule_with_warmup(o, w),
    }
    for name, make in makers.items():
        for total, warmup in [(250, 8), (10, 0), (7, 3), (1, 1), (100, 100)]:
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            sched = make(opt, warmup, total)
            lam = sched.lr_lambdas[0]
            out.append({"type": name, "total": total, "warmup": warmup,
                        "lambda": [float(lam(s)) for s in range(total + 2)]})
    # warm-up steps from a ratio (transformers' TrainingArguments.get_warmup_steps)
    ratios = [{"total": t, "ratio": r, "warmup": math.ceil(t * r)} for t, r in [(250, 0.03), (1000, 0.03), (7, 0.5), (3, 0.0)]]
    return out, ratios


SHAPES = [(37,), (6, 5), (3,)]
STEPS = 10
LR, WD, MAX_NORM, WARMUP = 2e-2, 0.01, 0.3, 3
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def problem():
    rng = np.random.default_rng(1234)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [[(rng.standard_normal(s) * (0.5 if k % 3 else 2.0)).astype(np.float32) for s in SHAPES]
             for k in range(STEPS)]
    return params, grads


def lrs():
    return [LR * hf_opt._get_cosine_schedule_with_warmup_lr_lambda(k, num_warmup_steps=WARMUP,
                                                                      num_training_steps=STEPS, num_cycles=0.5)
            for k in range(STEPS)]


def run_torch(params, grads):
    ps = [torch.nn.Parameter(torch.tensor(p)) for p in params]
    opt = torch.optim.AdamW(ps, lr=LR, betas=(BETA1, BETA2), eps=EPS, weight_decay=WD, foreach=False, fused=False)
    sched = hf_opt.get_cosine_schedule_with_warmup(opt, WARMUP, STEPS)
    traj, norms = [], []
    for k in range(STEPS):
        for p, g in zip(ps, grads[k]):
            p.grad = torch.tensor(g)
        norms.append(float(torch.nn.utils.clip_grad_norm_(ps, MAX_NORM)))
        opt.step()
        sched.step()
        traj.append([bits(p.detach().numpy()) for p in ps])
    return traj, norms


def run_bnb_emulated(params, grads):
    f = np.float32
    ps = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    traj = []
    for k in range(STEPS):
        t = k + 1
        norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads[k]))
        coef = f(MAX_NORM) / (f(norm) + f(1e-6))
        scale = min(coef, f(1.0))
        lr = f(lrs()[k])
        b1, b2 = f(BETA1), f(BETA2)
        # the fp32 power, correctly rounded (bnb's powf may be an ulp off either way)
        c1 = f(1.0) - f(np.float64(b1) ** t)
        c2 = np.sqrt(f(1.0) - f(np.float64(b2) ** t), dtype=np.float32)
        step_size = f(-lr * c2 / c1)
        eps_c2 = f(f(EPS) * c2)
        decay = f(f(1.0) - lr * f(WD))
        for i in range(len(ps)):
            g = (grads[k][i] * scale).astype(np.float32)
            m = (ms[i] * b1 + (f(1.0) - b1) * g).astype(np.float32)
            v = (vs[i] * b2 + (f(1.0) - b2) * (g * g)).astype(np.float32)
            p = (ps[i] + step_size * (m / (np.sqrt(v) + eps_c2))).astype(np.float32)
            ps[i] = (p * decay).astype(np.float32)
            ms[i], vs[i] = m, v
        traj.append([bits(p) for p in ps])
    return traj


def main():
    sch, ratios = schedules()
    params, grads = problem()
    torch_traj, norms = run_torch(params, grads)
    ref = {
        "schedules": sch,
        "warmup_ratios": ratios,
        "adamw": {
            "shapes": [list(s) for s in SHAPES], "steps": STEPS, "lr": LR, "weight_decay": WD,
            "max_grad_norm": MAX_NORM, "warmup_steps": WARMUP, "schedule": "cosine",
            "beta1": BETA1, "beta2": BETA2, "eps": EPS,
            "params0": [bits(p) for p in params],
            "grads": [[bits(g) for g in gk] for gk in grads],
            "torch": torch_traj, "torch_grad_norms": norms,
            "bnb": run_bnb_emulated(params, grads),
        },
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    with open(OUT, "w") as fh:
        json.dump(ref, fh, separators=(",", ":"))
    print("wrote", OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
