"""Run a student's ``part4_affine_backward`` on given inputs; report what it returns.

Not imported by the grader: :mod:`nbtools.code_answer` runs this file as a script,
``python -I affine_probe.py STUDENT_ROOT MEMORY_BYTES``, in a process of its own
(working directory: the student's folder), sends the inputs as JSON on stdin and
reads one reply line from stdout. ``-I`` keeps this project's folder and
``PYTHONPATH`` off ``sys.path``; the student's folder goes first on it only after
torch is imported. Only standard library and torch are used here.

The reply carries the raw gradients; the grader checks them against its own
formulas, so a student's code that prints a fake reply gains nothing.

Protocol: stdin ``{"nonce": str, "X": [[...]], "W": ..., "b": ..., "G": ...}``;
stdout lines ``<nonce> ready`` (torch imported), ``<nonce> imported`` (the student's
module imported) and finally ``<nonce> {json reply}``.
"""

import json
import resource
import sys
import traceback
from pathlib import Path

NEEDS = [(a, b, c) for a in (False, True) for b in (False, True) for c in (False, True)]


def _where(exc: BaseException, root: str) -> str:
    """'ename: evalue (hw4/answers.py, line 3)': the last frame in the student's files."""
    msg = f"{type(exc).__name__}: {exc}".strip().splitlines()
    text = msg[0] if msg else type(exc).__name__
    text = text if len(text) <= 200 else text[:197] + "..."
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(root)]
    if frames:
        f = frames[-1]
        text += f" ({Path(f.filename).relative_to(root).as_posix()}, line {f.lineno})"
    return text


def _tensor(value):
    import torch

    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        return {"type": type(value).__name__}
    v = value.detach().to("cpu", torch.float64)
    return {"shape": list(value.shape), "dtype": str(value.dtype), "values": v.flatten().tolist()}


def main() -> None:
    root, memory = sys.argv[1], int(sys.argv[2])
    request = json.loads(sys.stdin.read())
    nonce = request["nonce"]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    def say(text: str) -> None:
        sys.__stdout__.write(f"\n{nonce} {text}\n")
        sys.__stdout__.flush()

    import torch
    from torch.autograd import Function

    torch.set_num_threads(1)
    f64 = torch.float64
    X, W, b, G = (torch.tensor(request[k], dtype=f64) for k in ("X", "W", "b", "G"))
    say("ready")

    reply: dict = {}
    sys.path.insert(0, root)
    try:
        import importlib

        answers = importlib.import_module("hw4.answers")
        backward = answers.part4_affine_backward
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: student code
        reply["import"] = _where(e, root)
        say(json.dumps(reply))
        return
    say("imported")

    # As in the Part 4 notebook (= hw4.backprop.affine_function, not imported: hw4 here
    # is the student's package, first on sys.path).
    class AffineLayerFunction(Function):
        @staticmethod
        def forward(ctx, X, W, b):
            ctx.save_for_backward(X, W, b)
            return 0.5 * X @ W.T + b

        @staticmethod
        def backward(ctx, grad_output):
            return backward(ctx, grad_output)

    # 1. Through autograd, every input requiring grad, a random upstream gradient.
    try:
        inputs = tuple(t.clone().requires_grad_() for t in (X, W, b))
        out = AffineLayerFunction.apply(*inputs)
        grads = torch.autograd.grad(out, inputs, G, allow_unused=True)
        reply["autograd"] = [_tensor(g) for g in grads]
    except BaseException as e:
        reply["autograd"] = _where(e, root)

    # 2. Called directly (no autograd reduction of shapes), for every needs_input_grad.
    direct = []
    for needs in NEEDS:

        class Ctx:
            saved_tensors = (X, W, b)
            needs_input_grad = needs

        g = G.clone()
        try:
            got = backward(Ctx(), g)
            if not isinstance(got, (tuple, list)):
                direct.append({"returned": type(got).__name__})
            else:
                direct.append(
                    {
                        "grads": [_tensor(t) for t in got],
                        "grad_output_modified": not torch.equal(g, G) or g._version != 0,
                    }
                )
        except BaseException as e:
            direct.append({"error": _where(e, root)})
    reply["direct"] = direct

    # 3. torch.autograd.gradcheck, every input requiring grad.
    try:
        inputs = tuple(t.clone().requires_grad_() for t in (X, W, b))
        torch.autograd.gradcheck(AffineLayerFunction.apply, inputs)
        reply["gradcheck"] = "ok"
    except BaseException as e:
        first = str(e).strip().splitlines()  # then the Jacobians: too long for a report
        line = (first[0] if first else "").rstrip(" ,:")
        for i, name in enumerate(("X", "W", "b")):
            line = line.replace(f"with respect to input {i}", f"with respect to input {i} ({name})")
        reply["gradcheck"] = f"{type(e).__name__}: {line}"[:300]
    say(json.dumps(reply))


if __name__ == "__main__":
    main()
