"""Reading an index from PostgreSQL: dense search on pgvector's HNSW, keyword search on tsvector + GIN.

Dense: ``ORDER BY embedding <#> q`` (negative inner product; vectors are unit length) through the HNSW
index, ``hnsw.ef_search`` at least k. With a filter the allowed rows are ranked exactly (a materialized
scan), so k results come back whenever k chunks match. Keyword: ``ts_rank`` of the query's words OR-ed
(``english`` stemming; title and heading weigh A, text B). Scores of one method are standardised by
fusion, so their scale does not matter. Each call is one statement on a pooled connection, run on the
runtime's pool by the sources; every read sees committed files whole.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from ...errors import IndexNotFound
from ...types import Hit
from ..base import Collection, word_idf
from ..cache import BoundedCache
from ..layout import FORMAT_VERSION
from ..rows import HEADING_SEP, path_from_db, path_to_db, query_words
from .common import connection, parse_vector, read, schema_made, schema_name, vector_text

if TYPE_CHECKING:
    from ...config import Settings


class PgAllowed:
    """The files (and their chunk count) a filter allows in one generation."""

    def __init__(self, file_ids: list[int], chunks: int, total: int) -> None:
        self.file_ids, self.n, self.total = file_ids, chunks, total

    def __len__(self) -> int:
        return self.n

    @property
    def everything(self) -> bool:
        return self.n == self.total


class PgReader:
    bm25_memory_error = ""
    keyword = "postgresql"  # what answers BM25, as /healthz reports it

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.index
        self.schema = schema_name(settings.index)
        self.generation = -1
        self.count = 0
        self._allowed = BoundedCache()
        self._stats = BoundedCache(64)  # generation -> (chunks, average length)
        self._checked = 0.0
        with connection(settings) as conn:
            if not schema_made(conn, self.schema):
                raise IndexNotFound(
                    f"no index named {self.name!r} in the PostgreSQL store",
                    hint=f"run `rag index PATH --index {self.name} --store URL` first",
                )
            fp = conn.execute(self._q("SELECT value FROM {s}.meta WHERE key = 'fingerprint'")).fetchone()
        self.manifest = {"format": FORMAT_VERSION, "fingerprint": json.loads(fp[0])}
        self.dim = int(self.manifest["fingerprint"].get("embedder", {}).get("dim", 0))

    def _q(self, sql: str) -> Any:
        from psycopg import sql as psql

        return psql.SQL(sql).format(s=psql.Identifier(self.schema))

    def _rows(self, sql: str, args: Any = ()) -> list[Any]:
        rows: list[Any] = read(self.settings, lambda conn: conn.execute(self._q(sql), args).fetchall())
        return rows

    # -- generations ----------------------------------------------------------------------------
    def refresh(self) -> bool:
        import time

        rows = self._rows(
            "SELECT (SELECT value FROM {s}.meta WHERE key = 'generation'), (SELECT count(*) FROM {s}.chunks)"
        )
        gen, count = int(rows[0][0]), int(rows[0][1])
        self._checked = time.monotonic()
        changed = gen != self.generation
        self.generation, self.count = gen, count
        return changed

    def refresh_due(self, interval: float = 0.5) -> bool:
        import time

        return time.monotonic() - self._checked >= interval

    def maybe_refresh(self, interval: float = 0.5) -> bool:
        return self.refresh() if self.refresh_due(interval) else False

    def snapshot(self) -> Any:
        return contextlib.nullcontext()  # each statement reads committed files whole

    def bm25_memory(self, weights: Any) -> None:
        return None

    def load_bm25_memory(self, weights: Any) -> None:
        return None

    def bm25_memory_bytes(self) -> int:
        return 0

    # -- search ---------------------------------------------------------------------------------
    def allowed(self, flt: Any) -> PgAllowed | None:
        if not flt:
            return None

        def make() -> PgAllowed:
            rows = self._rows(
                "SELECT f.id, f.path, f.mtime_ns, count(c.id) FROM {s}.files f "
                "LEFT JOIN {s}.chunks c ON c.file_id = f.id GROUP BY f.id"
            )
            keep = [(fid, n) for fid, path, mtime, n in rows if flt.allows(path_from_db(path), mtime / 1e9)]
            return PgAllowed([f for f, _ in keep], sum(n for _, n in keep), sum(r[3] for r in rows))

        got: PgAllowed = self._allowed.get((self.generation, flt), make)
        return got

    def dense(self, query_vec: Any, k: int, allowed: PgAllowed | None = None) -> list[tuple[int, float]]:
        if k <= 0 or (allowed is not None and not len(allowed)):
            return []
        q = vector_text(query_vec)

        def work(conn: Any) -> list[Any]:
            with conn.transaction():
                if allowed is None or allowed.everything:
                    conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, int(k)))}")
                    cur = conn.execute(
                        self._q(
                            "SELECT id, -(embedding <#> %s::vector) FROM {s}.chunks "
                            "ORDER BY embedding <#> %s::vector LIMIT %s"
                        ),
                        (q, q, k),
                    )
                else:
                    cur = conn.execute(
                        self._q(
                            "WITH c AS MATERIALIZED (SELECT id, embedding FROM {s}.chunks WHERE file_id = ANY(%s)) "
                            "SELECT id, -(embedding <#> %s::vector) AS s FROM c ORDER BY s DESC LIMIT %s"
                        ),
                        (allowed.file_ids, q, k),
                    )
                rows: list[Any] = cur.fetchall()
                return rows

        return [(int(i), float(s)) for i, s in read(self.settings, work)]

    # -- keyword search: Okapi BM25 from the tsvector's term statistics ---------------------------------
    def _terms(self, query: str, collection: Collection | None = None) -> tuple[list[tuple[str, float]], float]:
        """The query's lexemes (english stemming, stop words out) with their idf in this generation:
        store/base.bm25_idf, as every store, or the ``collection``'s for a word of one lexeme it counts (a
        federated search's, store/base.Collection); and the average chunk length."""
        words = query_words(query)
        if not words:
            return [], 1.0

        def work(conn: Any) -> tuple[list[tuple[str, str]], Any, dict[str, int]]:
            pairs = [
                (r[0], r[1])
                for r in conn.execute(
                    "SELECT w, unnest(tsvector_to_array(to_tsvector('english', w))) FROM unnest(%s::text[]) AS w",
                    (words,),
                )
            ]
            if not pairs:
                return [], None, {}
            stats = self._stats.get(
                self.generation,
                lambda: conn.execute(self._q("SELECT count(*), coalesce(avg(doclen), 0) FROM {s}.chunks")).fetchone(),
            )
            dfs = dict(
                conn.execute(
                    self._q("SELECT lexeme, count(*) FROM {s}.postings WHERE lexeme = ANY(%s) GROUP BY lexeme"),
                    (list({lex for _, lex in pairs}),),
                ).fetchall()
            )
            return pairs, stats, dfs

        pairs, stats, dfs = read(self.settings, work)
        if not pairs:
            return [], 1.0
        lexemes_of: dict[str, list[str]] = {}
        for word, lex in pairs:
            lexemes_of.setdefault(word, []).append(lex)
        idf: dict[str, float] = {}
        for word, lexemes in lexemes_of.items():
            for lex in lexemes:
                if lex in idf:
                    continue
                given = collection if len(lexemes) == 1 else None  # the collection counts words, not lexemes
                idf[lex] = word_idf(word, stats[0], dfs.get(lex, 0), given) if stats[0] else 1e-6
        return list(idf.items()), float(stats[1]) or 1.0

    def _weighted_terms(
        self, query: str, expansion: Any, collection: Collection | None = None
    ) -> tuple[list[tuple[str, float]], float]:
        """:meth:`_terms` of the query, then of an expansion's words (store/base.Expansion) with their idf times
        its weight (a lexeme of both lists counts in each, as two queries' scores added would)."""
        terms, avgdl = self._terms(query, collection)
        if terms and expansion is not None and expansion[1] > 0:
            extra, _ = self._terms(" ".join(expansion[0]), collection)
            terms += [(lex, idf * float(expansion[1])) for lex, idf in extra]
        return terms, avgdl

    def _bm25_sql(self, where: str) -> str:
        """Per matching chunk: sum over the query's lexemes of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len /
        avglen)), k1 1.2, b 0.75; tf counts each occurrence by its column's weight (title and heading A, text B).
        Read from the postings of the query's lexemes only (``postings``: lexeme, chunk, occurrences A and B)."""
        return (
            "SELECT p.chunk_id, sum(t.idf * ((%(wa)s * p.na + %(wb)s * p.nb) * 2.2) / ((%(wa)s * p.na + %(wb)s * p.nb) "
            "+ 1.2 * (0.25 + 0.75 * c.doclen / %(avgdl)s))) AS s FROM {s}.postings p "
            "JOIN unnest(%(lex)s::text[], %(idf)s::float8[]) AS t(lexeme, idf) ON t.lexeme = p.lexeme "
            "JOIN {s}.chunks c ON c.id = p.chunk_id" + where + " GROUP BY p.chunk_id"
        )

    @staticmethod
    def _bm25_args(terms: list[tuple[str, float]], avgdl: float, weights: tuple[float, float, float]) -> dict[str, Any]:
        return {
            "avgdl": avgdl,
            "wa": max(weights[0], weights[1]),
            "wb": weights[2],
            "lex": [lex for lex, _ in terms],
            "idf": [idf for _, idf in terms],
        }

    def bm25(
        self,
        query: str,
        k: int,
        weights: tuple[float, float, float] = (2.0, 2.0, 1.0),
        allowed: PgAllowed | None = None,
        expansion: Any = None,
        collection: Collection | None = None,
    ) -> list[tuple[int, float]]:
        if k <= 0 or (allowed is not None and not len(allowed)):
            return []
        terms, avgdl = self._weighted_terms(query, expansion, collection)
        if not terms:
            return []
        narrow = allowed is not None and not allowed.everything
        args = {**self._bm25_args(terms, avgdl, weights), "k": k, "files": allowed.file_ids if narrow else None}  # type: ignore[union-attr]
        sql = (
            self._bm25_sql(" AND c.file_id = ANY(%(files)s)" if narrow else "")
            + " ORDER BY s DESC, p.chunk_id LIMIT %(k)s"
        )
        return [(int(i), float(s)) for i, s in self._rows(sql, args)]

    def scores_for(
        self,
        ids: list[int],
        query_vec: Any,
        query: str,
        weights: tuple[float, float, float] = (2.0, 2.0, 1.0),
        expansion: Any = None,
        collection: Collection | None = None,
    ) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {i: {} for i in ids}
        if not ids:
            return out
        if query_vec is not None:
            for i, s in self._rows(
                "SELECT id, -(embedding <#> %s::vector) FROM {s}.chunks WHERE id = ANY(%s)",
                (vector_text(query_vec), ids),
            ):
                out[int(i)]["dense"] = float(s)
        terms, avgdl = self._weighted_terms(query, expansion, collection)
        if terms:
            args = {**self._bm25_args(terms, avgdl, weights), "ids": list(ids)}
            found = dict(self._rows(self._bm25_sql(" AND c.id = ANY(%(ids)s)"), args))
            for i in ids:
                out[i]["bm25"] = float(found.get(i, 0.0))
        return out

    def vectors(self, ids: list[int]) -> dict[int, Any]:
        if not ids:
            return {}
        rows = self._rows("SELECT id, embedding::text FROM {s}.chunks WHERE id = ANY(%s)", (list(ids),))
        return {int(i): parse_vector(text, self.dim) for i, text in rows}

    def unknown_words(self, words: list[str]) -> list[str]:
        return [w for w, n in zip(words, self.chunks_holding(words, 1), strict=True) if n == 0]

    def chunks_holding(self, words: list[str], most: int) -> list[int]:
        out = []
        for word in words:
            # as written: a word of several tokens ("GitLab.com", "3.0") as a phrase; no token: held by `most`
            row = self._rows(
                "SELECT CASE WHEN numnode(phraseto_tsquery('english', %s)) = 0 THEN %s ELSE "
                "(SELECT count(*) FROM (SELECT 1 FROM {s}.chunks WHERE tsv @@ phraseto_tsquery('english', %s) "
                "LIMIT %s) AS held) END",
                (word, most, word, most),
            )
            out.append(int(row[0][0]))
        return out

    # -- rows -----------------------------------------------------------------------------------
    _CHUNK = (
        "SELECT c.id, f.path, c.title, c.heading, c.text, c.start_line, c.end_line, c.page, c.doc_id "
        "FROM {s}.chunks c JOIN {s}.files f ON f.id = c.file_id "
    )

    @staticmethod
    def _chunk(r: Any) -> dict[str, Any]:
        return {
            "chunk_id": int(r[0]),
            "path": path_from_db(r[1]),
            "title": r[2],
            "heading": tuple(h for h in r[3].split(HEADING_SEP) if h) if r[3] else (),
            "text": r[4],
            "start_line": r[5],
            "end_line": r[6],
            "page": r[7],
            "doc_id": r[8],
        }

    def chunks(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        return {int(r[0]): self._chunk(r) for r in self._rows(self._CHUNK + "WHERE c.id = ANY(%s)", (list(ids),))}

    def hits(self, scored: list[tuple[int, float]], source: str) -> list[Hit]:
        rows = self.chunks([i for i, _ in scored])
        return [Hit(score=score, source=source, **rows[cid]) for cid, score in scored if cid in rows]

    def document(self, path: str, start_line: int | None = None, end_line: int | None = None) -> list[dict[str, Any]]:
        from pathlib import Path

        for p in (path, str(Path(path).expanduser().resolve())):
            rows = self._rows(self._CHUNK + "WHERE f.path = %s ORDER BY c.ordinal", (path_to_db(p),))
            if rows:
                break
        out = [self._chunk(r) for r in rows]
        lo, hi = start_line or 1, end_line or 1 << 62
        return [c for c in out if c["start_line"] is None or (c["start_line"] <= hi and (c["end_line"] or lo) >= lo)]

    def documents(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT f.path, f.kind, f.size, f.mtime_ns, (SELECT title FROM {s}.chunks c WHERE "
            "c.file_id = f.id ORDER BY ordinal LIMIT 1) FROM {s}.files f ORDER BY f.path LIMIT %s",
            (limit,),
        )
        return [
            {"path": path_from_db(p), "kind": k, "size": s, "mtime": m / 1e9, "title": t or ""}
            for p, k, s, m, t in rows
        ]

    def stats(self) -> dict[str, Any]:
        row = self._rows(
            "SELECT (SELECT count(*) FROM {s}.files), (SELECT count(*) FROM {s}.chunks), "
            "(SELECT value FROM {s}.meta WHERE key = 'generation'), "
            "(SELECT coalesce(max(indexed_at), 0) FROM {s}.files), "
            "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
            " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'i'))",
            (self.schema,),
        )[0]
        from ...config import redact

        return {
            "name": self.name,
            "files": int(row[0]),
            "chunks": int(row[1]),
            "generation": int(row[2]),
            "updated_at": float(row[3]) or None,
            "bytes": int(row[4]),
            "fingerprint": self.manifest["fingerprint"],
            "path": f"{redact(self.settings.store_url)} schema {self.schema}",
        }

    def close(self) -> None:
        return None  # the connection pool is the process's
