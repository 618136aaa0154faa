"""The PostgreSQL store's schema, created and migrated by the project: MIGRATIONS[i] takes the schema from
version i to i + 1, and the `schema_version` table records where a database is.

Builds migrate (under an advisory lock, so two builds cannot migrate at once); readers only check, since a
replica's role may lack the rights to change the schema. A database newer than this code is refused.

A collection is a series of versions. Rows of small, per-version data (works, extras, arrays, the encoder
blob) carry their version; the passages, their vectors and the lexical postings of version N live in tables
of their own (passages_vN, terms_vN, postings_vN), created by the build's transaction: creating or dropping
one version's tables never locks another's, so readers of the current version are not blocked by a build,
and each version's HNSW graph holds its own passages only. `current_version` (one row) names the version
being served; a build's last statement moves it, in the same transaction as everything it wrote.
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
]
LATEST = len(MIGRATIONS)


def passages_table(version: int) -> str:
    return f"passages_v{int(version)}"


def terms_table(version: int) -> str:
    return f"terms_v{int(version)}"


def postings_table(version: int) -> str:
    return f"postings_v{int(version)}"


def version_tables_ddl(version: int, dim: int) -> str:
    """The tables of one collection version (indexes are made after the rows are in: faster)."""
    return f"""
    CREATE TABLE {passages_table(version)} (
        position integer PRIMARY KEY,
        id text NOT NULL UNIQUE,
        work text NOT NULL,
        file text NOT NULL,
        section text,
        text text NOT NULL,
        data jsonb NOT NULL,
        attributions jsonb NOT NULL,
        embedding vector({int(dim)}) NOT NULL
    );
    -- Vectors stay in the row (1.5 kB at 384-d): an exact scan then reads no TOAST; long texts go out of line.
    ALTER TABLE {passages_table(version)} ALTER COLUMN embedding SET STORAGE PLAIN;
    CREATE TABLE {terms_table(version)} (term text PRIMARY KEY, term_id integer NOT NULL);
    CREATE TABLE {postings_table(version)} (term_id integer NOT NULL, position integer NOT NULL, score real NOT NULL);
    """


def version_indexes_ddl(version: int, hnsw: dict | None) -> str:
    """The postings' look-up by term, and the HNSW graph over the passage vectors when the store uses one."""
    sql = f"CREATE INDEX ON {postings_table(version)} (term_id);"
    if hnsw:
        sql += (
            f"CREATE INDEX ON {passages_table(version)} USING hnsw (embedding vector_ip_ops)"
            f" WITH (m = {int(hnsw['M'])}, ef_construction = {int(hnsw['ef_construction'])});"
        )
    return sql


def drop_version_ddl(version: int) -> str:
    tables = ", ".join(f(version) for f in (passages_table, terms_table, postings_table))
    return f"DROP TABLE IF EXISTS {tables}; DELETE FROM collection_versions WHERE id = {int(version)};"
