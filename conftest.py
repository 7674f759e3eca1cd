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
# A SerpApi key in the developer's shell must never reach the tests.
os.environ.pop("SERPAPI_API_KEY", None)
