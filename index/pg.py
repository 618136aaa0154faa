"""The PostgreSQL store (pgvector): the same index as the embedded files, in a database several servers share.

Selected by a connection string, `QA_STORE=postgresql://user@host:port/db` (index/stores.py dispatches).
What moves to the database: works, passages, their vectors (HNSW), the lexical postings, the extras, the
manifest, the exported query encoder. What stays in the process: the models, and what the engine keeps in
memory today (the passages' text and metadata, the sentence vectors, loaded once per version).

Lexical search is BM25 computed exactly as bm25s computes it: the build runs bm25s and stores its per-(term,
passage) scores as postings; a query sums the postings of its stemmed terms (the same tokenizer as the
embedded store). So both stores rank lexical candidates identically, not merely alike.

Versions (index/pg_schema.py): a build writes a whole new version in one transaction whose last statement
makes it current, so readers see the previous version or the new one, never half of one; a build killed at
any moment is rolled back by the server and the previous version goes on serving.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import tempfile
import threading
from collections.abc import Iterator
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
COPY_BATCH = 10_000  # rows a COPY writes between progress log lines
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
        raise IndexLoadError(f"the database {db} has schema version {version}, this code reads {schema.LATEST}")


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


def catalogue(url: str) -> tuple[dict[str, str], list[dict]]:
    """The current version's corpus files (name -> sha256) and works; empty without one."""
    try:
        with _shared(url).connection() as conn:
            if schema_version(conn) != schema.LATEST or (version := current_version(conn)) is None:
                return {}, []
            manifest = conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]
            works = conn.execute("SELECT data FROM works WHERE version = %s ORDER BY position", (version,)).fetchall()
    except StoreUnavailable:
        return {}, []
    return dict(manifest["corpus_files"]), [w for (w,) in works]


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def _shared(url: str) -> Database:
    """One pool per connection string in a process (the watcher polls often)."""
    with _databases_lock:
        if url not in _databases:
            _databases[url] = Database(url)
        return _databases[url]


@contextlib.contextmanager
def writer_lock(url: str) -> Iterator[None]:
    """Held for a whole build, add or remove: a session-level advisory lock, released if the writer dies."""
    db = Database(url)
    with db.connection() as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (BUILD_LOCK_KEY,)).fetchone()[0]:
            log.info("waiting for another write to %s to finish", db)
            conn.execute("SELECT pg_advisory_lock(%s)", (BUILD_LOCK_KEY,))
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK_KEY,))
    db.close()


# --- reading --------------------------------------------------------------------------------------------------


class PgSearchIndex(SearchIndex):
    """One version of the collection in PostgreSQL, with the surface of SearchIndex (index/store.py).

    Loaded into memory at start, as the embedded store does: passages, works, extras and arrays (the sentence
    vectors among them). Searched in the database: dense (pgvector) and lexical (BM25 postings), and the
    passage vectors are read from it on demand.
    """

    def __init__(self, db: Database, version: int, manifest: dict, passages: list[Passage], works: dict) -> None:
        super().__init__(f"{db} version {version}", manifest, passages, works)
        self.db, self.version = db, version
        self._table = schema.passages_table(version)
        self._hnsw = manifest["dense"].get("hnsw")

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
        rows = conn.execute(
            f"SELECT text, data, attributions FROM {schema.passages_table(version)} ORDER BY position"
        ).fetchall()
        passages = [Passage.from_dict(data | {"text": text}) for text, data, _ in rows]
        works_rows = conn.execute("SELECT data FROM works WHERE version = %s ORDER BY position", (version,))
        works = {d["id"]: Work(**d) for (d,) in works_rows}
        index = cls(db, version, manifest, passages, works)
        if "attributions" in manifest["extra"]:
            index._extra["attributions"] = {p.id: attrs for p, (_, _, attrs) in zip(passages, rows, strict=True)}
        for key, value in conn.execute("SELECT key, value FROM extras WHERE version = %s", (version,)):
            index._extra[key] = value
        index._arrays = _read_arrays(conn, version)
        index._onnx = _read_encoder(conn, version, manifest)
        if len(passages) != manifest["passage_count"]:
            raise IndexLoadError(f"passage counts disagree: {len(passages)} rows, manifest {manifest['passage_count']}")
        return index

    def _check_mapped(self) -> None:  # nothing is memory-mapped
        pass

    def passage_vectors(self, positions) -> np.ndarray:
        ids = [int(i) for i in np.asarray(positions, dtype=np.int64)]
        if not ids:
            return np.zeros((0, self.dim), np.float32)
        with self.db.connection() as conn:
            rows = conn.execute(
                f"SELECT position, embedding FROM {self._table} WHERE position = ANY(%s)", (ids,), binary=True
            ).fetchall()
        found = {pos: _as_array(vec) for pos, vec in rows}
        return np.vstack([found[i] for i in ids]).astype(np.float32, copy=False)

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
        approximate = bool(self._hnsw) and k <= HNSW_MAX_EF_SEARCH
        sql = f"SELECT position, embedding <#> %s AS d FROM {self._table} ORDER BY d, position LIMIT %s"
        if approximate:
            sql = f"SELECT position, embedding <#> %s AS d FROM {self._table} ORDER BY embedding <#> %s LIMIT %s"
        with conn.transaction():
            if approximate:
                ef = min(HNSW_MAX_EF_SEARCH, max(k, self._hnsw["ef_search"]))
                conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
                return conn.execute(sql, (vec, vec, k)).fetchall()
            conn.execute("SET LOCAL enable_indexscan = off")  # exact: every passage is scored
            return conn.execute(sql, (vec, k)).fetchall()

    def lexical_search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 (bm25s's scores, stored as postings) over stemmed tokens without stopwords; 1-D, best first."""
        tokens = layout.bm25_tokenize([query], return_ids=False)[0]
        k = min(k, len(self.passages))
        if k <= 0 or not tokens:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        # A term repeated in the query counts each time, as in bm25s.
        sql = (
            f"SELECT p.position, sum(p.score) AS s FROM unnest(%s::text[]) AS q(term)"
            f" JOIN {schema.terms_table(self.version)} t USING (term)"
            f" JOIN {schema.postings_table(self.version)} p ON p.term_id = t.term_id"
            " GROUP BY p.position HAVING sum(p.score) > 0 ORDER BY s DESC, p.position LIMIT %s"
        )
        with self.db.connection() as conn:
            rows = conn.execute(sql, (list(tokens), k)).fetchall()
        return np.array([s for _, s in rows], np.float32), np.array([p for p, _ in rows], np.int64)


def _as_array(vec) -> np.ndarray:
    """pgvector's binary loader gives a Vector, its text loader an ndarray."""
    return vec.to_numpy() if hasattr(vec, "to_numpy") else np.asarray(vec, np.float32)


def _read_arrays(conn, version: int) -> dict[str, np.ndarray]:
    chunks: dict[str, list] = {}
    sql = "SELECT key, dtype, shape, data FROM arrays WHERE version = %s ORDER BY key, chunk"
    for key, dtype, shape, data in conn.execute(sql, (version,)):
        chunks.setdefault(key, [dtype, shape, []])[2].append(data)
    out = {}
    for key, (dtype, shape, parts) in chunks.items():
        array = np.frombuffer(b"".join(parts), dtype=np.dtype(dtype)).reshape(shape)
        array.setflags(write=False)
        out[key] = array
    return out


def _read_encoder(conn, version: int, manifest: dict) -> tuple[bytes, str] | None:
    info = manifest.get("encoder") or {}
    if not info.get("file"):
        return None
    blobs = dict(conn.execute("SELECT name, data FROM blobs WHERE version = %s", (version,)).fetchall())
    try:
        return bytes(blobs[info["file"]]), bytes(blobs[info["tokenizer"]]).decode("utf-8")
    except KeyError:
        log.warning("the collection's ONNX encoder is missing; queries will be encoded with torch")
        return None


# --- writing --------------------------------------------------------------------------------------------------


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
    """Write a new collection version and make it current, all in one transaction; returns its number."""
    bm25 = _bm25_postings(passages)
    db = Database(url)
    try:
        with db.connection() as conn:
            migrate(conn, db)
            with conn.transaction():
                version = _write_version(conn, db, passages, works, vectors, extra, arrays, dense, bm25)
                _write_blobs(conn, version, encoder_dir, encoder)
                manifest = {
                    "format": "postgresql",
                    "schema_version": schema.LATEST,
                    "version": version,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "model": model_info,
                    "corpus_files": dict(sorted(corpus_files.items())),
                    "passage_count": len(passages),
                    "work_count": len(works),
                    "dense": dense,
                    "lexical": bm25["info"],
                    "extra": sorted(extra),
                    "arrays": sorted(arrays),
                    "libraries": libraries,
                    "encoder": encoder,
                }
                conn.execute("UPDATE collection_versions SET manifest = %s WHERE id = %s", (_json(manifest), version))
                # Last: the one statement that makes the version visible, committed with everything above.
                conn.execute(
                    "INSERT INTO current_version (version) VALUES (%s)"
                    " ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version",
                    (version,),
                )
            _drop_old_versions(conn, version)
    finally:
        db.close()
    log.info("collection version %d is current in %s: %d passages", version, db, len(passages))
    return version


def hnsw_build_memory_mb(rows: int, dim: int, dense: dict) -> int:
    """maintenance_work_mem for building the HNSW graph of `rows` vectors in memory (pgvector's element: the
    vector, 2M neighbour links of 8 bytes on layer 0 and a few on the layers above, ~200 bytes of overhead)."""
    m = int((dense.get("hnsw") or {}).get("M", 16))
    need = rows * (4 * dim + 20 * m + 200) * 1.25 / 2**20
    low, high = MAINTENANCE_WORK_MEM_MB
    return int(min(high, max(low, need)))


def _json(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def _write_version(conn, db, passages, works, vectors, extra, arrays, dense, bm25) -> int:
    version = conn.execute("INSERT INTO collection_versions (manifest) VALUES ('{}') RETURNING id").fetchone()[0]
    log.info("writing collection version %d to %s (%d passages)", version, db, len(passages))
    conn.execute(schema.version_tables_ddl(version, vectors.shape[1]))
    attributions = extra.get("attributions") or {}
    extra = {k: v for k, v in extra.items() if k != "attributions"}  # kept with each passage
    _copy_passages(conn, version, passages, vectors, attributions)
    _copy_postings(conn, version, bm25)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO works (version, position, id, data) VALUES (%s, %s, %s, %s)",
            [(version, i, w.id, _json(w.to_dict())) for i, w in enumerate(works)],
        )
        cur.executemany(
            "INSERT INTO extras (version, key, value) VALUES (%s, %s, %s)",
            [(version, key, _json(value)) for key, value in extra.items()],
        )
    _write_arrays(conn, version, arrays)
    memory_mb = hnsw_build_memory_mb(len(passages), vectors.shape[1], dense)
    conn.execute(f"SET LOCAL maintenance_work_mem = '{memory_mb}MB'")
    conn.execute(schema.version_indexes_ddl(version, dense.get("hnsw")))
    conn.execute(f"ANALYZE {schema.passages_table(version)}")
    conn.execute(f"ANALYZE {schema.postings_table(version)}")
    return version


def _copy_passages(conn, version: int, passages: list[Passage], vectors: np.ndarray, attributions: dict) -> None:
    columns = "position, id, work, file, section, text, data, attributions, embedding"
    with conn.cursor() as cur, cur.copy(f"COPY {schema.passages_table(version)} ({columns}) FROM STDIN") as copy:
        for i, (p, vec) in enumerate(zip(passages, vectors, strict=True)):
            data = p.to_dict()
            text = data.pop("text")
            row = (i, p.id, p.work, p.file, p.section, text, json.dumps(data, ensure_ascii=False))
            copy.write_row((*row, json.dumps(attributions.get(p.id, []), ensure_ascii=False), vec))
            if i and i % (10 * COPY_BATCH) == 0:
                log.info("copied %d passages", i)


def _copy_postings(conn, version: int, bm25: dict) -> None:
    with conn.cursor() as cur:
        with cur.copy(f"COPY {schema.terms_table(version)} (term, term_id) FROM STDIN") as copy:
            for term, term_id in bm25["vocab"].items():
                copy.write_row((term, term_id))
        data, indices, indptr = bm25["data"], bm25["indices"], bm25["indptr"]
        term_of = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
        sql = f"COPY {schema.postings_table(version)} (term_id, position, score) FROM STDIN WITH (FORMAT BINARY)"
        with cur.copy(sql) as copy:
            copy.set_types(["int4", "int4", "float4"])
            for t, p, s in zip(term_of.tolist(), indices.tolist(), data.tolist(), strict=True):
                copy.write_row((t, p, s))


def _write_arrays(conn, version: int, arrays: dict[str, np.ndarray]) -> None:
    with conn.cursor() as cur:
        for key, value in arrays.items():
            raw = np.ascontiguousarray(value).tobytes()
            parts = [raw[i : i + ARRAY_CHUNK_BYTES] for i in range(0, len(raw), ARRAY_CHUNK_BYTES)] or [b""]
            cur.executemany(
                "INSERT INTO arrays (version, key, chunk, dtype, shape, data) VALUES (%s, %s, %s, %s, %s, %s)",
                [(version, key, i, value.dtype.str, list(value.shape), part) for i, part in enumerate(parts)],
            )


def _write_blobs(conn, version: int, root: Path, encoder: dict) -> None:
    for name in (encoder.get("file"), encoder.get("tokenizer")):
        if name:
            data = (root / name).read_bytes()
            conn.execute("INSERT INTO blobs (version, name, data) VALUES (%s, %s, %s)", (version, name, data))


def _bm25_postings(passages: list[Passage]) -> dict:
    """bm25s's index of the passages (the embedded store's, index/build.py _write_bm25), as postings."""
    import bm25s

    tokens = layout.bm25_tokenize([p.text for p in passages], return_ids=True, closed_compounds=True)
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    info = {"library": "bm25s, as postings", "method": bm25.method, "k1": bm25.k1, "b": bm25.b}
    info |= {"stemmer": layout.STEMMER_LANGUAGE, "stopwords": layout.STOPWORDS, "doc_count": len(passages)}
    s = bm25.scores
    return {"vocab": bm25.vocab_dict, "data": s["data"], "indices": s["indices"], "indptr": s["indptr"], "info": info}


def _drop_old_versions(conn, current: int) -> None:
    """Drop versions older than the KEEP_VERSIONS newest, each only if no reader holds it (never waits)."""
    rows = conn.execute(
        "SELECT id FROM collection_versions WHERE id <> %s ORDER BY id DESC OFFSET %s", (current, KEEP_VERSIONS - 1)
    ).fetchall()
    import psycopg

    for (version,) in rows:
        try:
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '1s'")
                conn.execute(schema.drop_version_ddl(version))
            log.info("dropped collection version %d", version)
        except psycopg.errors.LockNotAvailable:
            log.info("collection version %d is still being read; the next build drops it", version)


def encoder_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="qa-pg-encoder-")
