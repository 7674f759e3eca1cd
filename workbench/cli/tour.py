"""``python -m workbench tour``: run the notebooks in order, headlessly, and report."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tour", help="run the notebooks in order, headless; list their runs",
                       description="Execute notebooks/NN_*.ipynb in order (nbclient), print one progress"
                                   " line per notebook and a table of the runs they created.")
    p.add_argument("--quick", action="store_true", help="small budgets (sets WORKBENCH_QUICK=1)")
    p.add_argument("--notebooks", metavar="DIR", help="folder of notebooks (default: ./notebooks)")
    p.add_argument("--only", metavar="PATTERN", help="run only notebooks whose name contains PATTERN")
    p.add_argument("--timeout", type=int, default=1800, help="per-cell timeout in seconds (default 1800)")
    p.add_argument("--out", metavar="DIR", help="also write each executed notebook as DIR/NN_name.html, plots"
                                              " included (and the .ipynb with its outputs)")
    p.set_defaults(func=cmd_tour)


def find_notebooks(folder: str | None = None) -> list[Path]:
    """The numbered notebooks (``01_…`` …) in ``folder`` (default ``./notebooks``), in order."""
    root = Path(folder) if folder else Path.cwd() / "notebooks"
    if not root.is_dir():
        pkg_root = Path(__file__).resolve().parents[2] / "notebooks"
        root = pkg_root if pkg_root.is_dir() else root
    if not root.is_dir():
        raise FileNotFoundError(f"notebook folder {root} not found (use --notebooks DIR)")
    return sorted(p for p in root.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, timeout: int, out: Path | None = None) -> None:
    """Execute one notebook in its own kernel, in its own folder (as Jupyter would); with ``out``,
    write it there as HTML (and .ipynb) with its outputs — also when a cell failed."""
    import nbformat
    from nbclient import NotebookClient

    from ..paths import home

    nb = nbformat.read(path, as_version=4)
    # The kernel's own stderr (e.g. ipykernel's "running over TCP" warning) would break the
    # progress lines: it goes to $WORKBENCH_HOME/logs/tour-<notebook>.log instead.
    logs = home() / "logs"
    logs.mkdir(exist_ok=True)
    try:
        with open(logs / f"tour-{path.stem}.log", "wb") as kernel_log:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute(stderr=kernel_log)
    finally:
        if out is not None:
            write_html(nb, out / f"{path.stem}.html")
            nbformat.write(nb, out / f"{path.stem}.ipynb")


#: What an exported page shows where a live panel was (its widgets need a running kernel).
PANEL_NOTE = "[interactive panel: open the notebook in JupyterLab to use it]"


def write_html(nb, dest: Path) -> Path:
    """An executed notebook as one self-contained HTML page: the charts as their PNGs, panels as a note."""
    import copy

    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)  # widget state would make the page fetch JavaScript from a CDN
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                o["data"] = {"text/plain": PANEL_NOTE}
            data.pop("application/vnd.plotly.v1+json", None)  # the PNG beside it is what a page shows
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(body, encoding="utf-8")
    return dest


def cmd_tour(args: argparse.Namespace) -> int:
    from ..runlog import RunLog
    from ..runlog.log import utcnow
    from .runs import format_table

    if args.quick:
        os.environ["WORKBENCH_QUICK"] = "1"
    notebooks = find_notebooks(args.notebooks)
    if args.only:
        notebooks = [n for n in notebooks if args.only in n.name]
    if not notebooks:
        raise FileNotFoundError("no notebooks to run")
    out = Path(args.out).expanduser() if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    log = RunLog()
    since = utcnow()
    mode = "quick" if os.environ.get("WORKBENCH_QUICK") else "full"
    print(f"workbench tour ({mode} mode): {len(notebooks)} notebooks, run log {log.path}", flush=True)
    failed: list[tuple[str, str]] = []
    for i, nb in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {nb.name} … ", end="", flush=True)
        t0 = time.perf_counter()
        try:
            run_notebook(nb, args.timeout, out)
        except Exception as exc:  # report and go on: later notebooks may still work
            first = str(exc).strip().splitlines()
            why = next((ln for ln in reversed(first) if ln.strip()), type(exc).__name__)
            failed.append((nb.name, why))
            print(f"FAILED after {time.perf_counter() - t0:.1f} s: {why[:200]}", flush=True)
        else:
            print(f"ok in {time.perf_counter() - t0:.1f} s", flush=True)
    runs = [r for r in RunLog().runs() if r.get("created_at", "") >= since]
    print(f"\nRuns created by the tour ({len(runs)}):")
    print(format_table(runs))
    if out is not None:
        print(f"\nExecuted notebooks (HTML with their plots) in {out}")
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(n for n, _ in failed)}", file=sys.stderr)
        return 1
    print(f"\nAll {len(notebooks)} notebooks passed.")
    return 0
