"""HTML copies (nbtools.html) without a browser: MathJax comes from the copy beside the HTML.

That the copy really typesets every formula offline is tested in a browser, in
tests/test_browser.py (test_html_copy_offline).
"""

from __future__ import annotations

import html as htmllib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import nbformat
from conftest import ROOT

from nbtools import html

# The first cell of each notebook: the course's macro block, used by the answers.
MACROS = nbformat.read(ROOT / "Part3_SummaryQuestions.ipynb", as_version=4).cells[0].source


def _notebook() -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(MACROS),
            nbformat.v4.new_markdown_cell(r"With the macros: $\pderiv{L}{\mat{W}} = \ip{a}{b}{c}$."),
            nbformat.v4.new_code_cell("print(1)"),
        ]
    )


def _scripts(text: str) -> list[str]:
    return re.findall(r'<script[^>]*\ssrc="([^"]*)"', text)


def test_export_loads_mathjax_from_the_copy_beside_it(tmp_path: Path):
    dest = html.export_html(_notebook(), tmp_path / "html" / "nb.html")
    text = dest.read_text(encoding="utf-8")
    mathjax = [s for s in _scripts(text) if "MathJax.js" in s]
    assert mathjax == [html.MATHJAX_URL], _scripts(text)
    url = urlsplit(htmllib.unescape(mathjax[0]))
    assert not url.scheme and not url.netloc and not url.path.startswith("/")  # relative
    assert (dest.parent / url.path).is_file()
    for name in parse_qs(url.query)["config"][0].split(","):
        assert (dest.parent / html.MATHJAX_DIR / "config" / f"{name}.js").is_file(), name
    assert "cdnjs.cloudflare.com/ajax/libs/mathjax" not in text


def test_export_keeps_the_macro_block_and_formulas_as_tex(tmp_path: Path):
    # MathJax finds the math in the page's text: it must arrive there verbatim, $$ and all.
    dest = html.export_html(_notebook(), tmp_path / "nb.html")
    text = htmllib.unescape(dest.read_text(encoding="utf-8"))
    assert MACROS.strip() in text
    assert r"$\pderiv{L}{\mat{W}} = \ip{a}{b}{c}$" in text


def test_mathjax_copy_is_a_complete_subset(tmp_path: Path):
    mathjax = html.copy_mathjax(tmp_path)
    files = [p for p in mathjax.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    assert size < 3_000_000, f"MathJax copy is {size / 1e6:.1f} MB: the submission zip grows"
    assert not (mathjax / "extensions" / "a11y").exists()  # 3.7 MB that the page never loads
    for ext in ("newcommand", "boldsymbol", "cancel", "color"):  # loaded on demand
        assert (mathjax / "extensions" / "TeX" / f"{ext}.js").is_file(), ext
    # Every STIX-Web font the HTML-CSS output may ask for: its metrics and its web font.
    fonts = mathjax / "jax" / "output" / "HTML-CSS" / "fonts" / "STIX-Web"
    assert (fonts / "fontdata.js").is_file()
    metrics = sorted(fonts.glob("*/*/Main.js"))
    assert len(metrics) > 40
    woff = mathjax / "fonts" / "HTML-CSS" / "STIX-Web" / "woff"
    for m in metrics:
        family, style = m.parent.parent.name, m.parent.name
        assert (woff / f"STIXMathJax_{family}-{style}.woff").is_file(), (family, style)
    config = (mathjax / "config" / f"{html.CONFIG_NAME}.js").read_text(encoding="utf-8")
    assert 'webFont: "STIX-Web"' in config
    assert f'loadComplete("[MathJax]/config/{html.CONFIG_NAME}.js")' in config


def test_export_again_into_the_same_folder(tmp_path: Path):
    nb = _notebook()
    first = html.export_html(nb, tmp_path / "a.html").read_bytes()
    html.export_html(nb, tmp_path / "b.html")
    assert html.export_html(nb, tmp_path / "a.html").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", html.MATHJAX_DIR]
