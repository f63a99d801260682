"""What the PostgreSQL reader and writer share: connections, the schema of an index, errors.

Each named index is a schema of its own, ``rag_<name>``, so indexes live side by side in one database::

    meta(key, value)            fingerprint (JSON), dim, generation
    files(id, path UNIQUE, size, mtime_ns, hash, kind, owner, indexed_at)
    chunks(id, file_id -> files ON DELETE CASCADE, ordinal, doc_id, title, heading, text, start_line,
           end_line, page, embedding vector(dim), tsv tsvector GENERATED (title and heading weight A,
           text weight B, 'english'))
    HNSW on embedding (vector_ip_ops: vectors are unit length, inner product is cosine), GIN on tsv

Every statement runs with ``statement_timeout = [store] timeout``; a connection is waited for as long.
A database that cannot be reached, refuses the login or times out is :class:`StoreUnavailable` (exit 10)
for commands that need it, and a degraded source (a failed dense or BM25 search) inside a search.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ...config import redact, scrub
from ...errors import StoreUnavailable, UsageError

if TYPE_CHECKING:
    from ...config import Settings

PREFIX = "rag_"
_pools: dict[tuple[str, float], Any] = {}
_pools_lock = threading.Lock()


MAX_IDENTIFIER = 63  # bytes: PostgreSQL cuts longer names silently, so two long index names would share a schema


def schema_name(index: str) -> str:
    """The schema of ``index``: ``rag_<name>``. A name too long for a PostgreSQL identifier is refused, never
    cut (two names with the same first 59 bytes would read, and drop, each other's data)."""
    name = PREFIX + index
    if len(name.encode("utf-8")) > MAX_IDENTIFIER:
        room = MAX_IDENTIFIER - len(PREFIX)
        raise UsageError(
            f"index name {index[:20]!r}... is too long for a PostgreSQL store: at most {room} bytes "
            f"(it has {len(index.encode('utf-8'))})",
            hint="choose a shorter --index name",
        )
    return name


def _quiet_pool_log() -> None:
    """psycopg_pool logs each failed connection attempt; rag says what failed once, on its own line."""
    import logging

    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)


def pool(settings: Settings) -> Any:
    """The process's connection pool for ``settings.store_url`` (opened on first use, up to the pool size
    plus a few connections)."""
    from psycopg_pool import ConnectionPool

    key = (settings.store_url, settings.store_timeout)
    _quiet_pool_log()
    with _pools_lock:
        got = _pools.get(key)
        if got is None or got.closed:
            timeout_ms = int(settings.store_timeout * 1000)
            got = ConnectionPool(
                settings.store_url,
                min_size=0,
                max_size=max(4, settings.effective_workers() + 2),
                timeout=settings.store_timeout,
                open=True,
                name="rag",
                kwargs={
                    "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
                    "connect_timeout": max(1, int(settings.store_timeout)),
                    "application_name": "rag",
                },
            )
            _pools[key] = got
        return got


def close_pools() -> None:
    with _pools_lock:
        for p in _pools.values():
            with contextlib.suppress(Exception):
                p.close(timeout=1.0)
        _pools.clear()


@contextlib.contextmanager
def connection(settings: Settings) -> Iterator[Any]:
    """A pooled connection; connection failures and timeouts become :class:`StoreUnavailable`."""
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        with pool(settings).connection() as conn:
            yield conn
    except PoolTimeout:
        raise StoreUnavailable(
            f"PostgreSQL at {redact(settings.store_url)}: {_why(settings)}",
            hint="is the database up and reachable? ([store] timeout sets the wait)",
        ) from None
    except psycopg.errors.QueryCanceled:
        raise StoreUnavailable(
            f"a PostgreSQL statement passed [store] timeout ({settings.store_timeout:g} s)",
            hint="raise [store] timeout or check the database's load",
        ) from None
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = scrub(first, settings.store_url)
        raise StoreUnavailable(
            f"PostgreSQL at {redact(settings.store_url)}: {first}", hint="check --store / [store] url", transient=True
        ) from None


READ_ATTEMPTS = 3


def read(settings: Settings, work: Any) -> Any:
    """``work(conn)`` on a pooled connection: an idempotent read, tried again after a dropped connection
    (the pool replaces it) with the remote sources' full-jitter backoff; timeouts and refusals are final."""
    import time

    from ...resilience import backoff

    for attempt in range(READ_ATTEMPTS):
        try:
            with connection(settings) as conn:
                return work(conn)
        except StoreUnavailable as exc:
            if not exc.transient or attempt == READ_ATTEMPTS - 1:
                raise
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")


def _why(settings: Settings) -> str:
    """Why the pool gave no connection: one direct attempt's error, else the wait that ran out."""
    import psycopg

    try:
        psycopg.connect(settings.store_url, connect_timeout=max(1, int(settings.store_timeout))).close()
    except psycopg.Error as exc:
        lines = [ln.strip() for ln in scrub(str(exc), settings.store_url).strip().splitlines() if ln.strip()]
        return "; ".join(lines)[:240] if lines else type(exc).__name__
    return f"no connection within {settings.store_timeout:g} s (every pooled one busy)"


def schema_made(conn: Any, schema: str) -> bool:
    """Whether the index schema ``schema`` exists (its ``meta`` table: the writer creates it first)."""
    row = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'meta'", (schema,)
    ).fetchone()
    return row is not None


def index_exists(settings: Settings) -> bool:
    with connection(settings) as conn:
        return schema_made(conn, schema_name(settings.index))


def drop_index(settings: Settings) -> None:
    """Drop the schema of ``settings.index``: every table of it, in one transaction."""
    from psycopg import sql

    with connection(settings) as conn, conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema_name(settings.index))))


def list_indexes(settings: Settings) -> list[str]:
    with connection(settings) as conn:
        rows = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'meta' AND table_schema LIKE %s",
            (PREFIX.replace("_", "\\_") + "%",),
        ).fetchall()
    return sorted(r[0][len(PREFIX) :] for r in rows)


def vector_text(vec: Any) -> str:
    """A vector as pgvector's text input: ``[0.1,0.2,...]``."""
    return "[" + ",".join(f"{float(x):.7g}" for x in vec) + "]"


def parse_vector(text: str, dim: int) -> Any:
    import numpy as np

    return np.fromstring(text.strip("[]"), dtype=np.float32, sep=",", count=dim)
