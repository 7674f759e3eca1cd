"""JupyterLab in headless chromium: the fixtures behind the browser tests.

One ``jupyter lab`` server per test session (127.0.0.1, a free port, no token, a temporary
``WORKBENCH_HOME`` and temporary Jupyter config/runtime/settings folders, so the developer's
own Jupyter setup and run log are never touched), one chromium per session (Debian's
``/usr/bin/chromium`` driven by Playwright; no browser is ever downloaded), and one fresh
browser context per test.

Notebooks are copied into the server's temporary root before they are opened: JupyterLab
writes outputs back to the file it opened, and the repository's notebooks must stay clean.

Screenshots of each step go to ``tests/browser/artifacts/<test name>/`` (git-ignored), plus a
``FAILED.png``, the page's console log and the server log when a test fails.

Skipped, with the reason printed in the summary, when ``--no-browser`` is given (registered in
the root ``conftest.py``), when chromium is absent, or when Playwright is not installed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# What a widget output shows when the front end never got (or could not draw) its model.
WIDGET_FAILURE_TEXTS = ("Loading widget...", "Error displaying widget", "Error rendering widget")

_skip_reasons: set[str] = set()


def _browser_unavailable(config: pytest.Config) -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if config.getoption("no_browser", default=False):
        return "--no-browser given"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium, or pass --no-browser)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``browser``-marked test, with one clear reason, when no browser can run."""
    browser_items = [it for it in items if it.get_closest_marker("browser")]
    if not browser_items:
        return
    reason = _browser_unavailable(config)
    if reason:
        _skip_reasons.add(reason)
        for it in browser_items:
            it.add_marker(pytest.mark.skip(reason=f"browser test skipped: {reason}"))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    """Say out loud that the browser tests did not run (a skip must never read as a pass)."""
    for reason in sorted(_skip_reasons):
        terminalreporter.write_line(f"BROWSER TESTS SKIPPED: {reason}", yellow=True, bold=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):  # noqa: ANN001
    """Keep each phase's report on the item so fixtures can tell a failed test at teardown."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


class LabServer:
    """A running ``jupyter lab`` (URL, its root folder, its WORKBENCH_HOME, its log file)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.home = base / "workbench-home"
        self.log_path = base / "jupyter-lab.log"
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """The server's environment: inherited by every kernel it starts."""
        cfg = self.base / "jupyter-config"
        # Token-less and offline, for this test server only (it listens on 127.0.0.1).
        _write_json(cfg / "jupyter_server_config.json", {
            "IdentityProvider": {"token": ""},
            # No XSRF check either, so the fixtures can shut kernels down over REST.
            "ServerApp": {"password": "", "open_browser": False, "ip": "127.0.0.1",
                          "allow_root": True, "root_dir": str(self.root), "disable_check_xsrf": True},
            "LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                       "extension_manager": "readonly", "news_url": None},
        })
        # The "receive Jupyter news?" toast would cover the page; no announcements offline.
        _write_json(cfg / "labconfig" / "page_config.json",
                    {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        settings = self.base / "lab-settings"
        # Render every cell (no virtual scrolling), so a check never misses an off-screen panel,
        # and never autosave: the copies are throwaway but the tests should not race a save.
        _write_json(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
                    {"windowingMode": "none"})
        _write_json(settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings",
                    {"autosave": False})
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(cfg),
            "JUPYTER_RUNTIME_DIR": str(self.base / "jupyter-runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.base / "lab-workspaces"),
            "WORKBENCH_HOME": str(self.home),
            "WORKBENCH_QUICK": "1",
            "PYTHONUNBUFFERED": "1",
        })
        # The root conftest sets MPLBACKEND=Agg for headless runs; in a real browser the
        # kernel must use the inline backend a user gets, or figures would never reach the page.
        env.pop("MPLBACKEND", None)
        return env

    def start(self, timeout: float = 90.0) -> None:
        """Start the server on a free port and wait until its REST API answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.env()
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            log = open(self.log_path, "a")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter", "lab", f"--port={port}", "--port-retries=0",
                 "--no-browser"],
                env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(self.url + "/api/status", timeout=2) as r:
                        if r.status == 200:
                            return
                except OSError:
                    time.sleep(0.25)
            self.stop()
        raise RuntimeError(f"jupyter lab did not start; see {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (and with it every kernel it started)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """One ``jupyter lab`` for the whole session, stopped at the end."""
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Debian's chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Lab:
    """One browser tab on the test server, with the steps a user takes in JupyterLab."""

    def __init__(self, server: LabServer, page, artifacts: Path) -> None:  # noqa: ANN001
        self.server = server
        self.page = page
        self.artifacts = artifacts
        self.workspace = re.sub(r"[^\w-]+", "-", artifacts.name)[:60]
        self.console: list[str] = []
        self._shots = 0
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))

    # -- files and navigation ------------------------------------------------------------
    def add_notebook(self, src: Path, subdir: str = "notebooks") -> str:
        """Copy a notebook into the server's root; return its path relative to the root."""
        dest = self.server.root / subdir / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        return f"{subdir}/{src.name}"

    @property
    def notebook(self):  # noqa: ANN201
        """The notebook panel in front (hidden tabs' cells must never match a check)."""
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def open(self, relpath: str, timeout: float = 60.0) -> None:
        """Open a notebook, alone, in a fresh workspace, and wait until its kernel is idle."""
        # A workspace of its own, reset: JupyterLab would otherwise restore the tabs an
        # earlier test left open (and their kernels) next to this notebook.
        self.page.goto(f"{self.server.url}/lab/workspaces/{self.workspace}/tree/{relpath}?reset")
        self.notebook.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout * 1000)
        self.wait_idle(timeout)

    def kernel_status(self) -> str:
        """The kernel status text in the notebook toolbar's status bar ("Idle", "Busy", …)."""
        text = self.page.locator("#jp-main-statusbar").inner_text()
        m = re.search(r"\|\s*(\w[\w ]*)", text)
        return m.group(1).strip() if m else text

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the notebook's kernel reports Idle."""
        self.page.locator("#jp-main-statusbar").get_by_text(
            re.compile(r"\|\s*Idle\b")).wait_for(timeout=timeout * 1000)

    def run_all(self, timeout: float = 120.0) -> None:
        """Run > Run All Cells, as a user would, and wait until every code cell has run."""
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
        prompts = self.notebook.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt")
        deadline = time.monotonic() + timeout
        while True:
            texts = [t.strip() for t in prompts.all_inner_texts()]
            if texts and all(re.fullmatch(r"\[\d+\]:", t) for t in texts):
                break
            if self.error_outputs():
                break  # Run All stops at the first error; report it rather than time out
            if time.monotonic() > deadline:
                raise AssertionError(f"cells still running after {timeout:.0f} s: {texts}")
            self.page.wait_for_timeout(250)
        self.wait_idle(timeout)

    # -- what the page shows -------------------------------------------------------------
    def error_outputs(self) -> list[str]:
        """Tracebacks shown in the notebook's outputs."""
        # JupyterLab draws an error output as stderr text; warnings are stderr too, so a
        # traceback is told apart by IPython's header line.
        stderr = self.notebook.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return [t[-1500:] for t in stderr.all_inner_texts() if "Traceback (most recent call last)" in t]

    def widget_failures(self) -> list[str]:
        """Widget outputs that never rendered ("Loading widget...") or failed to."""
        out = self.notebook.locator(".jp-OutputArea-output")
        return [t.strip()[:200] for t in out.all_inner_texts()
                if any(f in t for f in WIDGET_FAILURE_TEXTS)]

    def broken_images(self) -> list[str]:
        """Visible output images the browser could not draw (an empty Image widget shows as a
        broken-image icon): the enclosing widget's text, for the message."""
        return self.notebook.locator(".jp-OutputArea-output img").evaluate_all(
            """els => els.filter(e => e.complete && e.naturalWidth === 0 && e.offsetParent !== null)
                        .map(e => (e.closest('.jp-OutputArea-output') || e)
                                  .innerText.replace(/\\s+/g, ' ').trim().slice(0, 60))""")

    def console_errors(self) -> list[str]:
        """Errors the front end logged (a widget state it could not apply, an exception in the page)."""
        return [m for m in self.console if m.startswith(("[error]", "[pageerror]"))
                and "favicon" not in m]

    def stderr_outputs(self) -> list[str]:
        """Every stderr output in the notebook (Lightning chatter, warnings, tracebacks)."""
        stderr = self.notebook.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return [t.strip()[:300] for t in stderr.all_inner_texts() if t.strip()]

    def assert_clean(self, where: str) -> None:
        """No broken image, no front-end error, no traceback on the page right now."""
        broken = self.broken_images()
        assert not broken, f"{where}: {len(broken)} broken-image icon(s): {broken}"
        errors = self.console_errors()
        assert not errors, f"{where}: the front end logged errors:\n" + "\n".join(errors[:10])
        tracebacks = self.error_outputs()
        assert not tracebacks, f"{where}: a traceback on the page:\n" + "\n---\n".join(tracebacks)

    def assert_widgets_rendered(self, min_widgets: int = 1) -> None:
        """At least ``min_widgets`` widget views drawn, none stuck loading or failed, no traceback."""
        errors = self.error_outputs()
        assert not errors, "notebook shows a traceback:\n" + "\n---\n".join(errors)
        # Models arrive asynchronously; give a slow front end a moment before judging.
        deadline = time.monotonic() + 20
        while self.widget_failures() and time.monotonic() < deadline:
            self.page.wait_for_timeout(250)
        failures = self.widget_failures()
        assert not failures, f"widgets did not render: {failures}"
        views = self.notebook.locator(".jp-OutputArea-output .jupyter-widgets.widget-container,"
                                  " .jp-OutputArea-output .jupyter-widgets:not(.widget-container)")
        assert views.count() >= min_widgets, f"only {views.count()} widget views on the page"

    def plots(self):  # noqa: ANN201
        """The plotly figures drawn in the notebook (interactive charts and panels' live figures)."""
        return self.notebook.locator(".js-plotly-plot")

    def show_plots(self, timeout_s: float = 30.0) -> int:
        """Scroll every plotly output into view (JupyterLab's plotly renderer draws a figure once it
        is on screen) and wait until each is drawn; returns how many plotly figures the page has."""
        outs = self.notebook.locator(".jp-RenderedPlotly")
        for i in range(outs.count()):
            out = outs.nth(i)
            out.scroll_into_view_if_needed()
            deadline = time.monotonic() + timeout_s
            while not out.locator("svg.main-svg").count() and time.monotonic() < deadline:
                self.page.wait_for_timeout(200)
            assert out.locator("svg.main-svg").count(), f"plotly output {i} was never drawn"
        return self.plots().count()

    @staticmethod
    def y_ticks(plot) -> list[str]:  # noqa: ANN001
        """The y-axis tick labels a plotly figure shows, with where they are drawn (a log axis may
        label 0.5, 1, 2 as a linear one does, but not at the same heights)."""
        return plot.evaluate("el => Array.from(el.querySelectorAll('.ytick text'))"
                             ".map(t => t.textContent + '@' + (t.getAttribute('transform') || t.getAttribute('y')))")

    @staticmethod
    def y_axis_type(plot) -> str:  # noqa: ANN001
        """The y-axis type the page's plotly figure was drawn with (``linear`` / ``log``)."""
        return plot.evaluate("el => { const p = el.classList.contains('js-plotly-plot') ? el :"
                             " el.querySelector('.js-plotly-plot'); return p._fullLayout.yaxis.type }")

    @staticmethod
    def trace_names(plot) -> list[str]:  # noqa: ANN001
        """The legend entries of a plotly figure."""
        return plot.evaluate("el => Array.from(el.querySelectorAll('.legendtext')).map(t => t.textContent)")

    def shot(self, name: str) -> Path:
        """Screenshot the page as ``NN_name.png`` in this test's artifact folder."""
        self._shots += 1
        path = self.artifacts / f"{self._shots:02d}_{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path


@pytest.fixture()
def lab(request: pytest.FixtureRequest, lab_server: LabServer, chromium) -> Iterator[Lab]:  # noqa: ANN001
    """A fresh browser context and tab on the session's JupyterLab."""
    artifacts = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    helper = Lab(lab_server, page, artifacts)
    try:
        yield helper
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            try:
                page.screenshot(path=str(artifacts / "FAILED.png"), full_page=True)
            except Exception:  # a crashed page must not hide the real failure
                pass
            (artifacts / "jupyter-lab.log").write_text(lab_server.log_tail(400))
        (artifacts / "console.log").write_text("\n".join(helper.console))
        context.close()
        # Shut the kernels down so a still-running panel thread cannot load the next test.
        _shutdown_kernels(lab_server)


def _shutdown_kernels(server: LabServer) -> None:
    """Shut down every kernel on the server (REST API), ignoring ones already gone."""
    try:
        with urllib.request.urlopen(server.url + "/api/kernels", timeout=5) as r:
            kernels = json.load(r)
        for k in kernels:
            req = urllib.request.Request(f"{server.url}/api/kernels/{k['id']}", method="DELETE")
            urllib.request.urlopen(req, timeout=10).close()
    except OSError:
        pass
