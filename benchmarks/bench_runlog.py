"""Run-log cost as the store grows, on every backend, against today's TinyDB file in the same run.

    nice -n 10 python benchmarks/bench_runlog.py                  # sizes 0 1,000 10,000 100,000
    python benchmarks/bench_runlog.py --sizes 0 1000 --tinydb-max 1000 --writers 4 --writer-runs 100

1. **Store size**: for each size a store is filled with that many finished runs (realistic
   records: config, summary, 10 epochs, tags, 20 metric rows) through ``RunLog.import_`` —
   the bulk loader; 100,000 ``start`` calls through TinyDB would take days. Then it times
   ``start``, ``finish`` (after 3 untimed warm-up runs), per-step ``log_metrics`` (amortised over ``--steps`` steps,
   flushes and heartbeat included), ``get(id, metrics=False)``, ``find(kind=…, status=…)``,
   ``to_frame()`` and opening the log. TinyDB is measured up to ``--tinydb-max`` runs and
   extrapolated linearly beyond (it rewrites the whole file on every write; the fit is printed).
2. **Writers**: N processes × M runs each (start, a metric, update, two status changes,
   finish) into one store; every run must be there, completed, with its own summary.
3. **Metrics sink**: one flush of 50 rows and reading a 5,000-row run, from the SQLite
   ``wb_metrics`` table versus an append-only ``metrics.jsonl`` file.

PostgreSQL runs on a scratch local server (``workbench.runlog.pgserver``) when one can start.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

from workbench import RunLog
from workbench.runlog.jsonl import JsonlAppender, read_jsonl

KINDS = ("baseline", "baseline", "baseline", "maml", "protonet", "finetune", "scrape", "fomaml")
STATUSES = ("completed", "completed", "completed", "trained", "failed", "stopped", "crashed")
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def template() -> dict:
    """One real record (start → epochs → finish), the shape every synthetic run copies."""
    with tempfile.TemporaryDirectory() as tmp:
        log = RunLog(Path(tmp) / "t.db")
        run = log.start("t", "baseline", {"model": {"name": "resnet18", "pretrained": True},
                                           "optimizer": {"name": "Adam", "params": {"lr": 1e-3}},
                                           "batch_size": 32, "max_epochs": 10, "seed": 0,
                                           "data": {"root": "/data/shapes", "image_size": 64}},
                        tags=["sweep:lr", "trial:0"], dataset={"sha256": "ab" * 32, "n_images": 500, "classes": 5})
        for e in range(10):
            run.log_epoch(e, {"val_loss": 0.5, "val_accuracy": 0.7, "train_loss_epoch": 0.4})
        run.finish("completed", summary={"test_accuracy": 0.8, "test_ci95": 0.02, "best_val_accuracy": 0.8})
        rec = log.get(run.id)
        log.close()
    return rec


def write_export(path: Path, n: int, base: dict) -> None:
    """``n`` synthetic finished runs as an export file (the bulk loader's input)."""
    with open(path, "w") as fh:
        for i in range(n):
            rec = dict(base)
            rec["id"] = f"20250101-{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:010x}"
            rec["name"] = f"run-{i}"
            rec["kind"] = KINDS[i % len(KINDS)]
            rec["status"] = STATUSES[i % len(STATUSES)]
            rec["created_at"] = (T0 + timedelta(seconds=i)).isoformat(timespec="milliseconds")
            rec["tags"] = [f"sweep:{i % 100}", f"trial:{i}"]
            rec["config"] = {**base["config"], "seed": i, "optimizer": {"name": "Adam", "params": {"lr": 1e-3 * (1 + i % 7)}}}
            rec["summary"] = {"test_accuracy": (i % 97) / 97, "test_ci95": 0.02}
            rec["metrics"] = [{"step": s, "time": 1.7e9 + s, "train_loss": 1.0 / (s + 1)} for s in range(20)]
            fh.write(json.dumps(rec) + "\n")


def median_ms(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def fsync_ms(folder: Path) -> float:
    """The disk's fsync latency right now: what a durable commit waits for (shared disks vary a lot)."""
    fd = os.open(folder / ".fsync-probe", os.O_CREAT | os.O_WRONLY)
    try:
        return median_ms(lambda: (os.write(fd, b"x" * 4096), os.fsync(fd)), 20)
    finally:
        os.close(fd)


def time_store(location, steps: int, repeats: int, fsync: bool = True) -> dict[str, float]:
    """The timings of one filled store (see the module docstring)."""
    res = {"fsync_ms": fsync_ms(Path(tempfile.gettempdir()))}
    t0 = time.perf_counter()
    log = RunLog(location, fsync=fsync)
    res["open_ms"] = (time.perf_counter() - t0) * 1e3
    for i in range(3):  # warm-up: the first writes after opening read index pages from disk
        log.start(f"warm-{i}", "baseline", {}, tags=["bench"]).finish()
    starts, finishes = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        run = log.start(f"timed-{i}", "baseline", {"optimizer": {"name": "SGD"}, "i": i}, tags=["bench"])
        t1 = time.perf_counter()
        run.log_metrics({"train_loss": 1.0}, step=0)
        t2 = time.perf_counter()
        run.finish("completed", summary={"accuracy": 0.5})
        starts.append((t1 - t0) * 1e3)
        finishes.append((time.perf_counter() - t2) * 1e3)
    res["start_ms"], res["finish_ms"] = statistics.median(starts), statistics.median(finishes)
    run = log.start("steps", "baseline", {})
    t0 = time.perf_counter()
    for s in range(steps):
        run.log_metrics({"train_loss": 1.0 / (s + 1)}, step=s)
    res["step_us"] = (time.perf_counter() - t0) / steps * 1e6
    run.finish("completed")
    rid = run.id
    res["get_ms"] = median_ms(lambda: log.get(rid, metrics=False), 50)
    found = []
    res["find_ms"] = median_ms(lambda: found.append(len(log.find(kind="protonet", status="failed"))), 7)
    res["find_n"] = found[-1]
    res["frame_s"] = median_ms(log.to_frame, 3) / 1e3
    log.close()
    return res


def fill(location, export: Path, n: int) -> float:
    t0 = time.perf_counter()
    log = RunLog(location)
    if n:
        log.import_(export)
    log.close()
    return time.perf_counter() - t0


def scan_sizes(args, tmp: Path, base: dict, pg_url: str | None) -> None:
    print("\n## Store size (median of", args.repeats, "start/finish;", args.steps, "logged steps)\n")
    print("| backend | stored runs | fill s | open ms | start ms | finish ms | µs/step | get ms | find ms (rows)"
          " | to_frame s | disk fsync ms | TinyDB start+finish ms | TinyDB/this |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    fit: list[tuple[int, float]] = []
    backends = [("sqlite", lambda n: tmp / f"s{n}.db"), ("sqlite, fsync=False", lambda n: tmp / f"s{n}.db"),
                ("tinydb", lambda n: f"tinydb:{tmp / f't{n}.json'}")]
    if pg_url:
        backends.append(("postgres", lambda n: f"{pg_url}?options=-csearch_path%3Db{n}"))
    rows: dict[tuple[str, int], dict] = {}
    for n in args.sizes:
        export = tmp / f"fill{n}.jsonl"
        write_export(export, n, base)
        for name, loc in backends:
            if name == "tinydb" and n > args.tinydb_max:
                continue
            if name == "postgres" and n not in args.pg_sizes:
                continue
            if name == "postgres":
                _pg_schema(pg_url, f"b{n}")
            fill_s = fill(loc(n), export, n) if "fsync=False" not in name else 0.0  # reuses the SQLite store
            r = time_store(loc(n), args.steps, args.repeats, fsync="fsync=False" not in name)
            r["fill_s"] = fill_s
            rows[(name, n)] = r
            if name == "tinydb":
                fit.append((n, r["start_ms"] + r["finish_ms"]))
        export.unlink()
        for name, _ in backends:
            if (name, n) in rows:
                print(_row(name, n, rows[(name, n)], fit), flush=True)
    if len(fit) >= 2:
        a, b = _linear(fit)
        print(f"\nTinyDB start+finish fit: {a:.2f} ms + {b * 1000:.2f} ms per 1,000 stored runs"
              f" (measured at {', '.join(f'{n:,}' for n, _ in fit)} runs; '~' values above are extrapolated)")


def _pg_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        c.execute(f"CREATE SCHEMA {schema}")


def _linear(points: list[tuple[int, float]]) -> tuple[float, float]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in points) / max(1e-9, sum((x - mx) ** 2 for x in xs))
    return my - b * mx, b


def _row(name: str, n: int, r: dict, fit: list[tuple[int, float]]) -> str:
    tiny = ""
    ratio = ""
    if not name.startswith("tinydb"):
        measured = {m: v for m, v in fit}
        if n in measured:
            tiny, t = f"{measured[n]:,.1f}", measured[n]
        elif len(fit) >= 2:
            a, b = _linear(fit)
            t = a + b * n
            tiny = f"~{t:,.0f}"
        else:
            t = None
        if t is not None:
            ratio = f"{'~' if n not in measured else ''}{t / (r['start_ms'] + r['finish_ms']):,.0f}×"
    return (f"| {name} | {n:,} | {r['fill_s']:.1f} | {r['open_ms']:.1f} | {r['start_ms']:.2f} | {r['finish_ms']:.2f}"
            f" | {r['step_us']:.1f} | {r['get_ms']:.2f} | {r['find_ms']:.1f} ({r['find_n']:,}) | {r['frame_s']:.2f}"
            f" | {r['fsync_ms']:.2f} | {tiny} | {ratio} |")


WRITER = textwrap.dedent("""
    import sys
    from workbench import RunLog
    path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = RunLog(path)
    for i in range(n):
        r = log.start(f"{who}-{i}", "baseline", {"who": who, "i": i}, tags=[who])
        r.log_metrics({"train_loss": float(i)}, step=0)
        r.update(summary={"who": who, "i": i})
        r.set_status("trained")
        r.finish("completed", summary={"accuracy": i / n})
""")


def writers(args, tmp: Path, pg_url: str | None) -> None:
    print(f"\n## {args.writers} writer processes × runs each, one store\n")
    print("| backend | runs per process | wall s | runs/s | stored | all complete and correct |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    targets = [("sqlite", tmp / "w.db", args.writer_runs),
               ("tinydb", f"tinydb:{tmp / 'w.json'}", min(args.writer_runs, args.tinydb_writer_runs))]
    if pg_url:
        _pg_schema(pg_url, "writers")
        targets.append(("postgres", f"{pg_url}?options=-csearch_path%3Dwriters", args.writer_runs))
    for name, loc, n in targets:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(loc), f"p{k}", str(n)]) for k in range(args.writers)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
        runs = RunLog(loc).runs()
        ok = codes == [0] * args.writers and len(runs) == args.writers * n and all(
            r["status"] == "completed" and r["summary"] == {"who": r["name"].split("-")[0], "i": int(r["name"].split("-")[1]),
                                                            "accuracy": int(r["name"].split("-")[1]) / n}
            and [h["status"] for h in r["history"]] == ["running", "trained", "completed"] for r in runs)
        print(f"| {name} | {n:,} | {wall:.1f} | {args.writers * n / wall:,.0f} | {len(runs):,} | {'yes' if ok else 'NO'} |",
              flush=True)


def metrics_sink(tmp: Path) -> None:
    print("\n## Where per-step metrics go (one flush = 50 rows; a read = one 5,000-row run)\n")
    lines = [json.dumps({"step": s, "time": 1.7e9 + s, "train_loss": 1.0 / (s + 1)}) for s in range(5000)]
    log = RunLog(tmp / "sink.db")
    run = log.start("sink", "baseline", {})
    run._stop.set()
    sql_flush = median_ms(lambda: log.store.append_metrics(run.id, lines[:50]), 200)
    app = JsonlAppender(tmp / "sink" / "metrics.jsonl")
    file_flush = median_ms(lambda: app.append(lines[:50]), 200)
    app.close()
    other = log.start("read", "baseline", {})
    other._stop.set()
    for k in range(0, 5000, 50):
        log.store.append_metrics(other.id, lines[k:k + 50])
    (tmp / "read").mkdir()
    (tmp / "read" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    sql_read = median_ms(lambda: log.read_metrics(other.id), 20)
    file_read = median_ms(lambda: read_jsonl(tmp / "read" / "metrics.jsonl"), 20)
    print("| | SQLite table | metrics.jsonl |\n| --- | ---: | ---: |")
    print(f"| flush (ms) | {sql_flush:.2f} | {file_flush:.3f} |")
    print(f"| read 5,000 rows (ms) | {sql_read:.1f} | {file_read:.1f} |")
    log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 3000, 10_000, 100_000])
    ap.add_argument("--pg-sizes", type=int, nargs="+", default=[0, 10_000, 100_000])
    ap.add_argument("--tinydb-max", type=int, default=3000, help="largest store measured with TinyDB")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--writer-runs", type=int, default=1000)
    ap.add_argument("--tinydb-writer-runs", type=int, default=100, help="TinyDB gets fewer: O(all runs) per write")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], choices=["sizes", "writers", "sink"])
    args = ap.parse_args()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    print(f"bench_runlog on {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        pg_url = None
        if not args.no_postgres:
            from workbench.runlog.pgserver import ServerUnavailable, local_server

            try:
                pg_url = stack.enter_context(local_server())
            except ServerUnavailable as exc:
                print(f"(PostgreSQL not measured: {exc})")
        os.environ["WORKBENCH_HOME"] = str(tmp / "home")
        if "sizes" not in args.skip:
            scan_sizes(args, tmp, template(), pg_url)
        if "writers" not in args.skip:
            writers(args, tmp, pg_url)
        if "sink" not in args.skip:
            metrics_sink(tmp)


if __name__ == "__main__":
    main()
