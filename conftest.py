"""Test-session setup shared by tests/ and the nbval notebook runs.

Every test session gets its own WORKBENCH_HOME (the run log is the state notebooks
share, so they must see the same one) and quick mode. Set before any kernel starts,
so nbval's kernels inherit both.
"""
import os
import tempfile

os.environ.setdefault("WORKBENCH_QUICK", "1")
if not os.environ.get("WORKBENCH_TEST_KEEP_HOME"):
    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-test-home-")
os.environ.setdefault("MPLBACKEND", "Agg")
# Jobs default to a share of the cores (workbench.runtime); tests share 2 cores with everything
# else on the machine, so their jobs get one unless a test asks otherwise.
os.environ.setdefault("WORKBENCH_THREADS", "1")
# A SerpApi key in the developer's shell must never reach the tests.
os.environ.pop("SERPAPI_API_KEY", None)


def pytest_addoption(parser) -> None:
    """``--no-browser``: skip the JupyterLab-in-chromium tests (tests/browser), e.g. without chromium.

    Options can only be registered from the root conftest (or a plugin), so it lives here.
    """
    parser.addoption("--no-browser", action="store_true", default=False,
                     help="skip the browser tests (tests/browser); they are reported as skipped")
