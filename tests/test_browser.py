"""The notebooks as a student meets them: JupyterLab in headless Chromium, the real client.

One JupyterLab server (this interpreter's environment, 127.0.0.1, a free port, a random
token, fresh Jupyter config/data/runtime folders, so nothing of the user's is used and the
notebooks open untrusted, as from a fresh clone) and one browser serve all the tests here
(pyproject's --dist loadscope keeps a module on one xdist worker). The notebooks are
copies in a temporary folder; ``hw4`` is importable through PYTHONPATH.

- test_notebook_displays: scroll through the whole notebook (JupyterLab renders cells
  lazily) and find no MathJax error (``mjx-merror``) or undefined macro, no formula left
  as raw TeX, no output shown as ``<IPython.core.display...>`` or ``<Figure size ...>``
  text, and every stored image output visible as a loaded ``<img>``.
- test_run_all_in_browser: Run All Cells from the browser on the notebook's fresh kernel;
  no error output, and every code cell ran once, in order.
- test_html_copy_offline: the project's HTML copy (nbtools.html, exported afresh into a
  temporary folder) opened with all network blocked: every formula typeset, no error.

Screenshots go to screenshots/ (git-ignored). Environment variables:
  HW4_BROWSER_NOTEBOOKS=DIR  test DIR/*.ipynb instead of the committed notebooks
  HW4_REQUIRE_BROWSER=1      fail, instead of skipping, where no Chromium is found (CI)
  HW4_CHROMIUM=PATH          the Chromium (or Chrome) to drive; default /usr/bin/chromium
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, XFAIL_BROWSER, XFAIL_HTML, notebook_params

from nbtools import html, runner

NOTEBOOKS_ENV = "HW4_BROWSER_NOTEBOOKS"
REQUIRE_ENV = "HW4_REQUIRE_BROWSER"
CHROMIUM_ENV = "HW4_CHROMIUM"
SCREENSHOTS = ROOT / "screenshots"

SERVER_TIMEOUT = 60  # s for JupyterLab to answer
PAGE_TIMEOUT = 60  # s for a notebook to open (its widgets, its kernel)
CELL_TIMEOUT = 15  # s for one cell to render once scrolled into view
RUN_TIMEOUT = 300  # s for Run All Cells
VIEWPORT = {"width": 1280, "height": 900}

# Chromium must not call home: the flags stop its background services; the browser also
# cannot resolve any host name but the loopback, and each page blocks other requests.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


# --------------------------------------------------------------------------------------
# Which notebooks
# --------------------------------------------------------------------------------------


def _notebook_params(xfail: dict[str, str]) -> list:
    """The committed notebooks (with their known failures), or those of $HW4_BROWSER_NOTEBOOKS."""
    folder = os.environ.get(NOTEBOOKS_ENV)
    if not folder:
        return notebook_params(xfail)
    paths = sorted(Path(folder).glob("*.ipynb"))
    if not paths:
        raise pytest.UsageError(f"{NOTEBOOKS_ENV}={folder}: no *.ipynb there")
    return [pytest.param(p.resolve(), id=p.stem) for p in paths]


def _tested_notebooks() -> list[Path]:
    return [p.values[0] for p in _notebook_params({})]


def _label(nb: nbformat.NotebookNode, index: int) -> str:
    """'cell 41 (code cell 12)' or 'cell 93 (markdown)'."""
    cell = nb.cells[index]
    if cell.cell_type == "code":
        number = sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")
        return f"cell {index} (code cell {number})"
    return f"cell {index} ({cell.cell_type})"


def _stored_images(cell) -> int:
    """Image outputs stored in a code cell (any image/* type, as JupyterLab shows them)."""
    return sum(
        1
        for out in cell.get("outputs", [])
        if any(k.startswith("image/") for k in out.get("data", {}))
    )


def _fail(name: str, problems: list[str]) -> None:
    if problems:
        shown = problems[:25] + ([f"... and {len(problems) - 25} more"] if len(problems) > 25 else [])
        pytest.fail(f"{name}:\n" + "\n".join(f"  {p}" for p in shown), pytrace=False)


# --------------------------------------------------------------------------------------
# Chromium, JupyterLab
# --------------------------------------------------------------------------------------


def _find_chromium() -> str | None:
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return named if Path(named).is_file() else None
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    chromium = _find_chromium()
    if chromium is None:
        where = os.environ.get(CHROMIUM_ENV) or "/usr/bin/chromium, or chromium on PATH"
        reason = (
            f"no Chromium found ({where}): install it (Debian/Ubuntu: "
            f"`sudo apt-get install -y chromium`) or name one: {CHROMIUM_ENV}=/path/to/chrome"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


class Lab:
    """A JupyterLab server of this environment, in its own temporary Jupyter folders."""

    def __init__(self, tmp: Path, notebooks: list[Path]):
        self.work = tmp / "work"
        self.work.mkdir()
        for nb in notebooks:
            shutil.copy(nb, self.work / nb.name)
        jupyter = tmp / "jupyter"
        dirs = {
            "JUPYTER_CONFIG_DIR": jupyter / "config",
            "JUPYTER_DATA_DIR": jupyter / "data",  # no notebook signatures: untrusted
            "JUPYTER_RUNTIME_DIR": jupyter / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": jupyter / "lab" / "user-settings",
            "JUPYTERLAB_WORKSPACES_DIR": jupyter / "lab" / "workspaces",
            "IPYTHONDIR": jupyter / "ipython",
        }
        for d in dirs.values():
            d.mkdir(parents=True)
        # No "fetch news?" toast over the screenshots (the default asks; it never fetches).
        notification = dirs["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
        env.update({k: str(v) for k, v in dirs.items()})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self.token = secrets.token_hex(24)
        cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0",  # port 0: a free one
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.work}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the page's state
            "--LabApp.extension_manager=readonly",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log_path = tmp / "jupyterlab.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.work, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.port = self._wait_until_serving(dirs["JUPYTER_RUNTIME_DIR"])
        self.base = f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 20) -> str:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def _api(self, path: str, method: str = "GET", port: int | None = None) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port or self.port}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status

    def _wait_until_serving(self, runtime: Path) -> int:
        # The server writes jpserver-<pid>.json (its port) once it listens; then it answers.
        info = runtime / f"jpserver-{self.proc.pid}.json"
        deadline = time.monotonic() + SERVER_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self._log.close()
                pytest.fail(
                    f"JupyterLab exited with code {self.proc.returncode}:\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                port = json.loads(info.read_text(encoding="utf-8"))["port"]
                if self._api("/api/status", port=port) == 200:
                    return port
            except (OSError, ValueError, KeyError):
                pass  # not written yet, or not answering yet
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"JupyterLab did not answer within {SERVER_TIMEOUT} s:\n{self.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.1)

    def url(self, name: str) -> str:
        # A workspace of its own, reset: the notebook alone in it.
        workspace = re.sub(r"[^A-Za-z0-9_-]", "-", Path(name).stem)
        return f"{self.base}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def stop(self) -> None:
        """Shut the server down (and its kernels); then by its handle if it lingers."""
        if self.proc.poll() is None:
            try:
                self._api("/api/shutdown", method="POST")
            except (OSError, urllib.error.URLError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):  # browser first: no server started where it is skipped
    server = Lab(tmp_path_factory.mktemp("jupyterlab"), _tested_notebooks())
    try:
        yield server
    finally:
        server.stop()


def _screenshot(page, stem: str, what: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{stem}-{what}.png"))


# --------------------------------------------------------------------------------------
# In the page
# --------------------------------------------------------------------------------------

# The notebook widget is open, its file read, its cells created.
NOTEBOOK_OPEN_JS = """(name) => {
  const w = window.jupyterapp && jupyterapp.shell.currentWidget;
  return !!(w && w.context && w.context.path === name && w.context.isReady
            && w.content && w.content.widgets && w.content.widgets.length > 0);
}"""

KERNEL_IDLE_JS = """() => {
  const k = jupyterapp.shell.currentWidget.sessionContext.session?.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""

UNTRUSTED_JS = """() => {
  const cells = jupyterapp.shell.currentWidget.content.widgets;
  return cells.map((c, i) => [i, c.model.type === 'code' && c.model.outputs.length > 0,
                              c.model.trusted]).filter(([i, outputs, t]) => outputs && t)
                                                      .map(([i]) => i);
}"""

# Scroll down through the notebook a screen at a time, as a student does. Wait until every
# cell in view is rendered (a markdown cell: its math typeset, no TeX left in its text; any
# cell: its images loaded) and record what it shows while in view. Cells never scrolled
# into view (not attached) are then scrolled to one by one.
SCROLL_JS = r"""async ({timeout}) => {
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  const until = async (cond, ms) => {
    const t0 = performance.now();
    while (performance.now() - t0 < ms) { if (cond()) return true; await frame(); }
    return !!cond();
  };
  const rawTeX = /\$\$|\\\(|\\\[|\\begin\{|\\[A-Za-z]{2,}|\$[^$\s][^$]*\$/;
  const textOutsideMath = (root) => {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {acceptNode: n =>
      n.parentElement.closest('code, pre, mjx-container') ? NodeFilter.FILTER_REJECT
                                                            : NodeFilter.FILTER_ACCEPT});
    let text = '';
    for (let n = walker.nextNode(); n; n = walker.nextNode()) text += n.data;
    return text;
  };
  const nb = jupyterapp.shell.currentWidget.content;
  const outer = nb.node.querySelector('.jp-WindowedPanel-outer') || nb.node;
  const cells = nb.widgets;
  const isMarkdown = (c) => c.model.type === 'markdown' && c.model.sharedModel.getSource().trim() !== '';
  const raw = (c) => {
    const md = c.node.querySelector('.jp-MarkdownOutput');
    if (!md || !md.hasChildNodes()) return null;  // not rendered yet
    const m = textOutsideMath(md).match(rawTeX);
    return m ? m[0].slice(0, 80) : '';
  };
  // Settled: typeset, and every output image loaded AND laid out (a loaded image can still
  // have no size for a frame or two; recorded then, it would count as invisible).
  const settled = (c) => c.isAttached && (!isMarkdown(c) || raw(c) === '')
    && [...c.node.querySelectorAll('img')].every(im => im.complete)
    && [...c.node.querySelectorAll('.jp-OutputArea-output img')].every(shown);
  const inView = (c) => {
    if (!c.isAttached) return false;
    const r = c.node.getBoundingClientRect(), v = outer.getBoundingClientRect();
    return r.height > 0 && r.bottom > v.top && r.top < v.bottom;
  };
  const shown = (img) => {
    const r = img.getBoundingClientRect();
    return img.complete && img.naturalWidth > 0 && r.width > 0 && r.height > 0
      && img.checkVisibility({visibilityProperty: true, opacityProperty: true});
  };
  const record = (i) => {
    const c = cells[i];
    const q = (sel) => [...c.node.querySelectorAll(sel)];
    return {
      index: i, type: c.model.type, settled: settled(c),
      raw: isMarkdown(c) ? raw(c) : '',
      formulas: q('mjx-container').length,
      errors: q('mjx-merror').map(e => [e.getAttribute('data-mjx-error'), e.textContent.slice(0, 80)]),
      undefined: q('mjx-assistive-mml mtext[mathcolor="red"]').map(e => e.textContent)
                   .filter(t => t.startsWith('\\')),
      images: q('.jp-OutputArea-output img').map(shown),
      texts: q('.jp-OutputArea-output').map(o => o.textContent.trim())
               .filter(t => /<IPython\.core\.display\.|<Figure size /.test(t)).map(t => t.slice(-100)),
    };
  };
  const facts = cells.map(() => null);
  const look = async (indices) => {
    await until(() => indices.every(i => settled(cells[i])), timeout);
    for (const i of indices) if (!facts[i] || !facts[i].settled) facts[i] = record(i);
  };
  outer.scrollTop = 0;
  for (let screens = 0; screens < 1000; screens++) {
    await frame();
    await look(cells.map((c, i) => i).filter(i => inView(cells[i])));
    if (outer.scrollTop + outer.clientHeight >= outer.scrollHeight - 1) break;
    outer.scrollTop += Math.floor(outer.clientHeight * 0.8);
  }
  for (let i = 0; i < cells.length; i++) {
    if (facts[i]) continue;
    await nb.scrollToItem(i, 'start');
    await look([i]);
  }
  return facts;
}"""

# Run All Cells (the command behind Run > Run All Cells); it settles once every queued cell
# has finished or the run stopped at an error. Then the model's view of each code cell.
RUN_ALL_JS = r"""async ({timeout}) => {
  const w = jupyterapp.shell.currentWidget;
  const run = jupyterapp.commands.execute('notebook:run-all-cells');
  const late = new Promise(r => setTimeout(() => r('timeout'), timeout));
  const result = await Promise.race([run, late]);
  const cells = w.content.widgets.map((c, i) => ({index: i, type: c.model.type,
      source: c.model.sharedModel.getSource(),
      count: c.model.type === 'code' ? c.model.executionCount : null,
      running: c.model.type === 'code' && c.model.executionState === 'running',
      outputs: c.model.type === 'code' ? c.model.outputs.toJSON() : []}));
  return {result: result === 'timeout' ? 'timeout' : !!result,
          kernel: w.sessionContext.session?.kernel?.status, cells};
}"""

SCROLL_TO_JS = "(i) => jupyterapp.shell.currentWidget.content.scrollToItem(i, 'start')"
# The cell's outputs at the bottom of the view (a long code cell's figure is below its start).
SCROLL_TO_OUTPUT_JS = """async (i) => {
  const nb = jupyterapp.shell.currentWidget.content;
  await nb.scrollToItem(i, 'start');
  const cell = nb.widgets[i];
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  const t0 = performance.now();  // images laid out first (at most 5 s)
  while (performance.now() - t0 < 5000
         && ![...cell.node.querySelectorAll('img')].every(im => im.complete)) await frame();
  (cell.node.querySelector('.jp-OutputArea') || cell.node).scrollIntoView({block: 'end'});
  await frame();
  await frame();
}"""
SHUTDOWN_KERNEL_JS = "() => jupyterapp.shell.currentWidget.sessionContext.shutdown()"

# The HTML copy: wait for MathJax 2 to finish typesetting, then collect what it shows.
HTML_JS = r"""async () => {
  await new Promise(r => MathJax.Hub.Queue(() => r()));
  const cells = [...document.querySelectorAll('.jp-Cell')];
  const cellOf = (el) => cells.indexOf(el.closest('.jp-Cell'));
  const errors = [];
  for (const jax of MathJax.Hub.getAllJax()) {
    const script = document.getElementById(jax.inputID);
    const where = script ? cellOf(script) : -1;
    const walk = (node) => {
      if (!node || typeof node !== 'object') return;
      if (node.type === 'merror') errors.push([where, 'TeX error', jax.originalText.slice(0, 80)]);
      if (node.type === 'mtext' && node.mathcolor === 'red')
        errors.push([where, 'undefined macro', jax.originalText.slice(0, 80)]);
      (node.data || []).forEach(walk);
    };
    walk(jax.root);
    if (!document.getElementById(jax.inputID + '-Frame'))
      errors.push([where, 'not rendered', jax.originalText.slice(0, 80)]);
  }
  const rawTeX = /\$\$|\\\(|\\\[|\\begin\{|\\[A-Za-z]{2,}|\$[^$\s][^$]*\$/;
  const skip = 'code, pre, script, .MathJax, .MathJax_Display, .MathJax_Preview';
  const textOutsideMath = (root) => {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {acceptNode: n =>
      n.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
    let text = '';
    for (let n = walker.nextNode(); n; n = walker.nextNode()) text += n.data;
    return text;
  };
  const raw = [];
  for (const md of document.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown')) {
    const m = textOutsideMath(md).match(rawTeX);
    if (m) raw.push([cellOf(md), m[0].slice(0, 80)]);
  }
  return {
    scripts: document.querySelectorAll('script[type^="math/tex"]').length,
    typeset: MathJax.Hub.getAllJax().length,
    errors, raw,
    processingErrors: (document.body.innerText.match(/Math Processing Error/g) || []).length,
    font: MathJax.OutputJax['HTML-CSS'] ? MathJax.OutputJax['HTML-CSS'].fontInUse : null,
    fontErrors: [...document.fonts].filter(f => f.status === 'error' && /STIX/.test(f.family))
                  .map(f => f.family),
    mostMath: cells.map((c, i) => [c.querySelectorAll('.MathJax').length, i])
                   .sort((a, b) => b[0] - a[0])[0],
  };
}"""


class _Page:
    """A browser page on one notebook in JupyterLab."""

    def __init__(self, context, lab: Lab, notebook: Path):
        self.name = notebook.name
        self.ran = False  # Run All changed what it shows
        self.page = context.new_page()
        self.page.goto(lab.url(self.name))
        try:
            self.page.wait_for_function(NOTEBOOK_OPEN_JS, arg=self.name, timeout=PAGE_TIMEOUT * 1000)
            opened = True
        except Exception:  # playwright's TimeoutError
            opened = False
        if not opened:
            self.close()
            pytest.fail(
                f"{self.name}: JupyterLab did not open it within {PAGE_TIMEOUT} s\n"
                f"{lab.log_tail()}",
                pytrace=False,
            )

    def close(self) -> None:
        try:
            self.page.evaluate(SHUTDOWN_KERNEL_JS)  # free its memory now, not at server exit
        except Exception:
            pass  # the page is gone already, or never had a kernel
        self.page.close()


class _Pages:
    """The notebooks open in JupyterLab: the display test opens one, Run All reuses it.

    One browser context for them all (JupyterLab's scripts are fetched once); every request
    off the JupyterLab server is blocked.
    """

    def __init__(self, browser, lab: Lab):
        self.lab = lab
        self.open: dict[str, _Page] = {}
        self.context = browser.new_context(viewport=VIEWPORT)
        base = re.escape(lab.base + "/")
        self.context.route(re.compile(rf"^(?!{base})(?!data:)(?!blob:)"), lambda r: r.abort())

    def get(self, notebook: Path, *, as_opened: bool) -> _Page:
        """The notebook's page; with as_opened, one that Run All has not touched."""
        tab = self.open.get(notebook.name)
        if tab is not None and as_opened and tab.ran:
            self.done(notebook)
            tab = None
        if tab is None:
            tab = self.open[notebook.name] = _Page(self.context, self.lab, notebook)
        return tab

    def done(self, notebook: Path) -> None:
        tab = self.open.pop(notebook.name, None)
        if tab is not None:
            tab.close()

    def close_all(self) -> None:
        for tab in list(self.open.values()):
            tab.close()
        self.open.clear()
        self.context.close()


@pytest.fixture(scope="module")
def pages(browser, lab):
    opened = _Pages(browser, lab)
    try:
        yield opened
    finally:
        opened.close_all()


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("notebook", _notebook_params(XFAIL_BROWSER))
def test_notebook_displays(notebook: Path, pages: _Pages):
    nb = nbformat.read(notebook, as_version=4)
    stem = notebook.stem
    try:
        page = pages.get(notebook, as_opened=True).page
        trusted = page.evaluate(UNTRUSTED_JS)
        assert not trusted, (
            f"{notebook.name} opened trusted (cells {trusted}): the test would not see what a "
            "fresh clone shows"
        )
        facts = page.evaluate(SCROLL_JS, {"timeout": CELL_TIMEOUT * 1000})
        assert len(facts) == len(nb.cells), (
            f"{notebook.name}: JupyterLab shows {len(facts)} cells, the file has {len(nb.cells)}"
        )
        problems: list[str] = []
        first_bad: dict[str, int] = {}  # cell type -> its first cell with a problem
        for f in facts:
            i, label = f["index"], _label(nb, f["index"])
            before = len(problems)
            if not f["settled"]:
                problems.append(f"{label}: not rendered within {CELL_TIMEOUT} s in view")
            if f["raw"]:
                problems.append(f"{label}: raw TeX left in the text: {f['raw']}")
            for message, tex in f["errors"]:
                problems.append(f'{label}: MathJax error "{message}" in: {tex}')
            for name in f["undefined"]:
                problems.append(f"{label}: undefined macro {name}")
            for text in f["texts"]:
                problems.append(f"{label}: output shown as text: {text}")
            expected = _stored_images(nb.cells[i])
            if sum(f["images"]) != expected:
                problems.append(
                    f"{label}: {expected} stored image output(s), {sum(f['images'])} visible "
                    f"(of {len(f['images'])} <img>)"
                )
            if len(problems) > before:
                first_bad.setdefault(nb.cells[i].cell_type, i)

        # Screenshots: the top, the most formulas, the first figure (or what shows instead),
        # the first problem in a markdown cell and in a code cell's outputs.
        page.evaluate(SCROLL_TO_JS, 0)
        _screenshot(page, stem, "1-lab-top")
        most = max(facts, key=lambda f: f["formulas"])
        page.evaluate(SCROLL_TO_JS, most["index"])
        _screenshot(page, stem, "2-lab-math")
        figures = [f["index"] for f in facts if _stored_images(nb.cells[f["index"]]) or f["texts"]]
        if figures:
            page.evaluate(SCROLL_TO_OUTPUT_JS, figures[0])
            _screenshot(page, stem, "3-lab-figure")
        for kind in ("markdown", "code"):
            what = f"0-lab-first-problem-{kind}"
            if kind in first_bad:
                page.evaluate(SCROLL_TO_OUTPUT_JS if kind == "code" else SCROLL_TO_JS, first_bad[kind])
                _screenshot(page, stem, what)
            else:  # none left over from an earlier run
                (SCREENSHOTS / f"{stem}-{what}.png").unlink(missing_ok=True)
        _fail(notebook.name, problems)
    except BaseException:
        pages.done(notebook)  # a broken page is not reused
        raise


def _wait_or_fail(page, js: str, seconds: float, message) -> None:
    """Wait until js is truthy in page; else fail the test with message() (one report, no
    playwright traceback)."""
    try:
        page.wait_for_function(js, timeout=seconds * 1000)
        return
    except Exception:  # playwright's TimeoutError
        pass
    pytest.fail(message(), pytrace=False)


@pytest.mark.parametrize("notebook", _notebook_params({}))
def test_run_all_in_browser(notebook: Path, pages: _Pages):
    nb = nbformat.read(notebook, as_version=4)
    try:
        tab = pages.get(notebook, as_opened=False)
        page = tab.page
        _wait_or_fail(
            page, KERNEL_IDLE_JS, PAGE_TIMEOUT,
            lambda: f"{notebook.name}: its kernel did not start within {PAGE_TIMEOUT} s (does "
            f"its metadata name a kernel, python3?)\n{pages.lab.log_tail()}",
        )
        tab.ran = True
        ran = page.evaluate(RUN_ALL_JS, {"timeout": RUN_TIMEOUT * 1000})
        problems = []
        if ran["result"] == "timeout":
            problems.append(f"Run All Cells did not finish within {RUN_TIMEOUT} s")
        code = [c for c in ran["cells"] if c["type"] == "code" and c["source"].strip()]
        for c in code:
            label = _label(nb, c["index"])
            for out in c["outputs"]:
                if out.get("output_type") == "error":
                    problems.append(f"{label} failed: {out.get('ename')}: {out.get('evalue')}")
                elif runner.is_usage_error(out):
                    problems.append(f"{label} failed: {''.join(out['text']).strip()}")
            if c["running"]:
                problems.append(f"{label} still running")
        counts = [c["count"] for c in code]
        if counts != list(range(1, len(code) + 1)):
            not_run = [_label(nb, c["index"]) for c in code if c["count"] is None]
            problems.append(
                f"not every code cell ran once, in order: execution counts {counts}"
                + (f"; never ran: {', '.join(not_run[:5])}" if not_run else "")
            )
        figures = [i for i, c in enumerate(nb.cells) if _stored_images(c)]
        page.evaluate(SCROLL_TO_OUTPUT_JS, figures[0] if figures else 0)
        _screenshot(page, notebook.stem, "4-lab-after-run-all")
        _fail(notebook.name, problems)
    finally:
        pages.done(notebook)


@pytest.mark.parametrize("notebook", _notebook_params(XFAIL_HTML))
def test_html_copy_offline(notebook: Path, browser, tmp_path: Path):
    nb = runner.read(notebook)
    dest = html.export_html(nb, tmp_path / "html" / f"{notebook.stem}.html")
    context = browser.new_context(viewport=VIEWPORT, offline=True)
    left: list[str] = []  # requests that would have left the machine
    missing: list[str] = []  # local files the page asked for and did not get

    def block(route):
        left.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(?!file:)"), block)
    try:
        page = context.new_page()
        page.on(
            "requestfailed",
            lambda r: missing.append(r.url) if r.url.startswith("file:") else None,
        )
        page.goto(dest.as_uri())
        _wait_or_fail(
            page, "() => window.MathJax && MathJax.isReady", 30,
            lambda: f"{dest.name}: MathJax did not start offline; missing files: {missing}; "
            f"blocked: {left}",
        )
        facts = page.evaluate(HTML_JS)
        problems = []
        if facts["typeset"] == 0 or facts["typeset"] != facts["scripts"]:
            problems.append(f"{facts['typeset']} formulas typeset of {facts['scripts']} found")
        for index, kind, tex in facts["errors"]:
            problems.append(f"{_label(nb, index) if index >= 0 else '?'}: {kind} in: {tex}")
        for index, text in facts["raw"]:
            problems.append(f"{_label(nb, index)}: raw TeX left in the text: {text}")
        if facts["processingErrors"]:
            problems.append(f"{facts['processingErrors']} 'Math Processing Error'")
        if facts["font"] != "STIX-Web" or facts["fontErrors"]:
            problems.append(f"fonts: in use {facts['font']}, failed {facts['fontErrors']}")
        mathjax = [u for u in missing if f"/{html.MATHJAX_DIR}/" in u]
        if mathjax:
            problems.append(f"MathJax files missing from the copy: {mathjax}")

        _screenshot(page, notebook.stem, "5-html-top")
        if facts["mostMath"]:
            page.locator(".jp-Cell").nth(facts["mostMath"][1]).scroll_into_view_if_needed()
            _screenshot(page, notebook.stem, "6-html-math")
        _fail(dest.name, problems)
    finally:
        context.close()
