"""Prometheus metrics of one ``rag serve`` (its own registry, so tests can run several in a process).

Per-index series carry an ``index`` label: a server of several indexes reports each one's requests,
sources, breakers, chunks and generation apart.
"""

from __future__ import annotations

from typing import Any

from .. import runtime

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self, indexes: dict[str, Any]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = reg = CollectorRegistry()
        self.indexes = indexes  # name -> Retrieval
        self.requests = Counter(
            "rag_http_requests", "HTTP requests", ["route", "method", "status", "index"], registry=reg
        )
        self.latency = Histogram(
            "rag_http_request_seconds", "HTTP latency", ["route", "index"], buckets=BUCKETS, registry=reg
        )
        self.source_latency = Histogram(
            "rag_source_seconds", "Retrieval source latency", ["source", "index"], buckets=BUCKETS, registry=reg
        )
        self.source_failures = Counter("rag_source_failures", "Failed source calls", ["source", "index"], registry=reg)
        self.breaker = Gauge(
            "rag_source_breaker_state", "0 closed, 1 half-open, 2 open", ["source", "index"], registry=reg
        )
        self.loop_lag = Gauge("rag_event_loop_lag_seconds", "Event-loop lag", ["stat"], registry=reg)
        self.pool = Gauge("rag_pool_jobs", "Thread-pool jobs", ["state"], registry=reg)
        self.pool_workers = Gauge("rag_pool_workers", "Thread-pool size", registry=reg)
        self.inflight = Gauge("rag_inflight_searches", "Searches (and /embed requests) in progress", registry=reg)
        self.bm25_memory = Gauge(
            "rag_bm25_memory_bytes", "BM25 postings held in memory (0: FTS5 answers)", ["index"], registry=reg
        )
        self.chunks = Gauge("rag_index_chunks", "Chunks in the served generation", ["index"], registry=reg)
        self.generation = Gauge("rag_index_generation", "Served index generation", ["index"], registry=reg)
        # answers: /ask, /v1/chat/completions and the MCP ask tool
        self.answers = Counter(
            "rag_answers",
            "Answers by route and outcome (ok, error, cancelled, rejected)",
            ["route", "outcome", "index"],
            registry=reg,
        )
        self.answer_seconds = Histogram(
            "rag_answer_seconds",
            "Answer time, queueing included",
            ["route", "index"],
            buckets=ANSWER_BUCKETS,
            registry=reg,
        )
        self.first_token = Histogram(
            "rag_answer_first_token_seconds",
            "Time to the first answer text",
            ["route", "index"],
            buckets=ANSWER_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter("rag_answer_tokens", "Tokens generated", ["route", "index"], registry=reg)
        self.queue_depth = Gauge("rag_generation_queue_depth", "Answers waiting for a generation slot", registry=reg)
        self.generating = Gauge("rag_generation_active", "Answers generating now", registry=reg)
        self.rejections = Counter(
            "rag_rejections", "Requests refused at once because the server was full", ["route", "reason"], registry=reg
        )

    def source_observer(self, index: str) -> Any:
        def observe(name: str, ms: float, reason: str | None) -> None:
            if ms:
                self.source_latency.labels(name, index).observe(ms / 1000)
            if reason is not None:
                self.source_failures.labels(name, index).inc()

        return observe

    def render(self, gate: Any = None) -> bytes:
        from prometheus_client import generate_latest

        lag = runtime.loop_lag
        self.loop_lag.labels("max").set(lag.max_ms / 1000)
        self.loop_lag.labels("p99").set(lag.percentile(99) / 1000)
        self.loop_lag.labels("p50").set(lag.percentile(50) / 1000)
        pool = runtime.pool()
        self.pool.labels("active").set(pool.active)
        self.pool.labels("queued").set(pool.queued)
        self.pool_workers.set(pool.workers)
        if gate is not None:
            self.queue_depth.set(gate.waiting)
            self.generating.set(gate.active)
        codes = {"closed": 0, "half-open": 1, "open": 2}
        for name, retrieval in self.indexes.items():
            reader = retrieval.reader
            if reader is not None:
                self.bm25_memory.labels(name).set(reader.bm25_memory_bytes())
                self.chunks.labels(name).set(reader.count)
                self.generation.labels(name).set(reader.generation)
            if retrieval.fanout is not None:
                for source, b in retrieval.fanout.breakers.items():
                    self.breaker.labels(source, name).set(codes[b.state])
        return generate_latest(self.registry)
