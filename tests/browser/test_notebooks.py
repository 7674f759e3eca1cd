"""The workbench's notebooks in JupyterLab, as a user runs them: Run All in quick mode, the
panels render in the page (no "Loading widget…", no error text, no traceback), and the panels'
buttons work from the page.

Each test copies the notebook into the server's temporary root, so the repository copy is
never written to. Notebook 02 trains on the demo dataset notebook 01 builds; the server's
``WORKBENCH_HOME`` is shared by the tests of one session, as it is by a user's notebooks.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# The README's screenshots of each panel; rewritten only with WORKBENCH_UPDATE_DOCS_SCREENSHOT=1.
DOCS = Path(__file__).resolve().parents[2] / "docs"


def doc_shot(lab, locator, name: str, tall: bool = True) -> Path:  # noqa: ANN001
    """Screenshot one panel into the test's artifacts (and docs/NAME.png when asked to refresh them)."""
    size = lab.page.viewport_size
    if tall:  # a tall panel fits whole
        lab.page.set_viewport_size({"width": size["width"], "height": 2000})
    path = lab.artifacts / f"{name}.png"
    try:
        try:
            locator.scroll_into_view_if_needed(timeout=10_000)
            locator.screenshot(path=str(path), timeout=10_000)
        except Exception:  # Playwright can call an output "not visible" while it is drawn: clip the page
            locator.evaluate("el => el.scrollIntoView()")
            box = locator.bounding_box()
            assert box and box["width"] > 10 and box["height"] > 10, f"{name}: nothing to screenshot ({box})"
            lab.page.screenshot(path=str(path), clip=box)
    finally:
        lab.page.set_viewport_size(size)
    if os.environ.get("WORKBENCH_UPDATE_DOCS_SCREENSHOT"):
        shutil.copy(path, DOCS / f"{name}.png")
    return path


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.25):  # noqa: ANN001, ANN201
    """Poll ``predicate()`` until it returns something truthy; fail saying ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def output_of(lab, text: str):  # noqa: ANN001, ANN201
    """The widget output area (one cell's output) holding a widget labelled ``text``."""
    return lab.notebook.locator(".jp-OutputArea-output").filter(has=lab.page.get_by_text(text, exact=True)).last


def wait_image_loaded(img, timeout_s: float = 30.0) -> tuple[int, int]:  # noqa: ANN001
    """Wait until an <img> shows a decoded picture; return its natural size."""
    img.wait_for(state="visible", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        w, h = img.evaluate("el => [el.naturalWidth, el.naturalHeight]")
        if w > 1 and h > 1:
            return w, h
        time.sleep(0.2)
    raise AssertionError("the image never loaded")


def test_01_scraping_panel_renders(lab):
    """Notebook 01 runs to the end in the page; its scrape panel shows full bars and a preview."""
    lab.open(lab.add_notebook(NOTEBOOKS / "01_scraping.ipynb"))
    lab.shot("opened")
    t0 = time.monotonic()
    lab.run_all(timeout=180)
    ran = time.monotonic() - t0
    lab.assert_widgets_rendered(min_widgets=5)
    lab.assert_clean("notebook 01 after Run All")
    panel = output_of(lab, "Overall")
    panel.scroll_into_view_if_needed()
    lab.shot("scrape_panel")
    # The panel was clicked from code; the final values its thread set must be on the page.
    overall = panel.locator(".widget-hprogress").filter(has_text="Overall")
    assert overall.count() == 1
    width = overall.locator(".progress-bar").first.evaluate("el => el.style.width")
    assert width == "100%", f"overall bar at {width}"
    assert panel.get_by_text(re.compile(r"^10 of 10 images")).count() == 2, panel.inner_text()
    w, h = wait_image_loaded(panel.locator(".widget-image").last)
    assert w > 100 and h > 50, (w, h)

    # A user's click on Start in the page reaches the kernel; the panel reruns (resuming: the
    # images are there already) and draws its result again, from its background thread.
    start = panel.get_by_role("button", name=re.compile(r"^\W*Start$"))
    status = panel.locator(".widget-html").filter(has_text=re.compile(r"\d+ images")).first
    before = status.inner_text()
    start.click()
    deadline = time.monotonic() + 90
    # Done when the status line has changed (the click reached the kernel) and Start is back.
    while (status.inner_text() == before or start.is_disabled()) and time.monotonic() < deadline:
        time.sleep(0.25)
    lab.shot("clicked_start")
    assert status.inner_text() != before, f"the click never reached the panel (kernel {lab.kernel_status()})"
    assert start.is_enabled(), f"the panel never finished its run (kernel {lab.kernel_status()})"
    text = panel.inner_text()
    assert "Error" not in status.inner_text() and "Traceback" not in text, status.inner_text()
    assert re.search(r"20 images, 2 labels, 0 new", status.inner_text()), status.inner_text()
    assert "0 new · 0 rejected · 20 already there" in text, text
    wait_image_loaded(panel.locator(".widget-image").last)
    lab.assert_clean("notebook 01 after Start")
    doc_shot(lab, panel, "scrape_panel")
    print(f"notebook 01: Run All took {ran:.1f} s in the browser; after a click: {status.inner_text()[:160]}")


STOP_RUN_NAME = "browser-start-stop"


def test_02_train_panel_live_curve_stop_and_runs_panel(lab):
    """Notebook 02 in the page: the curves are interactive plotly figures; the train panel says why
    Start is disabled, draws its live figure while training runs (no broken image before or after
    Start), its log toggle changes the y axis, Stop ends the run ``stopped``, Test tests it; the runs
    panel lists it, shows its detail view as tables, and clears on a query that matches nothing."""
    import json

    from workbench.runlog import RunLog

    lab.open(lab.add_notebook(NOTEBOOKS / "02_baseline_training.ipynb"))
    t0 = time.monotonic()
    lab.run_all(timeout=240)
    ran = time.monotonic() - t0
    lab.assert_widgets_rendered(min_widgets=8)
    lab.assert_clean("notebook 02 after Run All")
    assert not lab.stderr_outputs(), f"notebook 02 printed to stderr: {lab.stderr_outputs()}"  # quiet Lightning
    page = lab.page
    # The story's curves and confusion matrix are interactive figures, not pictures.
    assert lab.notebook.locator(".jp-RenderedPlotly").count() == 2  # the curves and the confusion matrix
    assert lab.show_plots() >= 4, f"{lab.plots().count()} plotly figures on the page"
    train = output_of(lab, "Status:")
    runs = lab.notebook.locator(".jp-OutputArea-output").filter(
        has=page.get_by_role("button", name=re.compile(r"^\W*Refresh$"))).last
    train.scroll_into_view_if_needed()
    lab.shot("panels_rendered")
    status = train.locator(".widget-label").filter(has_text=re.compile(r"^(idle|queued|running|stopp|trained|testing|completed|failed)"))
    assert status.inner_text() == "idle"
    assert "command is valid" in train.inner_text()
    start = train.get_by_role("button", name=re.compile(r"^\W*Start$"))
    stop = train.get_by_role("button", name=re.compile(r"^\W*Stop$"))
    test = train.get_by_role("button", name=re.compile(r"^\W*Test$"))
    assert start.is_enabled() and stop.is_disabled() and test.is_disabled()
    # The runs panel was filled by the notebook: the two baseline runs, overlaid curves drawn.
    assert runs.locator("table tr").count() >= 3, runs.inner_text()
    assert set(lab.trace_names(runs.locator(".js-plotly-plot").first)) >= {"adam-baseline · train_loss",
                                                                           "sgd-baseline · train_loss"}

    # A wrong data folder: said at once, and Start is disabled until it is fixed.
    data_box = train.locator("input[type=text]").first
    good_data = data_box.input_value()
    data_box.fill("/no/such/folder")
    train.get_by_text(re.compile("does not exist")).wait_for(timeout=20_000)
    assert start.is_disabled(), "Start must be disabled while the data folder is wrong"
    data_box.fill(good_data)
    train.get_by_text("command is valid").wait_for(timeout=20_000)

    # The notebook left the runs panel's name filter on "baseline"; filter on the run to come.
    runs.get_by_placeholder("part of a run name").fill(STOP_RUN_NAME)
    runs.get_by_text("no runs match").wait_for(timeout=20_000)
    runs.get_by_text("select a run above").wait_for(timeout=20_000)  # the detail view cleared with it
    assert runs.locator(".js-plotly-plot:visible").count() == 0

    # Edit the command in the page as a user would: a distinct name, and enough epochs that the
    # run is still going when Stop is pressed.
    editor = train.locator("textarea").first
    cmd = json.loads(editor.input_value())
    cmd.update(name=STOP_RUN_NAME, epochs=100_000)  # far more than the test waits for: Stop must end it
    editor.fill(json.dumps(cmd, indent=1))
    train.get_by_text("command is valid").wait_for(timeout=20_000)
    lab.assert_clean("train panel before Start")  # no broken image before the first run
    start.click()
    started = train.get_by_text(re.compile(r"^started run \S+$"))
    started.wait_for(timeout=60_000)
    run_id = started.inner_text().split()[-1]

    # Live: sample the figure's line and the status line while the run trains.
    plot = train.locator(".js-plotly-plot").first
    lines: list[str] = []
    statuses: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = status.inner_text()
        d = plot.evaluate("el => (el.querySelector('.scatterlayer .trace path.js-line') || {}).getAttribute?.('d') || ''")
        if text.startswith("running") and "train_loss" in text:
            if not statuses or statuses[-1] != text:
                statuses.append(text)
            if d and (not lines or lines[-1] != d):
                lines.append(d)
                if len(lines) == 2:
                    lab.shot("training_live")
        if len(lines) >= 4 and len(statuses) >= 3:
            break
        assert not text.startswith(("trained", "failed", "stopped")), f"run ended before Stop: {text}"
        time.sleep(0.2)
    assert len(lines) >= 4, f"the live curve was redrawn {len(lines)} times while training (statuses {statuses})"
    assert len(statuses) >= 3, statuses
    assert re.search(r"epoch \d+/100000 · step \d+", statuses[-1]), statuses[-1]  # epoch x/y, not just a number
    assert STOP_RUN_NAME in " ".join(lab.trace_names(plot))  # the run's name in the legend, not an id tail
    # The interactive plot responds: the log toggle changes the y axis.
    linear = lab.y_ticks(plot)
    train.get_by_role("button", name="log", exact=True).click()
    wait_for(lambda: lab.y_ticks(plot) != linear and lab.y_axis_type(plot) == "log", 20, "the y axis to change to log")
    lab.assert_clean("train panel while training")
    doc_shot(lab, train, "train_panel")
    lab.shot("before_stop")

    assert stop.is_enabled()
    stop.click()
    status.filter(has_text=re.compile(r"^stopped$")).wait_for(timeout=60_000)
    wait_for(lambda: start.is_enabled() and stop.is_disabled() and test.is_enabled(), 10,
             "Start and Test enabled, Stop disabled once the run is stopped")
    lab.shot("stopped")
    rec = RunLog(lab.server.home / "runs.db").get(run_id)
    assert rec["status"] == "stopped", rec["status"]
    assert rec["name"] == STOP_RUN_NAME and rec["config"]["epochs"] == 100_000
    assert any("train_loss" in m for m in rec["metrics"])
    test.click()  # a stopped run can be tested from the panel
    status.filter(has_text=re.compile(r"^completed$")).wait_for(timeout=120_000)
    train.get_by_text("test_accuracy").first.wait_for(timeout=20_000)
    assert RunLog(lab.server.home / "runs.db").get(run_id)["status"] == "completed"

    # The runs panel lists the run after a Refresh and shows it when selected, as tables.
    runs.get_by_role("button", name=re.compile(r"^\W*Refresh$")).click()
    row = runs.locator("table tr").filter(has_text=run_id)
    row.wait_for(timeout=30_000)
    assert "completed" in row.inner_text() and STOP_RUN_NAME in row.inner_text()
    runs.locator("select[multiple]").first.select_option(label=f"{STOP_RUN_NAME} · {run_id} · completed")
    details = runs.locator(".widget-html").filter(has_text=run_id).filter(has_text="Summary")
    details.wait_for(timeout=30_000)
    assert "Config" in details.inner_text() and "keys at their default" in details.inner_text()
    runs.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    lab.assert_clean("runs panel after selecting the run")
    doc_shot(lab, runs, "runs_panel")
    assert not lab.error_outputs()
    print(f"notebook 02: Run All took {ran:.1f} s in the browser; {len(lines)} live curve redraws;"
          f" statuses {statuses[0]!r} … {statuses[-1]!r}")


@pytest.mark.timeout(600)
def test_03_fewshot_curves_are_interactive_and_quick_mode_is_truthful(lab):
    """Notebook 03 in the page: its charts are plotly figures (the live meta-training curves and the
    replayed MAML run), the page says what is replayed, and nothing is printed to stderr."""
    lab.open(lab.add_notebook(NOTEBOOKS / "03_maml_few_shot.ipynb"))
    t0 = time.monotonic()
    lab.run_all(timeout=480)
    ran = time.monotonic() - t0
    lab.assert_clean("notebook 03 after Run All")
    assert not lab.stderr_outputs(), f"notebook 03 printed to stderr (Lightning chatter?): {lab.stderr_outputs()}"
    assert lab.show_plots() >= 4, f"{lab.plots().count()} plotly figures on the page"
    page_text = lab.notebook.inner_text()
    assert "replayed from benchmarks/results/fewshot_curves_maml.json" in page_text
    replayed = lab.notebook.locator(".jp-RenderedPlotly").filter(has_text="MAML meta-val accuracy").first
    doc_shot(lab, replayed, "maml_replayed", tall=False)
    print(f"notebook 03: Run All took {ran:.1f} s in the browser")


@pytest.mark.timeout(900)
def test_04_meta_panels_compare_importance_recommend_tune(lab):
    """Notebook 04 in the page: every panel has its heading; compare's log toggle changes the y axis
    and an unmatched tag clears it without a front-end error; importance clears on a tag with no
    runs; recommend says what it recommends and its Start ends with a *tested* run; tune's Start
    draws both best-so-far curves."""
    from workbench.runlog import RunLog

    lab.open(lab.add_notebook(NOTEBOOKS / "04_meta_analysis.ipynb"))
    t0 = time.monotonic()
    lab.run_all(timeout=480)
    ran = time.monotonic() - t0
    lab.assert_widgets_rendered(min_widgets=10)
    assert lab.show_plots() >= 8, f"{lab.plots().count()} plotly figures on the page"
    lab.assert_clean("notebook 04 after Run All")
    assert not lab.stderr_outputs(), f"notebook 04 printed to stderr: {lab.stderr_outputs()}"
    page = lab.page
    assert "replayed from workbench/meta/data/metadataset.jsonl.gz" in lab.notebook.inner_text()
    panels = {name: output_of(lab, name) for name in ("Compare runs", "What mattered", "Recommend", "Tune")}
    for name, panel in panels.items():
        assert panel.count() == 1, f"no panel headed {name!r}"

    # Compare: the interactive plot responds; an unmatched tag empties it, said so, no console error.
    compare = panels["Compare runs"]
    plot = compare.locator(".js-plotly-plot").first
    plot.wait_for(timeout=30_000)
    assert {"nb04-new-default · train_loss", "nb04-new-recommended · train_loss"} <= set(lab.trace_names(plot))
    linear = lab.y_ticks(plot)
    compare.get_by_role("button", name="log", exact=True).click()
    wait_for(lambda: lab.y_ticks(plot) != linear and lab.y_axis_type(plot) == "log", 20, "compare's y axis to change to log")
    doc_shot(lab, compare, "compare_panel")
    tag = compare.get_by_placeholder(re.compile("sweep:my-sweep"))
    tag.fill("no-such-tag")
    compare.get_by_text(re.compile("no runs have the tag")).wait_for(timeout=20_000)
    wait_for(lambda: compare.locator("select[multiple] option").count() == 0, 20, "the run list to empty")
    wait_for(lambda: compare.locator(".js-plotly-plot:visible").count() == 0, 20, "the curves to clear")
    tag.fill("")
    wait_for(lambda: compare.locator("select[multiple] option").count() >= 2, 20, "the runs to come back")
    lab.assert_clean("compare panel after an empty query")

    # What mattered: computed by the notebook; a tag with no runs clears the old chart.
    imp = panels["What mattered"]
    imp.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    doc_shot(lab, imp, "importance_panel")
    imp_tag = imp.locator("input[type=text]").first
    kept = imp_tag.input_value()
    imp_tag.fill("no-such-tag")
    imp.get_by_role("button", name=re.compile("What mattered")).click()
    imp.get_by_text(re.compile("0 finished runs")).wait_for(timeout=30_000)
    wait_for(lambda: imp.locator(".js-plotly-plot:visible").count() == 0, 20, "the old importance chart to clear")
    imp_tag.fill(kept)
    imp.get_by_role("button", name=re.compile("What mattered")).click()
    wait_for(lambda: imp.locator(".js-plotly-plot:visible").count() == 1, 30, "the importance chart to return")

    # Recommend: says what, and Start ends with a tested run in the run log.
    rec = panels["Recommend"]
    what = rec.locator(".widget-html").filter(has_text="Recommended").first
    assert "optimizer.params.lr" in what.inner_text() and "default" in what.inner_text()
    rec.get_by_role("button", name=re.compile(r"^\W*Start$")).click()
    status = rec.locator(".widget-html").filter(has_text=re.compile(r"^(recommended|tested)")).first
    wait_for(lambda: status.inner_text().startswith("tested:"), 240, "the recommend panel to train and test")
    assert "recommended test accuracy" in status.inner_text()
    log = RunLog(lab.server.home / "runs.db")
    tested = [r for r in log.find(tag="recommended") if r["status"] == "completed"]
    assert tested and isinstance(tested[-1]["summary"].get("test_accuracy"), float), tested
    lab.assert_clean("recommend panel after Start")
    doc_shot(lab, rec, "recommend_panel")

    # Tune: Start replays both studies and draws both best-so-far curves.
    tune = panels["Tune"]
    tune.get_by_role("button", name=re.compile(r"^\W*Start$")).click()
    tune_status = tune.locator(".widget-html").filter(has_text=re.compile(r"^(replaying|done|stopped)")).first
    wait_for(lambda: tune_status.inner_text().startswith("done"), 180, "the tune panel's studies to finish")
    curve = tune.locator(".js-plotly-plot").first
    wait_for(lambda: {"with memory", "without memory"} <= set(lab.trace_names(curve)), 30, "both tuning curves")
    assert "within 1 point of the task's best" in tune_status.inner_text()
    lab.assert_clean("tune panel after Start")
    doc_shot(lab, tune, "tune_panel")
    assert not lab.console_errors(), lab.console_errors()
    print(f"notebook 04: Run All took {ran:.1f} s in the browser; tune: {tune_status.inner_text()[:200]}")
