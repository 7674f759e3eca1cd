"""``python -m workbench tour`` on a folder of small notebooks (the real ones run under nbval)."""
from __future__ import annotations

import os
import subprocess
import sys

import nbformat


def _nb(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def _tour(folder, home, *extra):
    env = dict(os.environ, WORKBENCH_HOME=str(home))
    env.pop("WORKBENCH_QUICK", None)
    return subprocess.run([sys.executable, "-m", "workbench", "tour", "--notebooks", str(folder), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def test_tour_runs_notebooks_in_order_and_lists_their_runs(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _nb(nbs / "01_first.ipynb",
        "import os, sys\nassert os.environ['WORKBENCH_QUICK'] == '1'\nprint('IPKernelApp chatter', file=sys.__stderr__)",
        "from workbench import RunLog\nr = RunLog().start('from-nb-1', 'baseline', {})\nr.finish('completed', summary={'accuracy': 0.75})")
    _nb(nbs / "02_second.ipynb",
        "from workbench import RunLog\nassert [r['name'] for r in RunLog().runs()] == ['from-nb-1']")
    (nbs / "notes.ipynb").write_text("not a numbered notebook, ignored")
    out = _tour(nbs, tmp_path / "home", "--quick")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "quick mode" in lines[0]
    assert lines[1].startswith("[1/2] 01_first.ipynb") and "ok in" in lines[1]
    assert lines[2].startswith("[2/2] 02_second.ipynb") and "ok in" in lines[2]
    assert "from-nb-1" in out.stdout and "accuracy=0.750" in out.stdout
    assert "All 2 notebooks passed." in out.stdout
    assert "IPKernelApp" not in out.stdout + out.stderr  # kernel chatter goes to the tour's log file


def test_tour_fails_nonzero_and_names_the_notebook(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _nb(nbs / "01_bad.ipynb", "assert 1 == 2, 'the reader should see this'")
    _nb(nbs / "02_good.ipynb", "x = 1")
    out = _tour(nbs, tmp_path / "home")
    assert out.returncode == 1
    assert "01_bad.ipynb … FAILED" in out.stdout and "02_good.ipynb … ok" in out.stdout
    assert "1 notebook(s) failed: 01_bad.ipynb" in out.stderr
