"""The PostgreSQL store's schema, created and migrated by the project: MIGRATIONS[i] takes the schema from
version i to i + 1, and the `schema_version` table records where a database is.

Builds migrate (under an advisory lock, so two builds cannot migrate at once); readers only check, since a
replica's role may lack the rights to change the schema. A database newer than this code is refused.

A collection is a series of versions made of segments (schema version 2). Each write (`qa index build`, add,
remove) adds at most one segment: the passages of the documents it adds or changes, their vectors with an HNSW
graph of their own, their lexical postings (raw term frequencies, and impacts ordering them from schema version 3),
works, and per-passage and per-sentence arrays. Segment tables are written once and never changed. A version
(collection_versions.manifest) lists its live segments in order, and for each the files it hides (documents
removed, or replaced by a later segment), plus the small collection-wide data (the BM25 statistics, extras, the
manifest). `current_version` (one row) names the version being served; a write's last statement moves it, in the
same transaction as everything it wrote. Segments no kept version lists are dropped; a reader that still uses one
gets a clear error.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 0 -> 1
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE collection_versions (
        id bigserial PRIMARY KEY,
        created timestamptz NOT NULL DEFAULT now(),
        manifest jsonb NOT NULL
    );
    CREATE TABLE current_version (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        version bigint NOT NULL REFERENCES collection_versions (id)
    );
    CREATE TABLE works (
        version bigint NOT NULL REFERENCES collection_versions (id) ON DELETE CASCADE,
        position integer NOT NULL,
        id text NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (version, position)
    );
    CREATE TABLE extras (
        version bigint NOT NULL REFERENCES collection_versions (id) ON DELETE CASCADE,
        key text NOT NULL,
        value jsonb NOT NULL,
        PRIMARY KEY (version, key)
    );
    CREATE TABLE arrays (
        version bigint NOT NULL REFERENCES collection_versions (id) ON DELETE CASCADE,
        key text NOT NULL,
        chunk integer NOT NULL,
        dtype text NOT NULL,
        shape bigint[] NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (version, key, chunk)
    );
    CREATE TABLE blobs (
        version bigint NOT NULL REFERENCES collection_versions (id) ON DELETE CASCADE,
        name text NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (version, name)
    );
    """,
    # 1 -> 2: segments. A write adds one segment holding the passages of the documents it adds or changes; a
    # version lists its live segments and, for each, the files it hides (removed or replaced documents). The
    # lexical postings hold raw term frequencies (BM25 is computed at query time with the version's statistics).
    # Version 1's collection is converted by index/pg.py (migrate) in the same transaction, then its tables go.
    """
    CREATE TABLE terms (term text PRIMARY KEY, term_id integer GENERATED ALWAYS AS IDENTITY UNIQUE);
    CREATE TABLE segments (
        id bigserial PRIMARY KEY,
        created timestamptz NOT NULL DEFAULT now(),
        passages integer NOT NULL,
        hnsw boolean NOT NULL
    );
    CREATE TABLE segment_files (
        segment bigint NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
        file text NOT NULL,
        fingerprint text NOT NULL,
        passages integer NOT NULL,
        tokens bigint NOT NULL,
        PRIMARY KEY (segment, file)
    );
    CREATE TABLE segment_works (
        segment bigint NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
        position integer NOT NULL,
        id text NOT NULL,
        file text NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (segment, position)
    );
    CREATE TABLE segment_extras (
        segment bigint NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
        key text NOT NULL,
        value jsonb NOT NULL,
        PRIMARY KEY (segment, key)
    );
    CREATE TABLE segment_arrays (
        segment bigint NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
        key text NOT NULL,
        chunk integer NOT NULL,
        dtype text NOT NULL,
        shape bigint[] NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (segment, key, chunk)
    );
    CREATE TABLE stored_blobs (sha256 text PRIMARY KEY, data bytea NOT NULL);
    CREATE TABLE collection_writes (
        token text PRIMARY KEY,
        version bigint NOT NULL,
        written timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 2 -> 3: impact-ordered postings. Each segment's postings gain `impact` (impact_sql) and are indexed by
    # (term_id, impact DESC), so lexical search reads a term's best postings first, and by (term_id, rn), to score
    # its candidates. The segments' tables are converted by index/pg.py (migrate, _add_impacts).
    "SELECT 1",
]
LATEST = len(MIGRATIONS)


def passages_table(segment: int) -> str:
    return f"passages_s{int(segment)}"


def postings_table(segment: int) -> str:
    return f"postings_s{int(segment)}"


def df_table(segment: int) -> str:
    return f"df_s{int(segment)}"


def segment_tables_ddl(segment: int, dim: int) -> str:
    """The tables of one segment (indexes are made after the rows are in: faster). Written once, by the
    transaction that creates the segment, and never changed after: a later write hides rows, never edits them."""
    return f"""
    CREATE TABLE {passages_table(segment)} (
        rn integer PRIMARY KEY,
        id text NOT NULL,
        work text NOT NULL,
        file text NOT NULL,
        section text,
        text text NOT NULL,
        data jsonb NOT NULL,
        attributions jsonb NOT NULL,
        tokens integer NOT NULL,
        embedding vector({int(dim)}) NOT NULL
    );
    -- Vectors stay in the row (1.5 kB at 384-d): an exact scan then reads no TOAST; long texts go out of line.
    ALTER TABLE {passages_table(segment)} ALTER COLUMN embedding SET STORAGE PLAIN;
    -- Each term's document frequency in the segment: a reader adds up its version's (less its hidden rows').
    CREATE TABLE {df_table(segment)} (term_id integer PRIMARY KEY, df integer NOT NULL);
    """


def postings_ddl(segment: int, avgdl: float, k1: float, b: float) -> str:
    """The segment's lexical postings: each (term, passage)'s raw frequency, the passage's length, and its impact
    (impact_sql, computed by the server as rows are copied in)."""
    return f"""
    CREATE TABLE {postings_table(segment)} (
        term_id integer NOT NULL,
        rn integer NOT NULL,
        tf integer NOT NULL,
        len integer NOT NULL,
        impact real GENERATED ALWAYS AS ({impact_sql(avgdl, k1, b)}) STORED
    );
    """


def impact_sql(avgdl: float, k1: float, b: float) -> str:
    """A posting's BM25 term weight without the idf, tf / (tf + k1 (1 - b + b len / avgdl)), with the average
    passage length of its own segment: the order lexical search reads a term's postings in. (Scores are computed
    with the version's average length; the two differ only when a segment's passages are longer or shorter than
    the version's.)"""
    a, c = float(k1 * (1 - b)), float(k1 * b / avgdl)
    return f"tf / (tf + float8 '{a!r}' + float8 '{c!r}' * len)"


def postings_indexes_ddl(segment: int) -> str:
    """A term's postings best first (term_id, impact DESC), and one (term, passage)'s posting (term_id, rn). The
    first carries whole postings (tf, len) so that a term's best could be scored without the second look-up;
    lexical search reads only their passages today (index/pg.py _candidates_sql)."""
    table = postings_table(segment)
    return (
        f"CREATE INDEX ON {table} (term_id, impact DESC) INCLUDE (rn, tf, len);"
        f"CREATE INDEX ON {table} (term_id, rn) INCLUDE (tf, len);"
    )


def segment_indexes_ddl(segment: int, hnsw: dict | None) -> str:
    """The postings' indexes, and the segment's own HNSW graph when the store uses one."""
    sql = postings_indexes_ddl(segment)
    if hnsw:
        sql += (
            f"CREATE INDEX ON {passages_table(segment)} USING hnsw (embedding vector_ip_ops)"
            f" WITH (m = {int(hnsw['M'])}, ef_construction = {int(hnsw['ef_construction'])});"
        )
    return sql


def drop_segment_ddl(segment: int) -> str:
    tables = f"{passages_table(segment)}, {postings_table(segment)}, {df_table(segment)}"
    return f"DROP TABLE IF EXISTS {tables}; DELETE FROM segments WHERE id = {int(segment)};"


# Schema version 1 kept each version in tables of its own; the migration to 2 reads and drops them.
def v1_tables(version: int) -> list[str]:
    return [f"passages_v{int(version)}", f"terms_v{int(version)}", f"postings_v{int(version)}"]
