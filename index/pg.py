"""The PostgreSQL store (pgvector): the same index as the embedded files, in a database several servers share.

Selected by a connection string, `QA_STORE=postgresql://user@host:port/db` (index/stores.py dispatches).
What moves to the database: works, passages, their vectors (HNSW), the lexical postings, the extras, the
manifest, the exported query encoder. What stays in the process: the models, and what the engine keeps in
memory today (the passages' text and metadata, the sentence vectors, loaded once per version).

Lexical search is BM25 computed exactly as bm25s computes it (its "lucene" method, k1, b): the postings hold
each (term, passage)'s raw frequency and the passage's length in tokens (the embedded store's tokenizer); a
query computes the scores with the version's passage count, average length and document frequencies (each
segment's, less its hidden rows', added up when a version is loaded). So both stores rank lexical candidates
alike. The postings are also ordered by impact (the term's weight in the passage): a query scores only the
passages among each of its terms' LEXICAL_DEPTH best, which is exact while no term is more common than that
(PgSearchIndex.lexical_search).

Versions and segments (index/pg_schema.py): a write (`qa index build`, add, remove) compares a fingerprint of
each document file's rows with the current version's and writes one new segment with the passages of the new
and changed files only (their own HNSW graph); the current version's rows of changed and removed files are
hidden in the new version, not rewritten. All in one transaction whose last statement makes the version
current, so readers see the previous version or the new one, never half of one, and a write killed at any
moment is rolled back by the server, the previous version serving on. A write that would leave too many segments
merges the smaller ones into its own (_merged_files); compact() (`qa index compact`) merges them all into one.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import math
import queue
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from corpus.model import Passage, Work
from index import layout
from index import pg_schema as schema
from index.store import IndexLoadError, SearchIndex, StoreUnavailable

log = logging.getLogger(__name__)

# Tuned numbers of this store, and where they come from.
CONNECT_TIMEOUT_SECONDS = 5  # a request gets its 503 this soon when the database host does not answer
HNSW_MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search: a larger k is searched exactly
KEEP_VERSIONS = 3  # versions kept after a build: replicas still serving an older one (they poll) can finish
ARRAY_CHUNK_BYTES = 64 << 20  # bytea rows of an array: well under PostgreSQL's 1 GB value limit
BUILD_LOCK_KEY = 0x7161_5F62_7569_6C64  # pg_advisory lock id ("qa_build"): one writer per database
# pgvector builds the HNSW graph in maintenance_work_mem and slows down several times once it spills: a build asks
# for the graph's size (each row's vector + 2M neighbour links + element overhead), within these bounds.
MAINTENANCE_WORK_MEM_MB = (64, 8192)  # the upper bound: a third of a 24 GiB database host
WRITE_LOCK_KEY = BUILD_LOCK_KEY + 2  # held by a write's transaction: committed() waits for one in flight
LEXICAL_WORK_MEM = "64MB"  # an exact question's postings (~100k rows at 100k passages: bench/README.md §5) in memory
# Lexical search reads each query term's LEXICAL_DEPTH best postings (by impact) in each segment and scores the
# passages found exactly: exact whenever no term is in more passages than this (any collection under 3 000
# passages). At 1M synthetic passages (bench/README.md §5b, 68 dev questions, 2 busy cores), depth 1000 / 3000 /
# 10000: p50 50-69 / 92-105 / 167-223 ms, recall@10 against exact BM25 0.67 / 0.93 / 1.0 (exact: p50 ~1 300 ms).
LEXICAL_DEPTH = 3000
COPY_BATCH = 10_000  # rows a COPY writes between progress log lines
# A write merges segments (_merged_files) once its version would have more than MAX_SEGMENTS: each is one more HNSW
# search and postings scan per question. bench/pg_segments.py (bench/README.md §5c), one ask's retrieval p50 at
# 1 / 4 / 8 segments: demo (619 passages) 3.5-3.9 / 4.3-4.7 / 5.0-5.3 ms (7.8-12.3 at 20); 20k passages, HNSW,
# 33-42 / 49 / 72-75 ms. Four keeps it within ~1.5x of one segment; a merge rewrites the smaller segments only.
MAX_SEGMENTS = 4
MAX_HIDDEN_SHARE = 0.5  # a segment whose rows are mostly hidden is rewritten: its scans would read them for nothing
PREFIXES = ("postgresql://", "postgres://")


def is_database(location) -> bool:
    return isinstance(location, str) and location.startswith(PREFIXES)


def redacted(url: str) -> str:
    """The connection string without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class Database:
    """Connections to one database: a small pool, so each request does not pay a connection's set-up.
    A connection that fails is dropped; the next request opens a new one (the database may be back)."""

    def __init__(self, url: str) -> None:
        if not is_database(url):
            raise ValueError(f"not a PostgreSQL connection string: {redacted(str(url))!r} (postgresql://user@host/db)")
        self.url = url
        self._idle: queue.LifoQueue = queue.LifoQueue()

    def __str__(self) -> str:
        return redacted(self.url)

    def _connect(self):
        import psycopg
        from pgvector.psycopg import register_vector

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            register_vector(conn)
        except psycopg.ProgrammingError:  # a database without the extension yet: only a build creates it
            pass
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator:
        """A connection in autocommit mode; psycopg errors become StoreUnavailable (one line, no trace)."""
        import psycopg

        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = None
        if conn is None:
            try:
                conn = self._connect()
            except psycopg.Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StoreUnavailable(f"cannot connect to the database {self}: {first}") from exc
        try:
            yield conn
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            raise StoreUnavailable(_describe(exc, self)) from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if not conn.closed:
            self._idle.put(conn)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


def _describe(exc, db: Database) -> str:
    import psycopg

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return f"the collection version being served was removed from {db} (a newer one replaces it): {first}"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return f"the database {db} cannot be reached: {first}"
    return f"the database {db} refused a query: {first}"


# --- schema ---------------------------------------------------------------------------------------------------


def schema_version(conn) -> int | None:
    """The database's schema version; None if the project never created its schema there."""
    found = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
    if not found:
        return None
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return row[0] or 0


def check_schema(conn, db: Database) -> None:
    """Readers: the schema must be the one this code knows."""
    version = schema_version(conn)
    if version is None:
        raise IndexLoadError(f"no collection in the database {db} yet")
    if version > schema.LATEST:
        raise IndexLoadError(
            f"the database {db} has schema version {version}, newer than this code's {schema.LATEST}: "
            "upgrade verbatim-qa to serve it (a build with this version would not migrate it back)"
        )
    if version < schema.LATEST:
        raise IndexLoadError(
            f"the database {db} has schema version {version}, this code reads {schema.LATEST}: any write"
            " (`qa index build --store ...`, an add or a remove) migrates it, converting its collection"
        )


def migrate(conn, db: Database) -> int:
    """Bring the schema to the latest version (each migration in its own transaction); refuse a newer one."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (BUILD_LOCK_KEY + 1,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        version = schema_version(conn)
        if version > schema.LATEST:
            raise IndexLoadError(
                f"the database {db} has schema version {version}, newer than this code's {schema.LATEST}: "
                "upgrade verbatim-qa to build into it"
            )
        for target in range(version + 1, schema.LATEST + 1):
            conn.execute(schema.MIGRATIONS[target - 1])
            if target == 2 and version >= 1:  # a collection in version 1's tables: converted to a segment
                from pgvector.psycopg import register_vector

                register_vector(conn)
                _convert_v1(conn, db)
            if target == 3:
                _add_impacts(conn, db)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version VALUES (%s)", (target,))
            log.info("migrated the schema of %s to version %d", db, target)
    from pgvector.psycopg import register_vector

    register_vector(conn)
    return schema.LATEST


def current_version(conn) -> int | None:
    row = conn.execute("SELECT version FROM current_version").fetchone()
    return row[0] if row else None


def generation(url: str) -> tuple | None:
    """The version being served now (None when it cannot be told): a server polls it to pick up a build."""
    try:
        with _shared(url).connection() as conn:
            if schema_version(conn) != schema.LATEST:
                return None
            version = current_version(conn)
    except StoreUnavailable as exc:
        log.warning("%s", exc)
        return None
    return None if version is None else ("pg", version)


def built_from(url: str) -> dict[str, str] | None:
    """The corpus files (name -> sha256) the current version was built from; None without one."""
    try:
        with _shared(url).connection() as conn:
            if schema_version(conn) != schema.LATEST or (version := current_version(conn)) is None:
                return None
            row = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()
    except StoreUnavailable:
        return None
    return row[0]["corpus_files"]


def catalogue(url: str) -> tuple[dict[str, str], list[dict], list[dict]]:
    """The current version's corpus files (name -> sha256), works, and the files its build skipped (the build's
    "skipped" extra: file, reason); empty without one."""
    try:
        with _shared(url).connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # all three of one version
            if schema_version(conn) != schema.LATEST or (version := current_version(conn)) is None:
                return {}, [], []
            manifest = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]
            works = []
            for seg in manifest["segments"]:
                sql = "SELECT file, data FROM segment_works WHERE segment = %s ORDER BY position"
                works += [d for f, d in conn.execute(sql, (seg["id"],)) if f not in seg["hidden"]]
            sql = "SELECT value FROM extras WHERE version = %s AND key = 'skipped'"
            skipped = conn.execute(sql, (version,)).fetchone()
    except StoreUnavailable:
        return {}, [], []
    return dict(manifest["corpus_files"]), works, list(skipped[0] if skipped else [])


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def _shared(url: str) -> Database:
    """One pool per connection string in a process (the watcher polls often)."""
    with _databases_lock:
        if url not in _databases:
            _databases[url] = Database(url)
        return _databases[url]


@contextlib.contextmanager
def writer_lock(url: str, wait: bool = True) -> Iterator[bool]:
    """Held for a whole build, add, remove or compaction: a session-level advisory lock, released if the writer
    dies. Yields True once held; without `wait`, False at once if another writer holds it."""
    db = Database(url)
    with db.connection() as conn:
        held = conn.execute("SELECT pg_try_advisory_lock(%s)", (BUILD_LOCK_KEY,)).fetchone()[0]
        if not held and wait:
            log.info("waiting for another write to %s to finish", db)
            conn.execute("SELECT pg_advisory_lock(%s)", (BUILD_LOCK_KEY,))
            held = True
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(Exception):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK_KEY,))
    db.close()


# --- reading --------------------------------------------------------------------------------------------------

# What a build's extras and arrays are (qa/build.py): per passage and per sentence ones live in the segment of
# their passage and are concatenated at load; the rest is collection-wide and small, kept with each version.
PASSAGE_ARRAYS = ("passage_keys", "parse_keys")
SENTENCE_ARRAYS = ("sentence_vectors", "sentence_keys")
SENTENCE_EXTRAS = ("sentence_texts", "sentence_spans")
SENTENCE_OWNER = "sentence_owner"  # the passage position of each sentence (sorted)
ATTRIBUTIONS = "attributions"  # passage id -> holders: a column of the passage's row
REUSE = "reuse"  # index/reuse.py's record: its "parses" (passage position -> parse) are per passage


@dataclass
class _Segment:
    id: int
    hnsw: bool
    hidden: list[str]  # files this version hides in the segment
    rows: np.ndarray | None = None  # row -> position in the version (-1: hidden)
    deleted: list[int] | None = None  # the hidden rows


class PgSearchIndex(SearchIndex):
    """One version of the collection in PostgreSQL, with the surface of SearchIndex (index/store.py).

    Loaded into memory at start, as the embedded store does: passages, works, extras and arrays (the sentence
    vectors among them), from each live segment, its hidden rows left out. Positions 0..n-1 number the visible
    passages segment by segment, row by row. Searched in the database: dense (pgvector, one HNSW graph a segment,
    merged) and lexical (BM25 from term frequencies and the version's statistics); the passage vectors are read
    from it on demand.
    """

    def __init__(self, db: Database, version: int, manifest: dict, passages: list[Passage], works: dict) -> None:
        super().__init__(f"{db} version {version}", manifest, passages, works)
        self.db, self.version = db, version
        self._hnsw = manifest["dense"].get("hnsw")
        self._segments: list[_Segment] = []
        self._seg_of = np.zeros(0, np.int32)  # position -> index in _segments
        self._row_of = np.zeros(0, np.int32)  # position -> row in its segment
        self._df = np.zeros(0, np.int64)  # term id -> passages of this version that hold the term
        self.lexical_depth: int | None = LEXICAL_DEPTH  # postings read per query term and segment (lexical_search)

    @classmethod
    def open(cls, url: str) -> PgSearchIndex:
        db = Database(url)
        with db.connection() as conn:
            check_schema(conn, db)
            # One snapshot: the version read and its rows belong together even if a build commits meanwhile.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                version = current_version(conn)
                if version is None:
                    raise IndexLoadError(f"no collection in the database {db} yet")
                index = cls._read_version(conn, db, version)
        log.info("loaded collection version %d from %s (%d passages)", version, db, len(index))
        return index

    @classmethod
    def _read_version(cls, conn, db: Database, version: int) -> PgSearchIndex:
        manifest = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]
        segments = [_Segment(s["id"], s["hnsw"], s["hidden"]) for s in manifest["segments"]]
        passages, attributions, seg_of, row_of = [], {}, [], []
        for j, seg in enumerate(segments):
            hidden = set(seg.hidden)
            rows = conn.execute(
                f"SELECT rn, file, text, data, attributions FROM {schema.passages_table(seg.id)} ORDER BY rn"
            ).fetchall()
            seg.rows = np.full(len(rows), -1, np.int64)
            seg.deleted = []
            for rn, file, text, data, attrs in rows:
                if file in hidden:
                    seg.deleted.append(rn)
                    continue
                seg.rows[rn] = len(passages)
                p = Passage.from_dict(data | {"text": text})
                passages.append(p)
                attributions[p.id] = attrs
                seg_of.append(j)
                row_of.append(rn)
        works = {}
        for seg in segments:
            sql = "SELECT file, data FROM segment_works WHERE segment = %s ORDER BY position"
            works |= {d["id"]: Work(**d) for f, d in conn.execute(sql, (seg.id,)) if f not in set(seg.hidden)}
        index = cls(db, version, manifest, passages, works)
        index._segments = segments
        index._seg_of, index._row_of = np.array(seg_of, np.int32), np.array(row_of, np.int32)
        for key, value in conn.execute("SELECT key, value FROM extras WHERE version = %s", (version,)):
            index._extra[key] = value
        if ATTRIBUTIONS in manifest["extra"]:
            index._extra[ATTRIBUTIONS] = attributions
        index._arrays = _read_arrays(conn, "arrays", "version", version)
        _read_segment_data(conn, index, segments)
        index._df = _document_frequencies(conn, segments)
        index._onnx = _read_encoder(conn, manifest)
        if len(passages) != manifest["passage_count"]:
            raise IndexLoadError(f"passage counts disagree: {len(passages)} rows, manifest {manifest['passage_count']}")
        return index

    def _check_mapped(self) -> None:  # nothing is memory-mapped
        pass

    def passage_vectors(self, positions) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64)
        if not len(pos):
            return np.zeros((0, self.dim), np.float32)
        parts, params = [], []
        for j in np.unique(self._seg_of[pos]).tolist():
            rows = self._row_of[pos[self._seg_of[pos] == j]].tolist()
            parts.append(f"SELECT {j} AS s, rn, embedding FROM {self._passages(j)} WHERE rn = ANY(%s)")
            params.append(rows)
        with self.db.connection() as conn:
            found = conn.execute(" UNION ALL ".join(parts), params, binary=True).fetchall()
        vectors = {int(self._segments[s].rows[rn]): _as_array(vec) for s, rn, vec in found}
        return np.vstack([vectors[i] for i in pos.tolist()]).astype(np.float32, copy=False)

    def _passages(self, j: int) -> str:
        return schema.passages_table(self._segments[j].id)

    def dense_search(self, qvecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner product on normalised vectors (cosine): HNSW when the version has one and k is within its
        reach, else an exact scan (as the embedded store is exact below its ann_threshold)."""
        q = np.ascontiguousarray(np.atleast_2d(qvecs), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {q.shape[1]}, index {self.dim}")
        k = min(k, len(self.passages))
        scores, positions = np.full((len(q), max(k, 0)), -np.inf, np.float32), np.full((len(q), max(k, 0)), -1)
        if k <= 0:
            return scores, positions
        with self.db.connection() as conn:
            for row, vec in enumerate(q):
                found = self._nearest(conn, vec, k)
                positions[row, : len(found)] = [p for p, _ in found]
                scores[row, : len(found)] = [-d for _, d in found]
        return scores, positions

    def _nearest(self, conn, vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest of each segment (its own HNSW graph, or exact), merged. Hidden rows are filtered out
        inside the index scan, which pgvector's iterative scan continues until k rows pass."""
        approximate = bool(self._hnsw) and k <= HNSW_MAX_EF_SEARCH
        parts, params = [], []
        for j, seg in enumerate(self._segments):
            where, args = ("WHERE rn NOT IN (SELECT unnest(%s::int[]))", [seg.deleted]) if seg.deleted else ("", [])
            order = "embedding <#> %s" if approximate and seg.hnsw else "d, rn"
            parts.append(
                f"(SELECT {j} AS s, rn, embedding <#> %s AS d FROM {self._passages(j)} {where}"
                f" ORDER BY {order} LIMIT %s)"
            )
            params += [vec, *args, *([vec] if order != "d, rn" else []), k]
        sql = f"SELECT s, rn, d FROM ({' UNION ALL '.join(parts)}) AS u ORDER BY d, s, rn LIMIT %s"
        with conn.transaction():
            if approximate:
                ef = min(HNSW_MAX_EF_SEARCH, max(k, self._hnsw["ef_search"]))
                conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                if any(seg.deleted for seg in self._segments):  # pgvector 0.8: scan on past filtered-out rows
                    conn.execute("SET LOCAL hnsw.iterative_scan = strict_order")
            else:
                conn.execute("SET LOCAL enable_indexscan = off")  # exact: every passage is scored
            rows = conn.execute(sql, [*params, k]).fetchall()
        return [(int(self._segments[s].rows[rn]), d) for s, rn, d in rows]

    def lexical_search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 as bm25s computes it (its "lucene" method, k1 and b: index/build.py _write_bm25) over stemmed
        tokens without stopwords; 1-D, best first. The version's passage count and average length are in its
        manifest; its document frequencies were added up at load (_document_frequencies). A term repeated in the
        query counts each time, as in bm25s.

        The candidates are each query term's `lexical_depth` best postings in each segment (by impact: the term's
        BM25 weight with its segment's average length), and each candidate is scored exactly with every query
        term. So the result is exact BM25 whenever no query term is in more than `lexical_depth` of the version's
        passages (every passage holding a term is then a candidate). Otherwise the passages returned carry their
        exact scores and are the best k of the candidates; a passage among no term's best postings is missed
        (how often: bench/README.md §5b). `lexical_depth` None reads every posting of the terms (always exact)."""
        tokens = layout.bm25_tokenize([query], return_ids=False)[0]
        k = min(k, len(self.passages))
        if k <= 0 or not tokens:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        counts = Counter(tokens)
        with self.db.connection() as conn, conn.transaction():
            conn.execute(f"SET LOCAL work_mem = '{LEXICAL_WORK_MEM}'")  # the postings read stay in memory
            # Postings by index, in its order: a bitmap scan would read all of a common term's to keep its best.
            conn.execute("SET LOCAL enable_bitmapscan = off")
            found = conn.execute("SELECT term, term_id FROM terms WHERE term = ANY(%s)", (list(counts),)).fetchall()
            weights = self._idf({term_id: counts[term] for term, term_id in found})
            if not weights:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            sql, params = self._lexical_sql(weights, k)
            rows = conn.execute(sql, params).fetchall()
        positions = [int(self._segments[s].rows[rn]) for s, rn, _ in rows]
        return np.array([s for _, _, s in rows], np.float32), np.array(positions, np.int64)

    def _idf(self, terms: dict[int, int]) -> dict[int, float]:
        """Each query term's idf (bm25s's "lucene": log(1 + (N - df + 0.5) / (df + 0.5))) times its count in the
        query; terms no visible passage holds are left out."""
        n = self.manifest["lexical"]["doc_count"]
        out = {}
        for term_id, count in terms.items():
            df = int(self._df[term_id]) if term_id < len(self._df) else 0
            if df > 0:
                out[term_id] = count * math.log(1 + (n - df + 0.5) / (df + 0.5))
        return out

    def _lexical_sql(self, weights: dict[int, float], k: int) -> tuple[str, list]:
        """The sum of idf x tf / (tf + k1 (1 - b + b len / avgdl)) per passage over the postings of the query's
        terms in each segment (the candidates', or without a depth every visible one), the best k. One branch a
        term and segment, each term's id a literal to the planner (which then knows a common term's frequency)."""
        lex = self.manifest["lexical"]
        depth = None if self.lexical_depth is None else max(self.lexical_depth, k)
        ctes, cte_params, parts, part_params = [], [], [], []
        for j, seg in enumerate(self._segments):
            table = schema.postings_table(seg.id)
            hidden, hidden_args = (
                ("AND rn NOT IN (SELECT unnest(%s::int[]))", [seg.deleted]) if seg.deleted else ("", [])
            )
            which, which_args = hidden, hidden_args
            if depth is not None:
                ctes.append(f"c{j} AS MATERIALIZED ({_candidates_sql(table, len(weights), hidden)})")
                cte_params += [x for t in weights for x in (t, *hidden_args, depth)]
                which, which_args = f"AND rn = ANY((SELECT rns FROM c{j})::int[])", []
            for term_id, idf in weights.items():
                parts.append(f"SELECT {j} AS s, rn, tf, len, %s::float8 AS idf FROM {table} WHERE term_id = %s {which}")
                part_params += [idf, term_id, *which_args]
        k1, b, avgdl = float(lex["k1"]), float(lex["b"]), float(lex["avg_doc_len"])
        sql = (
            (f"WITH {', '.join(ctes)} " if ctes else "") + "SELECT s, rn, sum(idf * tf / (tf + %s + %s * len)) AS score"
            f" FROM ({' UNION ALL '.join(parts)}) AS h GROUP BY s, rn ORDER BY score DESC, s, rn LIMIT %s"
        )
        # tf / (tf + k1 (1 - b + b len / avgdl)) = tf / (tf + k1 (1 - b) + (k1 b / avgdl) len)
        return sql, [*cte_params, k1 * (1 - b), k1 * b / avgdl, *part_params, k]


def _candidates_sql(table: str, terms: int, hidden: str) -> str:
    """A segment's candidates (one array): each term's best postings, read in order from the (term_id, impact)
    index (parameters: each term's id, the hidden rows if any, the depth)."""
    best = f"(SELECT rn FROM {table} WHERE term_id = %s {hidden} ORDER BY impact DESC LIMIT %s)"
    return f"SELECT array_agg(DISTINCT rn ORDER BY rn) AS rns FROM ({' UNION ALL '.join([best] * terms)}) AS c"


def _document_frequencies(conn, segments: list[_Segment]) -> np.ndarray:
    """Term id -> how many of the version's passages hold it: the segments' counts, less their hidden rows'."""
    counts: list[tuple[np.ndarray, np.ndarray]] = []
    for seg in segments:
        rows = conn.execute(f"SELECT term_id, df FROM {schema.df_table(seg.id)}").fetchall()
        counts.append((np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64)))
        if seg.deleted:
            sql = f"SELECT term_id, count(*) FROM {schema.postings_table(seg.id)} WHERE rn = ANY(%s) GROUP BY term_id"
            rows = conn.execute(sql, (seg.deleted,)).fetchall()
            counts.append((np.array([r[0] for r in rows], np.int64), -np.array([r[1] for r in rows], np.int64)))
    size = max((int(ids.max()) + 1 for ids, _ in counts if len(ids)), default=0)
    df = np.zeros(size, np.int64)
    for ids, n in counts:
        np.add.at(df, ids, n)
    return df


def _as_array(vec) -> np.ndarray:
    """pgvector's binary loader gives a Vector, its text loader an ndarray."""
    return vec.to_numpy() if hasattr(vec, "to_numpy") else np.asarray(vec, np.float32)


def _read_arrays(conn, table: str, column: str, key_value: int) -> dict[str, np.ndarray]:
    chunks: dict[str, list] = {}
    sql = f"SELECT key, dtype, shape, data FROM {table} WHERE {column} = %s ORDER BY key, chunk"
    for key, dtype, shape, data in conn.execute(sql, (key_value,)):
        chunks.setdefault(key, [dtype, shape, []])[2].append(data)
    out = {}
    for key, (dtype, shape, parts) in chunks.items():
        out[key] = np.frombuffer(b"".join(parts), dtype=np.dtype(dtype)).reshape(shape)
    return out


def _read_segment_data(conn, index: PgSearchIndex, segments: list[_Segment]) -> None:
    """The per-passage and per-sentence extras and arrays of each segment, their visible rows concatenated, the
    sentences' owners and the parses' keys moved to version positions."""
    arrays: dict[str, list] = {}
    extras: dict[str, list] = {}
    parses: dict[str, list] = {}
    owners: list[np.ndarray] = []
    for seg in segments:
        seg_arrays = _read_arrays(conn, "segment_arrays", "segment", seg.id)
        seg_extras = dict(conn.execute("SELECT key, value FROM segment_extras WHERE segment = %s", (seg.id,)))
        visible = seg.rows >= 0
        for key in PASSAGE_ARRAYS:
            if key in seg_arrays:
                arrays.setdefault(key, []).append(seg_arrays[key][visible])
        for row, items in (seg_extras.get("parses") or {}).items():
            if seg.rows[int(row)] >= 0:
                parses[str(int(seg.rows[int(row)]))] = items
        if SENTENCE_OWNER not in seg_extras:
            continue
        owner = np.asarray(seg_extras[SENTENCE_OWNER], np.int64)
        keep = visible[owner] if len(owner) else np.zeros(0, bool)
        owners.append(seg.rows[owner[keep]])
        for key in SENTENCE_ARRAYS:
            if key in seg_arrays:
                arrays.setdefault(key, []).append(seg_arrays[key][keep])
        for key in SENTENCE_EXTRAS:
            if key in seg_extras:
                extras.setdefault(key, []).extend(v for v, kept in zip(seg_extras[key], keep, strict=True) if kept)
    for key, parts in arrays.items():
        array = np.concatenate(parts)
        array.setflags(write=False)
        index._arrays[key] = array
    if owners:
        index._extra[SENTENCE_OWNER] = np.concatenate(owners).tolist()
    index._extra |= extras
    if isinstance(index._extra.get(REUSE), dict):
        index._extra[REUSE] = index._extra[REUSE] | {"parses": parses}


def _read_encoder(conn, manifest: dict) -> tuple[bytes, str] | None:
    info = manifest.get("encoder") or {}
    if not info.get("file"):
        return None
    shas = manifest.get("blobs", {})
    blobs = dict(conn.execute("SELECT sha256, data FROM stored_blobs WHERE sha256 = ANY(%s)", (list(shas.values()),)))
    try:
        return bytes(blobs[shas[info["file"]]]), bytes(blobs[shas[info["tokenizer"]]]).decode("utf-8")
    except KeyError:
        log.warning("the collection's ONNX encoder is missing; queries will be encoded with torch")
        return None


# --- writing --------------------------------------------------------------------------------------------------


_write_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("qa_pg_write_token", default=None)


@contextlib.contextmanager
def tagged_write(token: str) -> Iterator[None]:
    """Writes in this block record `token` with the version they make current (collection_writes), in the same
    transaction: whoever holds the token can tell later whether that write committed (qa/collection.py)."""
    reset = _write_token.set(token)
    try:
        yield
    finally:
        _write_token.reset(reset)


def committed(url: str, token: str) -> bool:
    """Whether the write tagged `token` committed. Waits for a write still in flight (a writer killed a moment
    ago whose transaction the server has not ended yet): the write transaction holds WRITE_LOCK_KEY."""
    db = Database(url)
    try:
        with db.connection() as conn, conn.transaction():
            if schema_version(conn) != schema.LATEST:
                return False
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
            return bool(conn.execute("SELECT 1 FROM collection_writes WHERE token = %s", (token,)).fetchone())
    finally:
        db.close()


@dataclass
class Collection:
    """Everything a build gives the store: the whole collection as it should be after the write."""

    passages: list[Passage]
    works: list[Work]
    corpus_files: dict[str, str]
    vectors: np.ndarray
    model: dict
    extra: dict
    arrays: dict[str, np.ndarray]
    dense: dict
    encoder: dict
    blobs: dict[str, bytes]
    libraries: dict


def build_pg_index(
    url: str,
    passages: list[Passage],
    works: list[Work],
    corpus_files: dict[str, str],
    vectors: np.ndarray,
    model_info: dict,
    extra: dict,
    arrays: dict[str, np.ndarray],
    dense: dict,
    encoder: dict,
    encoder_dir: Path,
    libraries: dict,
) -> int:
    """Make `passages` (the whole collection) the current version, writing only what changed since the current
    one (see _write): all in one transaction; returns the version's number."""
    blobs = {n: (encoder_dir / n).read_bytes() for n in (encoder.get("file"), encoder.get("tokenizer")) if n}
    c = Collection(passages, works, corpus_files, vectors, model_info, extra, arrays, dense, encoder, blobs, libraries)
    return write_collection(url, c)


def write_collection(url: str, c: Collection, rewrite: bool = False) -> int:
    db = Database(url)
    try:
        with db.connection() as conn:
            migrate(conn, db)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
                version, written = _write(conn, db, c, rewrite)
            _drop_old_versions(conn, version)
    finally:
        db.close()
    log.info("collection version %d is current in %s: %d passages (%d written)", version, db, len(c.passages), written)
    return version


def hnsw_build_memory_mb(rows: int, dim: int, dense: dict) -> int:
    """maintenance_work_mem for building the HNSW graph of `rows` vectors in memory (pgvector's element: the
    vector, 2M neighbour links of 8 bytes on layer 0 and a few on the layers above, ~200 bytes of overhead)."""
    m = int((dense.get("hnsw") or {}).get("M", 16))
    need = rows * (4 * dim + 20 * m + 200) * 1.25 / 2**20
    low, high = MAINTENANCE_WORK_MEM_MB
    return int(min(high, max(low, need)))


@dataclass
class Compaction:
    """What compact() did: the segments before and after, the passages written, the hidden rows left out."""

    segments: tuple[int, int]
    passages: int
    hidden: int
    seconds: float
    version: int | None  # the new version; None when there was nothing to merge


def compact(url: str, force: bool = False) -> Compaction:
    """Merge the current version's live segments into one, leaving out hidden rows: a new version, written as every
    write is (under the writer lock, in one transaction that makes it current: readers of the old version go on,
    and a compaction killed midway leaves the old one serving). Rewrites the whole collection and its HNSW graph.
    Nothing is written when the version is one segment without hidden rows, unless `force`."""
    started = time.perf_counter()
    with writer_lock(url):  # an add that commits meanwhile would be lost from the version written here
        index = PgSearchIndex.open(url)
        try:
            before, hidden = len(index._segments), sum(len(seg.deleted) for seg in index._segments)
            if before <= 1 and not hidden and not force:
                return Compaction((before, before), 0, 0, time.perf_counter() - started, None)
            version = write_collection(url, _collection_of(index), rewrite=True)
        finally:
            index.db.close()
    return Compaction((before, 1), len(index), hidden, time.perf_counter() - started, version)


def _collection_of(index: PgSearchIndex) -> Collection:
    """The version `index` as a build would hand it to the store: its passages, vectors, extras and arrays."""
    m = index.manifest
    vectors = index.passage_vectors(np.arange(len(index)))
    info = m.get("encoder") or {}
    with index.db.connection() as conn:
        blobs = _read_encoder(conn, m)
    names = [info.get("file"), info.get("tokenizer")]
    blob_map = dict(zip(names, (blobs[0], blobs[1].encode("utf-8")), strict=True)) if blobs else {}
    return Collection(index.passages, list(index.works.values()), m["corpus_files"], vectors, m["model"],
                      dict(index._extra), dict(index._arrays), m["dense"], info, blob_map, m["libraries"])  # fmt: skip


def _json(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _canonical(value) -> str:
    """JSON that does not depend on key order (jsonb, which the previous version was read from, reorders keys)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _write(conn, db: Database, c: Collection, rewrite: bool) -> tuple[int, int]:
    """Write a version of `c` and make it current (the caller's transaction commits it). Returns (version,
    passages written).

    A document file is unchanged when its fingerprint (every row the build derived from it: passages, vectors,
    attributions, sentences, works) equals the one recorded with the current version: its rows stay where they
    are. The passages of new and changed files go into one new segment; the current version's rows of changed
    and removed files are hidden. A new model or tokenizer (or `rewrite`) writes every file again."""
    owner = np.asarray(c.extra.get(SENTENCE_OWNER, []), np.int64)
    by_file = _by_file(c)
    fingerprints = _fingerprints(c, by_file, owner)
    lexical = _lexical_info()
    previous = None if rewrite else _previous(conn, c, lexical)
    live = previous["files"] if previous else {}
    changed = sorted(f for f, fp in fingerprints.items() if live.get(f, (None, None))[1] != fp)
    if previous:
        changed = sorted(set(changed) | _merged_files(previous, fingerprints, changed))
    hidden_now = {f for f in live if f not in fingerprints} | (set(changed) & set(live))
    segments = []
    for seg in previous["segments"] if previous else []:
        hidden = sorted(set(seg["hidden"]) | {f for f in hidden_now if live[f][0] == seg["id"]})
        if set(hidden) < previous["segment_files"][seg["id"]]:
            segments.append(seg | {"hidden": hidden})
    version = conn.execute("INSERT INTO collection_versions (manifest) VALUES ('{}') RETURNING id").fetchone()[0]
    log.info("writing collection version %d to %s: %d of %d files changed", version, db, len(changed), len(by_file))
    selected = np.array(sorted(i for f in changed for i in by_file[f][0]), np.int64)
    stats = {f: (s, n, t) for f, (s, _, n, t) in live.items() if f not in hidden_now}
    if changed:
        segment, tokens = _write_segment(conn, c, selected, {f: fingerprints[f] for f in changed}, by_file, owner)
        segments.append({"id": segment, "hnsw": bool(c.dense.get("hnsw")), "hidden": []})
        stats |= {f: (segment, len(by_file[f][0]), tokens[f]) for f in changed}
    count, total_tokens = sum(n for _, n, _ in stats.values()), sum(t for _, _, t in stats.values())
    if count != len(c.passages):
        raise RuntimeError(f"version {version} would hold {count} passages, the build has {len(c.passages)}")
    lexical |= {"doc_count": count, "avg_doc_len": total_tokens / count if count else 1.0}
    collection_wide = {k: v for k, v in c.extra.items() if k not in (*SENTENCE_EXTRAS, SENTENCE_OWNER, ATTRIBUTIONS)}
    if isinstance(collection_wide.get(REUSE), dict):
        collection_wide[REUSE] = {k: v for k, v in collection_wide[REUSE].items() if k != "parses"}
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO extras (version, key, value) VALUES (%s, %s, %s)",
            [(version, key, _json(value)) for key, value in collection_wide.items()],
        )
    per_segment = (*PASSAGE_ARRAYS, *SENTENCE_ARRAYS)
    _write_arrays(conn, "arrays", version, {k: v for k, v in c.arrays.items() if k not in per_segment})
    manifest = {
        "format": "postgresql",
        "schema_version": schema.LATEST,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": c.model,
        "corpus_files": dict(sorted(c.corpus_files.items())),
        "passage_count": count,
        "work_count": len(c.works),
        "dense": c.dense,
        "lexical": lexical,
        "extra": sorted(c.extra),
        "arrays": sorted(c.arrays),
        "libraries": c.libraries,
        "encoder": c.encoder,
        "blobs": _write_blobs(conn, c.blobs),
        "segments": segments,
        "written": {"files": changed, "passages": len(selected)},
    }
    conn.execute("UPDATE collection_versions SET manifest = %s WHERE id = %s", (_json(manifest), version))
    if (token := _write_token.get()) is not None:
        conn.execute("INSERT INTO collection_writes (token, version) VALUES (%s, %s)", (token, version))
    # Last: the one statement that makes the version visible, committed with everything above.
    conn.execute(
        "INSERT INTO current_version (version) VALUES (%s)"
        " ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version",
        (version,),
    )
    return version, len(selected)


def _lexical_info() -> dict:
    import bm25s

    bm25 = bm25s.BM25()
    info = {"library": "bm25s's scoring, at query time", "method": bm25.method, "idf": bm25.idf_method}
    info |= {"k1": bm25.k1, "b": bm25.b, "stemmer": layout.STEMMER_LANGUAGE, "stopwords": layout.STOPWORDS}
    if bm25.method != "lucene" or bm25.idf_method != "lucene":
        raise RuntimeError(f"bm25s scores with {bm25.method}/{bm25.idf_method}; this store computes lucene's")
    return info


def _previous(conn, c: Collection, lexical: dict) -> dict | None:
    """The current version, if the new one can keep its rows: same model and tokenizer."""
    version = current_version(conn)
    if version is None:
        return None
    manifest = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]
    same = manifest.get("model") == c.model and manifest.get("schema_version") == schema.LATEST
    old = manifest.get("lexical", {})
    same = same and all(old.get(k) == lexical[k] for k in ("method", "idf", "k1", "b", "stemmer", "stopwords"))
    if not same:
        log.info("writing every document again: the model or the tokenizer changed since version %d", version)
        return None
    segments = manifest["segments"]
    ids = [s["id"] for s in segments]
    rows = conn.execute(
        "SELECT segment, file, fingerprint, passages, tokens FROM segment_files WHERE segment = ANY(%s)", (ids,)
    ).fetchall()
    segment_files: dict[int, set[str]] = {i: set() for i in ids}
    segment_rows = dict.fromkeys(ids, 0)  # every row of the segment, hidden ones too
    hidden = {(s["id"], f) for s in segments for f in s["hidden"]}
    files = {}
    for seg, file, fp, n, tokens in rows:
        segment_files[seg].add(file)
        segment_rows[seg] += n
        if (seg, file) not in hidden:
            files[file] = (seg, fp, n, tokens)
    return {"version": version, "segments": segments, "segment_files": segment_files, "files": files,
            "segment_rows": segment_rows}  # fmt: skip


def _merged_files(previous: dict, fingerprints: dict[str, str], changed: list[str]) -> set[str]:
    """The unchanged files a write rewrites into its new segment, so that the segments they were in leave the
    version: those of every segment but the largest when the version would have more than MAX_SEGMENTS (a merge
    costs the smaller segments' rows, not the collection's), and those of a segment whose rows would be mostly
    hidden (MAX_HIDDEN_SHARE)."""
    staying: dict[int, list[str]] = {}  # segment -> its files that stay visible as they are
    for file, (seg, *_) in previous["files"].items():
        if file in fingerprints and file not in changed:
            staying.setdefault(seg, []).append(file)
    visible = {seg: sum(previous["files"][f][2] for f in files) for seg, files in staying.items()}
    merge = {seg for seg, n in visible.items() if n < (1 - MAX_HIDDEN_SHARE) * previous["segment_rows"][seg]}
    if len(staying) + bool(changed) > MAX_SEGMENTS:
        merge |= set(staying) - {max(staying, key=lambda seg: (visible[seg], -seg))}
    if merge:
        log.info("merging segments %s into the new one", ", ".join(map(str, sorted(merge))))
    return {f for seg in merge for f in staying[seg]}


def _by_file(c: Collection) -> dict[str, tuple[list[int], list[int]]]:
    """Each document file's passages and works (their indexes in the build), in the build's order."""
    out: dict[str, tuple[list[int], list[int]]] = {}
    for i, p in enumerate(c.passages):
        out.setdefault(p.file, ([], []))[0].append(i)
    for i, w in enumerate(c.works):
        out.setdefault(w.file, ([], []))[1].append(i)
    return out


def _sentence_rows(owner: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """The sentences (rows of the per-sentence data) of the given passages, in order."""
    if not len(owner) or not len(passages):
        return np.zeros(0, np.int64)
    starts, ends = np.searchsorted(owner, passages, "left"), np.searchsorted(owner, passages, "right")
    return np.concatenate([np.arange(a, b) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])


def _fingerprints(c: Collection, by_file: dict, owner: np.ndarray) -> dict[str, str]:
    """A hash of everything the build derived from each file: equal hashes, rows that can be kept."""
    attributions = c.extra.get(ATTRIBUTIONS) or {}
    parses = (c.extra.get(REUSE) or {}).get("parses", {}) if isinstance(c.extra.get(REUSE), dict) else {}
    out = {}
    for file, (passages, works) in by_file.items():
        h = hashlib.blake2b(digest_size=16)
        idx = np.array(passages, np.int64)
        rows = [[c.passages[i].to_dict(), attributions.get(c.passages[i].id), parses.get(str(i))] for i in passages]
        h.update(_canonical([rows, [c.works[i].to_dict() for i in works]]).encode("utf-8"))
        h.update(np.ascontiguousarray(c.vectors[idx]).tobytes())
        sentences = _sentence_rows(owner, idx)
        h.update(_canonical([(owner[sentences] - idx.min()).tolist() if len(idx) else []]).encode())
        for key in PASSAGE_ARRAYS:
            if key in c.arrays:
                h.update(np.ascontiguousarray(c.arrays[key][idx]).tobytes())
        for key in SENTENCE_ARRAYS:
            if key in c.arrays:
                h.update(np.ascontiguousarray(c.arrays[key][sentences]).tobytes())
        for key in SENTENCE_EXTRAS:
            if key in c.extra:
                h.update(_canonical([c.extra[key][s] for s in sentences.tolist()]).encode("utf-8"))
        out[file] = h.hexdigest()
    return out


def _write_segment(conn, c: Collection, selected: np.ndarray, fingerprints: dict, by_file: dict, owner: np.ndarray):
    """A new segment of the passages at `selected` (indexes in the build, ascending: its rows 0..m-1), with their
    postings, works, and per-passage and per-sentence data. Returns its id and each file's token count."""
    hnsw = c.dense.get("hnsw")
    sql = "INSERT INTO segments (passages, hnsw) VALUES (%s, %s) RETURNING id"
    segment = conn.execute(sql, (len(selected), bool(hnsw))).fetchone()[0]
    log.info("writing segment %d: %d passages", segment, len(selected))
    conn.execute(schema.segment_tables_ddl(segment, c.vectors.shape[1]))
    passages = [c.passages[i] for i in selected.tolist()]
    lengths = _copy_postings(conn, segment, passages)
    _copy_passages(conn, segment, passages, c.vectors[selected], c.extra.get(ATTRIBUTIONS) or {}, lengths)
    tokens = {f: 0 for f in fingerprints}
    for p, n in zip(passages, lengths.tolist(), strict=True):
        tokens[p.file] += n
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO segment_files (segment, file, fingerprint, passages, tokens) VALUES (%s, %s, %s, %s, %s)",
            [(segment, f, fp, len(by_file[f][0]), tokens[f]) for f, fp in fingerprints.items()],
        )
        works = [c.works[i] for f in fingerprints for i in by_file[f][1]]
        cur.executemany(
            "INSERT INTO segment_works (segment, position, id, file, data) VALUES (%s, %s, %s, %s, %s)",
            [(segment, i, w.id, w.file, _json(w.to_dict())) for i, w in enumerate(works)],
        )
        extras = {}
        if len(owner) or SENTENCE_OWNER in c.extra:
            sentences = _sentence_rows(owner, selected)
            extras[SENTENCE_OWNER] = np.searchsorted(selected, owner[sentences]).tolist()
            for key in SENTENCE_EXTRAS:
                if key in c.extra:
                    extras[key] = [c.extra[key][s] for s in sentences.tolist()]
        else:
            sentences = np.zeros(0, np.int64)
        reuse = c.extra.get(REUSE)
        if isinstance(reuse, dict) and "parses" in reuse:
            found = reuse["parses"]
            extras["parses"] = {str(r): found[str(i)] for r, i in enumerate(selected.tolist()) if str(i) in found}
        cur.executemany(
            "INSERT INTO segment_extras (segment, key, value) VALUES (%s, %s, %s)",
            [(segment, key, _json(value)) for key, value in extras.items()],
        )
    arrays = {k: c.arrays[k][selected] for k in PASSAGE_ARRAYS if k in c.arrays}
    arrays |= {k: c.arrays[k][sentences] for k in SENTENCE_ARRAYS if k in c.arrays}
    _write_arrays(conn, "segment_arrays", segment, arrays)
    memory_mb = hnsw_build_memory_mb(len(selected), c.vectors.shape[1], c.dense)
    conn.execute(f"SET LOCAL maintenance_work_mem = '{memory_mb}MB'")
    conn.execute(schema.segment_indexes_ddl(segment, hnsw))
    conn.execute(f"ANALYZE {schema.passages_table(segment)}")
    conn.execute(f"ANALYZE {schema.postings_table(segment)}")
    return segment, tokens


def _copy_passages(conn, segment: int, passages: list[Passage], vectors, attributions: dict, lengths) -> None:
    columns = "rn, id, work, file, section, text, data, attributions, tokens, embedding"
    with conn.cursor() as cur, cur.copy(f"COPY {schema.passages_table(segment)} ({columns}) FROM STDIN") as copy:
        for i, (p, vec, n) in enumerate(zip(passages, vectors, lengths.tolist(), strict=True)):
            data = p.to_dict()
            text = data.pop("text")
            row = (i, p.id, p.work, p.file, p.section, text, _dumps(data), _dumps(attributions.get(p.id, [])), n)
            copy.write_row((*row, vec))
            if i and i % (10 * COPY_BATCH) == 0:
                log.info("copied %d passages", i)


def _copy_postings(conn, segment: int, passages: list[Passage]) -> np.ndarray:
    """The passages' term frequencies (bm25s's tokens, index/build.py _write_bm25), one row per (term, passage)
    with the passage's length (the server adds its impact, with the segment's average length); new terms join the
    shared dictionary. Returns each passage's length in tokens."""
    tokenized = layout.bm25_tokenize([p.text for p in passages], return_ids=True, closed_compounds=True)
    vocab = tokenized.vocab  # term -> local id
    terms = sorted(vocab, key=vocab.get)
    conn.execute("INSERT INTO terms (term) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", (terms,))
    found = dict(conn.execute("SELECT term, term_id FROM terms WHERE term = ANY(%s)", (terms,)).fetchall())
    global_id = np.array([found[t] for t in terms], np.int64)
    lengths = np.array([len(ids) for ids in tokenized.ids], np.int64)
    lexical = _lexical_info()
    avgdl = float(lengths.mean()) if lengths.sum() else 1.0
    conn.execute(schema.postings_ddl(segment, avgdl, lexical["k1"], lexical["b"]))
    if not lengths.sum():
        return lengths
    doc = np.repeat(np.arange(len(lengths)), lengths)
    local = np.concatenate([np.asarray(ids, np.int64) for ids in tokenized.ids if len(ids)])
    keys, tf = np.unique(doc * len(terms) + local, return_counts=True)
    docs, term_ids = keys // len(terms), global_id[keys % len(terms)]
    sql = f"COPY {schema.postings_table(segment)} (term_id, rn, tf, len) FROM STDIN WITH (FORMAT BINARY)"
    with conn.cursor() as cur:
        with cur.copy(sql) as copy:
            copy.set_types(["int4", "int4", "int4", "int4"])
            for row in zip(term_ids.tolist(), docs.tolist(), tf.tolist(), lengths[docs].tolist(), strict=True):
                copy.write_row(row)
        ids, df = np.unique(term_ids, return_counts=True)
        with cur.copy(f"COPY {schema.df_table(segment)} (term_id, df) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "int4"])
            for row in zip(ids.tolist(), df.tolist(), strict=True):
                copy.write_row(row)
    return lengths


def _write_arrays(conn, table: str, owner: int, arrays: dict[str, np.ndarray]) -> None:
    column = "segment" if table == "segment_arrays" else "version"
    with conn.cursor() as cur:
        for key, value in arrays.items():
            raw = np.ascontiguousarray(value).tobytes()
            parts = [raw[i : i + ARRAY_CHUNK_BYTES] for i in range(0, len(raw), ARRAY_CHUNK_BYTES)] or [b""]
            cur.executemany(
                f"INSERT INTO {table} ({column}, key, chunk, dtype, shape, data) VALUES (%s, %s, %s, %s, %s, %s)",
                [(owner, key, i, value.dtype.str, list(value.shape), part) for i, part in enumerate(parts)],
            )


def _write_blobs(conn, blobs: dict[str, bytes]) -> dict[str, str]:
    """The encoder's files, stored once by content (an add does not copy them again); name -> sha256."""
    out = {}
    for name, data in blobs.items():
        sha = hashlib.sha256(data).hexdigest()
        if not conn.execute("SELECT 1 FROM stored_blobs WHERE sha256 = %s", (sha,)).fetchone():
            conn.execute("INSERT INTO stored_blobs (sha256, data) VALUES (%s, %s)", (sha, data))
        out[name] = sha
    return out


def _drop_old_versions(conn, current: int) -> None:
    """Drop versions older than the KEEP_VERSIONS newest, then the segments and blobs no kept version uses, each
    segment only if no reader holds it (never waits)."""
    import psycopg

    with conn.transaction():
        conn.execute(
            "DELETE FROM collection_versions WHERE id IN (SELECT id FROM collection_versions WHERE id <> %s"
            " ORDER BY id DESC OFFSET %s)",
            (current, KEEP_VERSIONS - 1),
        )
        manifests = [m for (m,) in conn.execute("SELECT manifest FROM collection_versions")]
        used = {s["id"] for m in manifests for s in m.get("segments", [])}
        shas = [sha for m in manifests for sha in m.get("blobs", {}).values()]
        conn.execute("DELETE FROM stored_blobs WHERE NOT (sha256 = ANY(%s))", (shas,))
        unused = [s for (s,) in conn.execute("SELECT id FROM segments WHERE NOT (id = ANY(%s))", (sorted(used),))]
    for segment in unused:
        try:
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '1s'")
                conn.execute(schema.drop_segment_ddl(segment))
            log.info("dropped segment %d", segment)
        except psycopg.errors.LockNotAvailable:
            log.info("segment %d is still being read; the next write drops it", segment)


def encoder_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="qa-pg-encoder-")


# --- schema version 2 ----------------------------------------------------------------------------------------


def _add_impacts(conn, db: Database) -> None:
    """Migration 2 -> 3: each segment's postings gain their impact (with the segment's average passage length, as
    a write computes it) and the indexes that read them by impact; the versions' rows are kept as they are. (A
    segment written by the conversion from version 1, in the same migration, has them already.)"""
    lexical = _lexical_info()
    segments = [s for (s,) in conn.execute("SELECT id FROM segments ORDER BY id")]
    for segment in segments:
        table = schema.postings_table(segment)
        sql = "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'impact'"
        if conn.execute(sql, (table,)).fetchone():
            continue
        log.info("ordering the postings of segment %d of %s by impact", segment, db)
        avgdl = conn.execute(f"SELECT avg(tokens)::float8 FROM {schema.passages_table(segment)}").fetchone()[0]
        impact = schema.impact_sql(avgdl or 1.0, lexical["k1"], lexical["b"])
        conn.execute(f"ALTER TABLE {table} ADD COLUMN impact real GENERATED ALWAYS AS ({impact}) STORED")
        for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (table,)).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute(schema.postings_indexes_ddl(segment))
        conn.execute(f"ANALYZE {table}")
    # The versions' segments are now schema 3's: a write keeps their rows (_previous compares this number).
    conn.execute("UPDATE collection_versions SET manifest = jsonb_set(manifest, '{schema_version}', '3')"
                 " WHERE manifest ? 'schema_version'")  # fmt: skip


# --- schema version 1 ----------------------------------------------------------------------------------------


def _convert_v1(conn, db: Database) -> None:
    """Migration 1 -> 2: version 1's current collection becomes one segment and a version (every row written
    once, BM25 term frequencies from the passages' texts); then version 1's tables go."""
    versions = [v for (v,) in conn.execute("SELECT id FROM collection_versions ORDER BY id")]
    version = current_version(conn)
    if version is not None:
        log.info("converting collection version %d of %s to segments", version, db)
        manifest = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]
        rows = conn.execute(
            f"SELECT text, data, attributions, embedding FROM passages_v{int(version)} ORDER BY position", binary=True
        ).fetchall()
        passages = [Passage.from_dict(data | {"text": text}) for text, data, _, _ in rows]
        vectors = np.vstack([_as_array(v) for *_, v in rows]).astype(np.float32)
        works_rows = conn.execute("SELECT data FROM works WHERE version = %s ORDER BY position", (version,))
        works = [Work(**d) for (d,) in works_rows]
        extra = dict(conn.execute("SELECT key, value FROM extras WHERE version = %s", (version,)).fetchall())
        if ATTRIBUTIONS in manifest["extra"]:
            extra[ATTRIBUTIONS] = {p.id: a for p, (_, _, a, _) in zip(passages, rows, strict=True)}
        arrays = _read_arrays(conn, "arrays", "version", version)
        blobs = {n: bytes(d) for n, d in conn.execute("SELECT name, data FROM blobs WHERE version = %s", (version,))}
        info = (manifest["dense"], manifest.get("encoder") or {}, blobs, manifest.get("libraries", {}))
        c = Collection(passages, works, manifest["corpus_files"], vectors, manifest["model"], extra, arrays, *info)
        conn.execute("DELETE FROM extras WHERE version = %s", (version,))
        conn.execute("DELETE FROM arrays WHERE version = %s", (version,))
        _write(conn, db, c, rewrite=True)
    for v in versions:
        conn.execute(f"DROP TABLE IF EXISTS {', '.join(schema.v1_tables(v))}")
    conn.execute("DROP TABLE works, blobs")
    conn.execute("DELETE FROM collection_versions WHERE id = ANY(%s)", (versions,))
