"""The browser harness itself, on a throwaway notebook: JupyterLab opens it, runs it, the widget
front end draws the views, a button click reaches the kernel, and updates made from a
background thread (how every workbench panel reports progress) reach the page while the thread
runs, not only at the end. ipykernel 7 changed how messages from other threads are sent; this
is where a regression there would show.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

PROBE_SOURCE = '''\
import threading, time
import ipywidgets as w

label = w.Label("ticks: 0")
bar = w.IntProgress(min=0, max=40, description="progress")
button = w.Button(description="Start ticking")

def tick():
    # Runs off the kernel's main thread, like a training job's progress callback.
    for i in range(1, 41):
        time.sleep(0.1)
        bar.value = i
        label.value = f"ticks: {i}"
    label.value = "ticks: done"

button.on_click(lambda _b: threading.Thread(target=tick, daemon=True).start())
w.VBox([button, bar, label])
'''
# Keeps the kernel's main thread busy when run again by hand (Run All runs it with 0 s).
BUSY_SOURCE = "time.sleep(busy_s)\nbusy_s = 3.0"


def make_probe(folder: Path) -> Path:
    """A title, an environment check, the ticking panel, and a cell that keeps the kernel busy."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Probe"),
                nbformat.v4.new_code_cell("import os\nassert os.environ['WORKBENCH_QUICK'] == '1'\n"
                                          "print('home', os.environ['WORKBENCH_HOME'])"),
                nbformat.v4.new_code_cell("busy_s = 0.0\n" + PROBE_SOURCE),
                nbformat.v4.new_code_cell(BUSY_SOURCE)]
    path = folder / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def test_background_thread_updates_reach_the_page(lab, tmp_path):
    """Run the probe, press its button, and watch the label count up live, then finish."""
    from playwright.sync_api import expect  # here: without Playwright the test is skipped, not broken

    rel = lab.add_notebook(make_probe(tmp_path), subdir="probe")
    lab.open(rel)
    lab.shot("opened")
    lab.run_all(timeout=60)
    lab.assert_widgets_rendered(min_widgets=3)
    assert lab.page.get_by_text("ticks: 0", exact=True).count() == 1
    page = lab.page
    # The kernel got the test's WORKBENCH_HOME, not the developer's.
    page.get_by_text(f"home {lab.server.home}").wait_for()
    label = lab.notebook.locator(".widget-label").filter(has_text=re.compile(r"^ticks: "))
    assert label.inner_text() == "ticks: 0"
    lab.shot("rendered")

    page.get_by_role("button", name="Start ticking").click()
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = label.inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        if text == "ticks: done":
            break
        if len(seen) == 3:
            lab.shot("ticking")
        page.wait_for_timeout(100)
    lab.shot("done")
    assert seen[-1] == "ticks: done", f"the thread's updates stopped reaching the page: {seen}"
    live = [s for s in seen if re.fullmatch(r"ticks: ([1-9]|[1-3]\d)", s)]
    # 40 updates over ~4 s, sampled every ~0.1 s: several intermediate values must be seen,
    # else the updates are being held back and delivered in one burst at the end.
    assert len(live) >= 5, f"updates did not arrive while the thread ran: {seen}"
    # Again, while a cell keeps the kernel's main thread busy: a running job's updates must
    # still reach the page (a user keeps working while training runs).
    page.get_by_role("button", name="Start ticking").click()
    expect(label).not_to_have_text("ticks: done", timeout=10_000)
    busy_cell = lab.notebook.locator(".jp-CodeCell").last
    busy_cell.locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Shift+Enter")
    page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\|\s*Busy\b")).wait_for(timeout=10_000)
    during_busy: list[str] = []
    while lab.kernel_status() == "Busy":
        text = label.inner_text()
        if not during_busy or during_busy[-1] != text:
            during_busy.append(text)
        page.wait_for_timeout(100)
    lab.shot("updates_while_busy")
    assert len([s for s in during_busy if re.fullmatch(r"ticks: \d+", s)]) >= 5, (
        f"updates from the thread stalled while another cell ran: {during_busy}")
    print(f"while busy: {len(during_busy)} label values, {during_busy[0]!r} … {during_busy[-1]!r}")
    label.filter(has_text="ticks: done").wait_for(timeout=20_000)

    bar = lab.notebook.locator(".widget-hprogress progress, .widget-hprogress .progress-bar").first
    assert bar.count() == 1
    assert not lab.error_outputs()
