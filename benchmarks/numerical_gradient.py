"""Benchmark: hw4.answers.numerical_gradient against its floor and against gradcheck.

    python benchmarks/numerical_gradient.py      (prints the README's table)

Floor: a black-box central-difference gradient needs 2 evaluations of f per parameter,
so its floor is the time of 2P evaluations of f under torch.no_grad() (2P x the time of
one), measured in the same run. Goal: numerical_gradient <= 1.2x the floor at every P.

Timing: CPU time of this process (time.process_time), single-threaded
(torch.set_num_threads(1)), so that time spent descheduled by other load on the small
machine is not counted (wall-clock ratios swung 1.2x..2x between runs). Each round times
the floor (a loop of 2P calls of f on detached copies), one numerical_gradient call and
(in the first rounds) one gradcheck Jacobian, interleaved; the table shows the minimum
over the rounds of each (the least disturbed run, as timeit recommends).

gradcheck: torch.autograd.gradcheck(fast_mode=False) computes its numerical Jacobian
with the private torch.autograd.gradcheck._get_numerical_jacobian (the public
get_numerical_jacobian is deprecated); we time that call alone, with the same eps and
the precomputed output, i.e. gradcheck's numerical part without its analytical part.

f(W, b) = mean(X @ W + b) ("linear") and tanh(X @ W + b).pow(3).mean() ("curved"),
X: (100, d), W: (d, d), b: (d,), P = d^2 + d for d = 5, 31, 100 (P = 30, 992, 10100);
X ~ U(0, 1) as in the notebook, W ~ N(0, 1/d) and b ~ N(0, 0.01) so tanh is not saturated.
The last column is rel_error (max elementwise, floored at 1e-8) of numerical_gradient
against autograd in float64; goal <= 1e-8.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.autograd.gradcheck import _get_numerical_jacobian  # noqa: E402

from hw4.answers import numerical_gradient, rel_error  # noqa: E402

GOAL = 1.2
N = 100
EPS = 6e-6  # numerical_gradient's default, passed to gradcheck too
FUNCTIONS = {
    "linear": lambda X, W, b: torch.mean(X @ W + b),
    "curved": lambda X, W, b: torch.tanh(X @ W + b).pow(3).mean(),
}
ROUNDS = {5: 201, 31: 7, 100: 2}  # interleaved repetitions per d ...
GC_ROUNDS = {5: 5, 31: 2, 100: 1}  # ... of which gradcheck is timed in the first few


def clock(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def floor_time(f, W, b, evaluations: int) -> float:
    """CPU time of a loop of evaluations of f(W, b) under no_grad."""

    def loop():
        with torch.no_grad():
            for _ in range(evaluations):
                f(W, b)

    return clock(loop)


def run(name: str, d: int) -> dict:
    g = torch.Generator().manual_seed(d)
    X = torch.rand(N, d, generator=g, dtype=torch.float64)
    W = (torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5).requires_grad_()
    b = (0.1 * torch.randn(d, generator=g, dtype=torch.float64)).requires_grad_()

    def f(W, b):
        return FUNCTIONS[name](X, W, b)

    P = W.numel() + b.numel()
    out = f(W, b)
    exact = torch.autograd.grad(out, (W, b))
    ours = numerical_gradient(f, W, b, eps=EPS)  # also the warm-up
    error = max(rel_error(a, e) for a, e in zip(ours, exact))

    W0, b0 = W.detach().clone(), b.detach().clone()
    floors, times, gc_times = [], [], []
    for r in range(ROUNDS[d]):
        floors.append(floor_time(f, W0, b0, 2 * P))
        times.append(clock(lambda: numerical_gradient(f, W, b, eps=EPS)))
        if r < GC_ROUNDS[d]:
            gc_times.append(clock(lambda: _get_numerical_jacobian(f, (W, b), (out,), eps=EPS)))
    floor, ours_t, gc_t = min(floors), min(times), min(gc_times)
    return dict(f=name, d=d, P=P, floor=floor, ours=ours_t, gc=gc_t, error=error)


# The README's table, as printed.
HEADER = (
    "| f | P | floor ms | ours ms | ours/floor | gradcheck ms | gradcheck/ours | rel err |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, CPU time, float64, eps={EPS:g}, N={N}")
    print(HEADER)
    ok = True
    for name in FUNCTIONS:
        for d in ROUNDS:
            r = run(name, d)
            ratio = r["ours"] / r["floor"]
            ok &= ratio <= GOAL and r["error"] <= 1e-8
            print(
                f"| {r['f']} | {r['P']} | {1e3 * r['floor']:.2f} | {1e3 * r['ours']:.2f} | "
                f"{ratio:.2f}x | {1e3 * r['gc']:.1f} | {r['gc'] / r['ours']:.2f}x | "
                f"{r['error']:.1e} |",
                flush=True,
            )
    print(
        f"goal: ours/floor <= {GOAL}x and rel err <= 1e-8 everywhere: {'met' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
