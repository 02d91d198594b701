"""HTML copies of the notebooks that read offline (used by ``main.py`` and the tests).

nbconvert's HTML loads MathJax from a CDN: opened with no network, every formula stays raw
TeX and the macro block at the top shows as text. :func:`export_html` points the HTML at a
MathJax 2.7 copied next to it (``<html dir>/mathjax/``) from the ``jupyter-server-mathjax``
package, which ships it with the STIX web fonts. Only what the page can load is copied: the
combined TeX configuration, the TeX extensions MathJax loads on demand (``\\newcommand``,
``\\boldsymbol``, ...), the HTML-CSS output with its font metrics, and the fonts (about
2 MB, 1.3 MB zipped). The macros of the notebook's first cell (``$$\\newcommand...$$``) are
defined when MathJax typesets that cell, before the cells that use them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import nbformat

from nbtools.runner import _replace_atomically

MATHJAX_DIR = "mathjax"  # beside the HTML files
CONFIG_NAME = "offline"  # our settings, written as <MATHJAX_DIR>/config/offline.js
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,{CONFIG_NAME}"

# What the page needs, relative to the package's MathJax (glob patterns; folders copied whole).
MATHJAX_FILES = (
    "LICENSE",
    "MathJax.js",
    "config/TeX-AMS-MML_HTMLorMML-full.js",  # TeX input, HTML-CSS output, menu, in one file
    "config/Safe.js",  # with extensions/Safe.js: no \href{javascript:...} and the like
    "extensions/*.js",  # Safe, and what the right-click menu loads (zoom, help, ...)
    "extensions/TeX",  # TeX extensions loaded on demand: \newcommand, \boldsymbol, \cancel, ...
    "extensions/HTML-CSS",
    "jax/element/mml/optable",  # operator tables, loaded on demand
    "jax/output/HTML-CSS",  # the output's font metrics (STIX-Web) and autoloads
    "fonts/HTML-CSS/STIX-Web/woff",  # the web fonts themselves
    "localization/en",
)

# The package strips MathJax's TeX fonts: use the STIX web fonts it ships, never look for
# fonts installed on the reader's machine (metrics differ), and switch off the parts whose
# styles would request the missing TeX fonts (the fast preview; the hidden MathML copy for
# screen readers, whose font-face rules name them).
CONFIG_JS = f"""\
/* Written by nbtools/html.py: settings for this offline copy of MathJax. */
MathJax.Hub.Config({{
  "HTML-CSS": {{availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null}},
  "fast-preview": {{disabled: true}},
  menuSettings: {{assistiveMML: false}}
}});
MathJax.Ajax.loadComplete("[MathJax]/config/{CONFIG_NAME}.js");
"""


def mathjax_source() -> Path:
    """The MathJax 2.7 shipped by the jupyter-server-mathjax package."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "jupyter-server-mathjax is not installed (it ships the MathJax of the HTML "
            "copies): pip install -r requirements.txt"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def copy_mathjax(html_dir: str | os.PathLike) -> Path:
    """Copy the MathJax subset into ``html_dir/mathjax`` (again if present); return it."""
    src = mathjax_source()
    dst = Path(html_dir) / MATHJAX_DIR
    for pattern in MATHJAX_FILES:
        matches = sorted(src.glob(pattern))
        if not matches:
            raise RuntimeError(f"{src}: no {pattern} (an unexpected jupyter-server-mathjax?)")
        for path in matches:
            target = dst / path.relative_to(src)
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    config = dst / "config" / f"{CONFIG_NAME}.js"
    _replace_atomically(config, lambda f: f.write(CONFIG_JS))
    return dst


def export_html(nb: nbformat.NotebookNode, dest: str | os.PathLike) -> Path:
    """Write an HTML copy of ``nb`` at ``dest``, its MathJax beside it; return ``dest``."""
    from nbconvert import HTMLExporter

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    copy_mathjax(dest.parent)
    body, _ = HTMLExporter(mathjax_url=MATHJAX_URL).from_notebook_node(nb)
    _replace_atomically(dest, lambda f: f.write(body))
    return dest
