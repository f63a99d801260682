"""Writing an index into PostgreSQL: each file's delete-and-insert is one transaction.

Concurrency comes from the database: several `rag index` processes (on one machine or many) write one
index at once. A file's transaction first takes a transaction-scoped advisory lock on (index, path), so two
writers that touch the same file take turns and the second replaces the first's rows (no duplicates, none
lost); different files do not wait for each other. Creating or rebuilding the schema takes an advisory lock
on the index name. A reader never sees half a file; a `kill -9` loses at most the files in flight (their
transactions roll back). A big file read in parts keeps its transaction open until its last part.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...errors import StoreUnavailable
from ...types import Chunk
from ..base import WriterRun
from ..layout import FORMAT_VERSION, check_fingerprint
from ..rows import HEADING_SEP, FileState, path_from_db, path_to_db, text_to_db
from .common import connection, parse_vector, pool, schema_made, schema_name, vector_text

if TYPE_CHECKING:
    from ...config import Settings

DDL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.files (
    id bigserial PRIMARY KEY, path text NOT NULL UNIQUE, size bigint NOT NULL, mtime_ns bigint NOT NULL,
    hash text NOT NULL, kind text, owner text, indexed_at double precision NOT NULL);
CREATE INDEX IF NOT EXISTS files_hash ON {s}.files(hash);
CREATE TABLE IF NOT EXISTS {s}.chunks (
    id bigserial PRIMARY KEY, file_id bigint NOT NULL REFERENCES {s}.files(id) ON DELETE CASCADE,
    ordinal int NOT NULL, doc_id text, title text NOT NULL DEFAULT '', heading text NOT NULL DEFAULT '',
    text text NOT NULL, start_line int, end_line int, page int, embedding vector({dim}) NOT NULL,
    doclen int NOT NULL DEFAULT 0,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '') || ' ' || coalesce(heading, '')), 'A') ||
        setweight(to_tsvector('english', text), 'B')) STORED);
CREATE INDEX IF NOT EXISTS chunks_file ON {s}.chunks(file_id);
CREATE INDEX IF NOT EXISTS chunks_tsv ON {s}.chunks USING gin(tsv);
CREATE INDEX IF NOT EXISTS chunks_embedding ON {s}.chunks USING hnsw (embedding vector_ip_ops);
CREATE TABLE IF NOT EXISTS {s}.postings (
    lexeme text NOT NULL, chunk_id bigint NOT NULL REFERENCES {s}.chunks(id) ON DELETE CASCADE,
    na int NOT NULL, nb int NOT NULL);
CREATE INDEX IF NOT EXISTS postings_lexeme ON {s}.postings(lexeme);
CREATE INDEX IF NOT EXISTS postings_chunk ON {s}.postings(chunk_id);
"""


class PgWriter(WriterRun):
    def __init__(self, settings: Settings, fingerprint: dict[str, Any], *, dim: int, rebuild: bool = False) -> None:
        self.settings = settings
        self.fingerprint = fingerprint
        self.dim = dim
        self.rebuild = rebuild
        self.schema = schema_name(settings.index)
        self.generation = 0
        self.owner = socket.gethostname()
        self._held: dict[str, Any] = {}  # path -> connection whose transaction holds a file read in parts

    def _q(self, sql: str) -> Any:
        from psycopg import sql as psql

        return psql.SQL(sql).format(s=psql.Identifier(self.schema), dim=psql.Literal(self.dim))

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> PgWriter:
        """Make the index's schema if it is new (or dropped by a --rebuild) and read its generation."""
        with connection(self.settings) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (self.schema,))
            if self.rebuild:
                conn.execute(self._q("DROP SCHEMA IF EXISTS {s} CASCADE"))
            made = schema_made(conn, self.schema)
            # only a new index runs the DDL: CREATE INDEX takes its table's share lock even when the index
            # exists, and would deadlock with another writer's open file transaction
            for statement in DDL.split(";\n") if not made else []:
                if statement.strip():
                    conn.execute(self._q(statement))
            if made and conn.execute("SELECT to_regclass(%s)", (f'"{self.schema}".postings',)).fetchone()[0] is None:
                from ...errors import IndexIncompatible

                raise IndexIncompatible(
                    f"index {self.settings.index!r} was made by an earlier rag (no BM25 postings)",
                    hint="run `rag index PATH --rebuild`",
                )
            row = conn.execute(self._q("SELECT value FROM {s}.meta WHERE key = 'fingerprint'")).fetchone()
            if row is None:
                conn.execute(
                    self._q("INSERT INTO {s}.meta VALUES ('fingerprint', %s), ('generation', '0')"),
                    (json.dumps(self.fingerprint, sort_keys=True),),
                )
            else:
                check_fingerprint(
                    self.settings.index, {"format": FORMAT_VERSION, "fingerprint": json.loads(row[0])}, self.fingerprint
                )
            self.generation = int(
                conn.execute(self._q("SELECT value FROM {s}.meta WHERE key = 'generation'")).fetchone()[0]
            )
        return self

    def commit(self) -> None:
        """Every file written is committed as it is; the run's end bumps the generation readers follow."""
        self._release_held()
        self.checkpoint()

    def abort(self) -> None:
        """Files still open (their last part never came) are rolled back; committed files stay, as a run
        interrupted between files leaves an index of the files it finished."""
        self._release_held()

    def _release_held(self) -> None:
        for conn in self._held.values():  # files whose last part never came: nothing of them is kept
            try:
                conn.rollback()
            finally:
                pool(self.settings).putconn(conn)
        self._held.clear()

    # -- reads -----------------------------------------------------------------------------------
    def file_states(self) -> dict[str, FileState]:
        with connection(self.settings) as conn:
            rows = conn.execute(self._q("SELECT id, path, size, mtime_ns, hash FROM {s}.files")).fetchall()
        return {path_from_db(r[1]): FileState(r[0], path_from_db(r[1]), *r[2:]) for r in rows}

    def vectors_of_content(self, digest: str, dim: int) -> dict[str, Any]:
        with connection(self.settings) as conn:
            rows = conn.execute(
                self._q(
                    "SELECT c.title, c.heading, c.text, c.embedding::text FROM {s}.files f JOIN {s}.chunks c "
                    "ON c.file_id = f.id WHERE f.hash = %s AND f.hash != ''"
                ),
                (digest,),
            ).fetchall()
        out: dict[str, Any] = {}
        for title, heading, text, vec in rows:
            trail = tuple(h for h in heading.split(HEADING_SEP) if h)
            out[Chunk("", text, title, trail).embedding_text()] = parse_vector(vec, dim)
        return out

    # -- changes: each file one transaction ----------------------------------------------------
    def _lock_file(self, conn: Any, path: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (self.schema, path_to_db(path)))

    def _delete(self, conn: Any, db_path: str) -> int:
        cur = conn.execute(
            self._q("DELETE FROM {s}.chunks WHERE file_id IN (SELECT id FROM {s}.files WHERE path = %s)"), (db_path,)
        )
        removed: int = cur.rowcount
        conn.execute(self._q("DELETE FROM {s}.files WHERE path = %s"), (db_path,))
        return removed

    def touch_file(self, state: FileState, size: int, mtime_ns: int) -> None:
        with connection(self.settings) as conn, conn.transaction():
            conn.execute(
                self._q("UPDATE {s}.files SET size = %s, mtime_ns = %s WHERE id = %s"), (size, mtime_ns, state.id)
            )

    def remove_file(self, path: str) -> int:
        with connection(self.settings) as conn, conn.transaction():
            self._lock_file(conn, path)
            return self._delete(conn, path_to_db(path))

    def add_file(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        digest: str,
        kind: str,
        chunks: Sequence[Chunk],
        vecs: Any,
        *,
        append: bool = False,
    ) -> int:
        """Replace ``path`` with ``chunks`` and their vectors in one transaction; returns chunks removed.
        A part before a file's last (``digest`` "") keeps the transaction open for the next."""
        import numpy as np

        db_path = path_to_db(path)
        conn = self._held.pop(path, None) if append else None
        if conn is None:
            try:
                conn = pool(self.settings).getconn()
            except Exception as exc:
                raise StoreUnavailable(f"no PostgreSQL connection for {path}: {type(exc).__name__}") from None
        try:
            removed = 0
            txt = text_to_db
            if append and conn.info.transaction_status != 0:  # the same transaction, the next part
                file_id = conn.execute(self._q("SELECT id FROM {s}.files WHERE path = %s"), (db_path,)).fetchone()[0]
                conn.execute(
                    self._q("UPDATE {s}.files SET size = %s, mtime_ns = %s, hash = %s WHERE id = %s"),
                    (size, mtime_ns, digest, file_id),
                )
            else:
                self._lock_file(conn, path)
                removed = self._delete(conn, db_path)
                file_id = conn.execute(
                    self._q(
                        "INSERT INTO {s}.files(path, size, mtime_ns, hash, kind, owner, indexed_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id"
                    ),
                    (db_path, size, mtime_ns, digest, kind, self.owner, time.time()),
                ).fetchone()[0]
            mat = np.asarray(vecs, dtype=np.float32).reshape(len(chunks), self.dim)
            with conn.cursor() as cur:
                cur.executemany(
                    self._q(
                        "INSERT INTO {s}.chunks(file_id, ordinal, doc_id, title, heading, text, start_line, end_line, page, "
                        "embedding) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector)"
                    ),
                    [
                        (
                            file_id,
                            ch.ordinal,
                            None if ch.doc_id is None else txt(ch.doc_id),
                            txt(ch.title),
                            txt(HEADING_SEP.join(ch.heading)),
                            txt(ch.text),
                            ch.start_line,
                            ch.end_line,
                            ch.page,
                            vector_text(mat[j]),
                        )
                        for j, ch in enumerate(chunks)
                    ],
                )
            # BM25's statistics of the new chunks (doclen 0 until now): each lexeme's occurrences in title or
            # heading (weight A) and in the text (B), and the chunk's length, as the tsvector counts them
            conn.execute(
                self._q(
                    "INSERT INTO {s}.postings SELECT u.lexeme, c.id, "
                    "(SELECT count(*) FROM unnest(u.weights) w WHERE w = 'A'), (SELECT count(*) FROM unnest(u.weights) w "
                    "WHERE w <> 'A') FROM {s}.chunks c, unnest(c.tsv) u WHERE c.file_id = %s AND c.doclen = 0"
                ),
                (file_id,),
            )
            conn.execute(
                self._q(
                    "UPDATE {s}.chunks SET doclen = greatest(1, (SELECT coalesce(sum(array_length(u.positions, 1)), 0) "
                    "FROM unnest(tsv) u)) WHERE file_id = %s AND doclen = 0"
                ),
                (file_id,),
            )
            if digest:  # the file is whole: visible at once, all of it
                conn.commit()
                pool(self.settings).putconn(conn)
            else:
                self._held[path] = conn
            return removed
        except BaseException:
            conn.rollback()
            pool(self.settings).putconn(conn)
            raise

    def checkpoint(self) -> None:
        """Bump the index's generation (readers drop what they cached of the one before)."""
        with connection(self.settings) as conn, conn.transaction():
            row = conn.execute(
                self._q(
                    "UPDATE {s}.meta SET value = (value::bigint + 1)::text WHERE key = 'generation' RETURNING value"
                )
            ).fetchone()
            self.generation = int(row[0])
