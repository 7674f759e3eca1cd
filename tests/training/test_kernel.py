"""The train panel inside a real ipykernel: the kernel answers while a job trains, and the
panel's live updates (sent from a background thread) reach the front end as comm messages."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _execute(kc, code: str, timeout: float = 120.0) -> tuple[dict, list[dict]]:
    """Run ``code``; return (execute_reply, every iopub message seen until the kernel went idle)."""
    msg_id = kc.execute(code)
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            continue
        seen.append(m)
        if (m["msg_type"] == "status" and m["parent_header"].get("msg_id") == msg_id
                and m["content"]["execution_state"] == "idle"):
            break
    reply = kc.get_shell_msg(timeout=timeout)
    return reply, seen


def _stdout(msgs: list[dict]) -> str:
    return "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")


def test_panel_in_a_real_kernel(shapes_dir):
    jc = pytest.importorskip("jupyter_client")
    km = jc.KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=str(HERE))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        setup = textwrap.dedent(f"""
            import sys, json, torch
            torch.set_num_threads(1)
            sys.path.insert(0, {str(HERE)!r})
            from training_support import fast_command
            from workbench.widgets.train import TrainPanel
            p = TrainPanel(data={str(shapes_dir)!r}, command=fast_command(name="kernel", epochs=1000), poll_s=0.2)
            display(p.widget)
            ids = {{"status": p.status.model_id, "plot": p.plot.model_id}}
            p.start_button.click()
            print(json.dumps(ids))
        """)
        reply, msgs = _execute(kc, setup)
        assert reply["content"]["status"] == "ok", reply["content"]
        ids = json.loads(_stdout(msgs).strip().splitlines()[-1])
        status_updates, plot_updates, latencies = [], 0, []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (len(status_updates) < 4 or plot_updates < 2):
            t0 = time.perf_counter()
            reply, msgs = _execute(kc, "x = sum(range(10000)); x", timeout=30)
            latencies.append(time.perf_counter() - t0)
            assert reply["content"]["status"] == "ok"
            for m in msgs:
                if m["msg_type"] != "comm_msg" or m["content"]["data"].get("method") != "update":
                    continue
                state = m["content"]["data"].get("state", {})
                if m["content"]["comm_id"] == ids["status"] and "running" in str(state.get("value", "")):
                    status_updates.append(state["value"])
                if m["content"]["comm_id"] == ids["plot"] and state:  # the live figure's new data
                    plot_updates += 1
            time.sleep(0.1)
        # live updates from the panel's thread arrived while other cells were executing
        assert len(status_updates) >= 4, status_updates
        assert plot_updates >= 2
        assert any("loss" in s for s in status_updates)
        # the kernel stayed responsive while training (generous bound: 2 shared CPU cores)
        latencies.sort()
        assert latencies[len(latencies) // 2] < 1.0, latencies
        reply, msgs = _execute(kc, "p.stop_button.click(); r = p.wait(60); print(r['status'], p.status.value)")
        assert reply["content"]["status"] == "ok", reply["content"]
        out = _stdout(msgs)
        assert out.strip().splitlines()[-1].split() == ["stopped", "stopped"], out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
