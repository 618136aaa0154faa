"""Throughput under concurrency over HTTP with wrk, and a saturation soak with the server's RSS over time.

    python bench/load.py --index DIR [--workers 1 2] [--connections 4 16] [--duration 20]
    python bench/load.py --index DIR --soak 600 [--workers 1] [--connections 16]     # 10-minute soak
    python bench/load.py --index DIR --store postgresql://... --replicas 1 2 [--connections 16]

Starts `qa serve --workers N` on a free loopback port (127.0.0.1 only), waits for /readyz, and runs
`wrk -t2 -cC -dD --latency -s bench/ask.lua` (POSTs every dev question in turn). wrk runs on the same
2 cores as the server, so the figures are a lower bound for a server with the machine to itself.
The query-vector cache is off (QA_QUERY_CACHE=0, every request encodes its question) unless --cache.

Replicas (--store URL --replicas 1 2): R `qa serve` processes (one worker each) on R ports answer from one
PostgreSQL store, and R wrk runs at once send each its share of the connections, as a round-robin load balancer
would; throughput is the sum. The database server runs on the same 2 cores.

Soak: one wrk run for --soak seconds; every 10 s the VmRSS of the server's processes (the serving
process and its worker children) is read from /proc/PID/status. Reports errors and RSS after warm-up
(the first minute) against the end of the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import DEV, machine, server, table  # noqa: E402

BENCH = Path(__file__).resolve().parent


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rss_mib(pid: int) -> dict[int, float]:
    """VmRSS (MiB) of pid and every descendant (uvicorn's worker processes)."""
    out = {}
    for p in process_tree(pid):
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", open(f"/proc/{p}/status").read())
        except OSError:
            continue
        if m:
            out[p] = int(m.group(1)) / 1024
    return out


def bodies_file(path: Path, top_k: int = 10) -> Path:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"qa-wrk-bodies-{os.getpid()}.jsonl"
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    out.write_text("".join(json.dumps({"question": q["question"], "top_k": top_k}) + "\n" for q in lines))
    return out


def run_wrk(port: int, connections: int, duration: int, bodies: Path, threads: int = 2) -> dict:
    cmd = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    cmd += ["--latency", "-s", str(BENCH / "ask.lua"), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"WRK_BODIES": str(bodies)})
    m = re.search(r"WRK_JSON (\{.*\})", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    r = json.loads(m.group(1))
    # done() runs in its own Lua state and cannot see the threads' status counts: wrk prints them.
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out.stdout)
    r["non_2xx"] = int(bad.group(1)) if bad else 0
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"] + r["non_2xx"]
    return r


def throughput(args, bodies: Path) -> list[list]:
    rows = []
    for workers in args.workers:
        env = {"QA_LOG_LEVEL": "warning"} | ({} if args.cache else {"QA_QUERY_CACHE": "0"})
        with server(args.index, workers=workers, env=env) as (port, pid):
            run_wrk(port, max(args.connections), 5, bodies)  # warm-up (every worker loads its engine lazily)
            for c in args.connections:
                r = run_wrk(port, c, args.duration, bodies)
                rss = sum(rss_mib(pid).values())
                rows.append([workers, c, r["requests"], r["rps"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]])
                rows[-1] += [r["errors"], rss]
                print(f"  workers={workers} c={c}: {r['rps']:.1f} req/s p50 {r['p50_ms']:.1f} ms "
                      f"p99 {r['p99_ms']:.1f} ms errors {r['errors']} rss {rss:.0f} MiB", flush=True)  # fmt: skip
    return rows


def replicas(args, bodies: Path) -> list[list]:
    """R replicas of `qa serve` against one database, each sent its share of the connections at once."""
    rows = []
    env = {"QA_LOG_LEVEL": "warning", "QA_STORE": args.store} | ({} if args.cache else {"QA_QUERY_CACHE": "0"})
    for count in args.replicas:
        with contextlib.ExitStack() as stack:
            servers = [stack.enter_context(server(args.index, workers=1, env=env)) for _ in range(count)]
            for c in args.connections:
                share = max(1, c // count)
                ports = [port for port, _ in servers]
                with concurrent.futures.ThreadPoolExecutor(count) as pool:
                    list(pool.map(run_wrk, ports, [share] * count, [5] * count, [bodies] * count, [1] * count))
                    runs = list(pool.map(run_wrk, ports, [share] * count, [args.duration] * count, [bodies] * count,
                                         [1] * count))  # fmt: skip
                rps = sum(r["rps"] for r in runs)
                worst = {k: max(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "max_ms")}
                errors = sum(r["errors"] for r in runs)
                rows.append([count, share * count, sum(r["requests"] for r in runs), rps, worst["p50_ms"],
                             worst["p99_ms"], worst["max_ms"], errors])  # fmt: skip
                print(f"  replicas={count} c={share * count}: {rps:.1f} req/s (p50 {worst['p50_ms']:.1f} ms, "
                      f"p99 {worst['p99_ms']:.1f} ms of the slowest) errors {errors}", flush=True)  # fmt: skip
    return rows


def soak(args, bodies: Path) -> int:
    workers = args.workers[0]
    env = {"QA_LOG_LEVEL": "warning"} | ({} if args.cache else {"QA_QUERY_CACHE": "0"})
    with server(args.index, workers=workers, env=env) as (port, pid):
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        t0 = time.time()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.time() - t0, sum(rss_mib(pid).values())))
                print(f"  t={samples[-1][0]:5.0f}s rss={samples[-1][1]:.1f} MiB", flush=True)
                stop.wait(10)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        r = run_wrk(port, max(args.connections), args.soak, bodies)
        stop.set()
        sampler.join()
        samples.append((time.time() - t0, sum(rss_mib(pid).values())))
    warm = [s for s in samples if s[0] >= min(60, args.soak / 4)]
    base = warm[0][1] if warm else samples[0][1]
    print(f"\nsoak: {args.soak}s, workers={workers}, connections={max(args.connections)}")
    print(table([[r["requests"], r["rps"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["errors"], r["non_2xx"]]],
                ["requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "non-2xx"]))  # fmt: skip
    print(f"\nRSS (MiB) every 10 s: first {samples[0][1]:.1f}, after warm-up {base:.1f}, end {samples[-1][1]:.1f}, "
          f"max {max(s[1] for s in samples):.1f}; growth after warm-up {samples[-1][1] - base:+.1f} MiB")  # fmt: skip
    print("RSS samples (s, MiB): " + ", ".join(f"{t:.0f}:{m:.0f}" for t, m in samples))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "wrk": r, "rss": samples}, indent=1))
    return 0 if r["errors"] == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--questions", type=Path, default=DEV)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--connections", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--duration", type=int, default=20, help="seconds per wrk run (bounded)")
    ap.add_argument("--soak", type=int, help="run one soak of this many seconds instead")
    ap.add_argument("--cache", action="store_true", help="leave the query-vector cache on")
    ap.add_argument("--store", help="postgresql://... : the replicas' shared store (with --replicas)")
    ap.add_argument("--replicas", type=int, nargs="+", help="replica counts to measure against --store")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.replicas and not args.store:
        ap.error("--replicas needs --store postgresql://...")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bodies = bodies_file(args.questions)
    try:
        print(f"# load  {machine()}  cache={'on' if args.cache else 'off'}")
        if args.soak:
            return soak(args, bodies)
        if args.replicas:
            rows = replicas(args, bodies)
            header = ["replicas", "connections", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors"]
            print("\n" + table(rows, header))
            if args.json:
                args.json.write_text(json.dumps({"machine": machine(), "replicas": rows}, indent=1))
            return 0
        rows = throughput(args, bodies)
        print()
        header = ["workers", "connections", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"]
        print(table(rows, [*header, "server RSS MiB"]))
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
        return 0
    finally:
        bodies.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
