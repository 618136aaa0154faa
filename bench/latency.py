"""Ask latency in-process and over HTTP, and where the time goes, over the dev questions.

    python bench/latency.py --index /tmp/qab/index [--repeat 5] [--no-http] [--backend torch] [--json out.json]

In-process: Engine.load(index) then engine.ask(AskRequest(question, top_k=10)) for every dev question,
`--repeat` times, with the query-vector cache off (QA_QUERY_CACHE=0) so every ask encodes its question;
one more pass with the cache on shows a repeated question. BLAS, OpenMP and FAISS get one thread each, as
in `qa serve` (--native-threads keeps the libraries' defaults). The per-stage breakdown wraps, from outside
(qa/ is not edited), the methods Engine.ask calls, in the order it calls them: query embedding, FAISS
dense search, BM25, candidate fusion, re-ranking/scoring, folding near-copies, abstention + viewpoint diversification,
highlights, passage assembly (attribution, citation), viewpoint groups/facets + response model, and
then pydantic JSON serialization. "other" is what Engine.ask spends outside the wrapped calls.

HTTP: `qa serve` on a free loopback port, one keep-alive connection, POST /v1/ask sequentially.
Wall time and CPU time (thread_time) are both shown: this machine is shared, and CPU time is what a
stage costs when it does not wait for a core.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "eval" / "dev.jsonl"
sys.path.insert(0, str(ROOT))


def questions(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pct(values, qs=(50, 95, 99)) -> list[float]:
    return [float(np.percentile(values, q)) for q in qs] if len(values) else [float("nan")] * len(qs)


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next((ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), "0")
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return f"nproc={os.cpu_count()} cpu={cpu!r} ram={int(mem) / 2**20:.1f}GiB loadavg={load}"


class Stages:
    """Accumulates wall and CPU seconds per stage for the current ask."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rows: list[tuple[dict, dict]] = []

    def wrap(self, name: str, fn, subtract: tuple[str, ...] = ()):
        def timed(*args, **kwargs):
            sub_w = sum(self.wall.get(s, 0.0) for s in subtract)
            sub_c = sum(self.cpu.get(s, 0.0) for s in subtract)
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dw = time.perf_counter() - w0 - (sum(self.wall.get(s, 0.0) for s in subtract) - sub_w)
                dc = time.thread_time() - c0 - (sum(self.cpu.get(s, 0.0) for s in subtract) - sub_c)
                self.wall[name] = self.wall.get(name, 0.0) + dw
                self.cpu[name] = self.cpu.get(name, 0.0) + dc

        return timed

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def flush(self) -> None:
        self.rows.append((self.wall, self.cpu))
        self.wall, self.cpu = {}, {}


STAGE_ORDER = [
    "query embedding",
    "FAISS dense search",
    "BM25",
    "candidate fusion",
    "re-rank/scoring",
    "fold near-copies",
    "support, abstain + diversify",
    "highlights",
    "passage assembly (attribution, citation)",
    "viewpoint groups/facets + response",
    "other (in Engine.ask)",
    "pydantic JSON serialization",
]


def instrument(engine, st: Stages) -> None:
    """Wrap what Engine.ask calls (instance attributes and the qa modules' functions) with timers."""
    import qa.abstain as abstain
    import qa.engine as qa_engine
    import qa.viewpoints as viewpoints

    idx, ret = engine.index, engine.retriever
    idx.encode_query = st.wrap("query embedding", idx.encode_query)
    idx.dense_search = st.wrap("FAISS dense search", idx.dense_search)
    idx.lexical_search = st.wrap("BM25", idx.lexical_search)
    ret.candidates = st.wrap("candidate fusion", ret.candidates, ("FAISS dense search", "BM25"))
    ret.score = st.wrap("re-rank/scoring", ret.score)
    if hasattr(engine, "_fold_copies"):
        engine._fold_copies = st.wrap("fold near-copies", engine._fold_copies)
    engine._highlights = st.wrap("highlights", engine._highlights)
    engine._passage_out = st.wrap("passage assembly (attribution, citation)", engine._passage_out)
    name = "support, abstain + diversify"
    engine._support = st.wrap(name, engine._support)
    qa_engine.abstain = _Proxy(abstain, explain=st.wrap(name, abstain.explain))
    groups = "viewpoint groups/facets + response"
    qa_engine.viewpoints = _Proxy(
        viewpoints,
        diversify=st.wrap(name, viewpoints.diversify),
        groups=st.wrap(groups, viewpoints.groups),
        facets=st.wrap(groups, viewpoints.facets),
    )
    qa_engine.AskResponse = st.wrap(groups, qa_engine.AskResponse)


class _Proxy:
    def __init__(self, module, **overrides) -> None:
        self._module, self._overrides = module, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._module, name)


def in_process(index: Path, qs: list[str], repeat: int, one_thread: bool = True) -> dict:
    os.environ["QA_QUERY_CACHE"] = "0"
    from qa.engine import Engine
    from qa.schema import AskRequest

    t0 = time.perf_counter()
    engine = Engine.load(index)
    load_s = time.perf_counter() - t0
    if one_thread:  # what `qa serve` does after loading (api/app.py)
        from api.app import one_native_thread_per_request

        one_native_thread_per_request()
    backend = engine.index.encoder_backend
    for q in qs[:5]:  # warm-up
        engine.ask(AskRequest(question=q, top_k=10)).model_dump_json()

    plain = []
    for _ in range(repeat):
        for q in qs:
            w0 = time.perf_counter()
            engine.ask(AskRequest(question=q, top_k=10)).model_dump_json()
            plain.append((time.perf_counter() - w0) * 1000)

    st = Stages()
    instrument(engine, st)
    ask_ms, ask_cpu = [], []
    for _ in range(repeat):
        for q in qs:
            w0, c0 = time.perf_counter(), time.thread_time()
            resp = engine.ask(AskRequest(question=q, top_k=10))
            w1, c1 = time.perf_counter(), time.thread_time()
            inner_w, inner_c = sum(st.wall.values()), sum(st.cpu.values())
            st.add("other (in Engine.ask)", (w1 - w0) - inner_w, (c1 - c0) - inner_c)
            resp.model_dump_json()
            st.add("pydantic JSON serialization", time.perf_counter() - w1, time.thread_time() - c1)
            ask_ms.append((time.perf_counter() - w0) * 1000)
            ask_cpu.append((time.thread_time() - c0) * 1000)
            st.flush()

    # A repeated question: the query-vector cache (on by default in the service) skips the embedding.
    engine.index._query_cache_size = 1024
    for q in qs:
        engine.ask(AskRequest(question=q, top_k=10))
    cached = []
    for q in qs:
        w0 = time.perf_counter()
        engine.ask(AskRequest(question=q, top_k=10)).model_dump_json()
        cached.append((time.perf_counter() - w0) * 1000)

    stages = {}
    for name in STAGE_ORDER:
        walls = [w.get(name, 0.0) * 1000 for w, _ in st.rows]
        cpus = [c.get(name, 0.0) * 1000 for _, c in st.rows]
        stages[name] = {"wall_mean": float(np.mean(walls)), "wall_p50": pct(walls)[0], "cpu_mean": float(np.mean(cpus))}
    return {
        "backend": backend,
        "load_s": load_s,
        "n": len(plain),
        "ask_ms": pct(plain),
        "ask_instrumented_ms": pct(ask_ms),
        "ask_cpu_ms": pct(ask_cpu),
        "cached_ms": pct(cached),
        "stages": stages,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(index: Path, workers: int = 1, env: dict | None = None, log_path: Path | None = None):
    """`qa serve` on a loopback port; yields (port, pid of the serving process)."""
    port = free_port()
    cmd = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--index", str(index)]
    cmd += ["--workers", str(workers)]
    log = open(log_path or os.devnull, "w")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ | (env or {})
    )
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"qa serve exited with {proc.returncode}")
            try:
                if http_get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("qa serve not ready in 300 s")
            time.sleep(0.3)
        yield port, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def over_http(index: Path, qs: list[str], repeat: int) -> dict:
    # Cache off, as in-process: every request encodes its question.
    with server(index, env={"QA_QUERY_CACHE": "0", "QA_LOG_LEVEL": "warning"}) as (port, _):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json"}
        for q in qs[:5]:
            conn.request("POST", "/v1/ask", json.dumps({"question": q, "top_k": 10}), headers)
            conn.getresponse().read()
        total, took, errors = [], [], 0
        for _ in range(repeat):
            for q in qs:
                t0 = time.perf_counter()
                conn.request("POST", "/v1/ask", json.dumps({"question": q, "top_k": 10}), headers)
                r = conn.getresponse()
                body = r.read()
                total.append((time.perf_counter() - t0) * 1000)
                if r.status != 200:
                    errors += 1
                    continue
                took.append(json.loads(body)["took_ms"])
        conn.close()
    return {"n": len(total), "errors": errors, "http_ms": pct(total), "engine_took_ms": pct(took)}


def table(rows: list[list], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in r) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--questions", type=Path, default=DEV)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backend", choices=["index", "torch"], default="index", help="torch: ignore the ONNX export")
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--native-threads", action="store_true", help="in-process: keep BLAS/OpenMP thread defaults")
    ap.add_argument("--no-inprocess", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.backend == "torch":
        os.environ["QA_ENCODER_BACKEND"] = "torch"
    qs = questions(args.questions)
    print(f"# latency  {machine()}  questions={len(qs)} repeat={args.repeat}")
    result: dict = {"machine": machine()}
    if not args.no_inprocess:
        r = in_process(args.index, qs, args.repeat, one_thread=not args.native_threads)
        result["in_process"] = r
        print(f"\nin-process (encoder backend: {r['backend']}, engine load {r['load_s']:.1f}s, n={r['n']})\n")
        rows = [
            ["Engine.ask + model_dump_json", *r["ask_ms"]],
            ["  same, instrumented (wall)", *r["ask_instrumented_ms"]],
            ["  same, instrumented (CPU)", *r["ask_cpu_ms"]],
            ["repeated question (query cache hit)", *r["cached_ms"]],
        ]
        print(table(rows, ["ms", "p50", "p95", "p99"]))
        print()
        rows = [[k, v["wall_mean"], v["wall_p50"], v["cpu_mean"]] for k, v in r["stages"].items()]
        tot = [sum(v["wall_mean"] for v in r["stages"].values()), sum(v["cpu_mean"] for v in r["stages"].values())]
        rows.append(["total", tot[0], "", tot[1]])
        print(table(rows, ["stage", "wall mean ms", "wall p50 ms", "CPU mean ms"]))
    if not args.no_http:
        h = over_http(args.index, qs, args.repeat)
        result["http"] = h
        print(f"\nHTTP (qa serve, 1 worker, sequential keep-alive, n={h['n']}, errors={h['errors']})\n")
        rows = [["POST /v1/ask round trip", *h["http_ms"]], ["  engine took_ms inside", *h["engine_took_ms"]]]
        print(table(rows, ["ms", "p50", "p95", "p99"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
