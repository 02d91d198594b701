"""Figures of the notebooks: drawn with matplotlib, shown as PNG with deterministic bytes.

PNG, because JupyterLab shows it in an untrusted (freshly cloned) notebook, where
SVG and HTML outputs stay hidden. Deterministic, because re-running an unchanged
notebook must write the same file: the PNG carries no software version or date.
matplotlib is imported on first use only (its import costs ~0.3 s), so a notebook
pays for it only if it draws.

Typical use in a helper::

    fig, ax = plots.figure()
    ax.semilogy(...)
    plots.show(fig, "what the figure shows")
"""

from __future__ import annotations

import base64
import io

DPI = 100


def figure(width: float = 5.0, height: float = 3.0, ncols: int = 1):
    """A new figure (not registered with pyplot) and its axes: (fig, ax) or (fig, [ax, ...])."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes that depend on its content only."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def show(fig, alt: str) -> None:
    """Display the figure as a PNG; ``alt`` is the text shown where images are not."""
    from IPython.display import display

    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    display({"image/png": data, "text/plain": f"[figure: {alt}]"}, raw=True)
