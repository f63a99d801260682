"""The client side of the warm path: `rag ask` reading a `rag serve` answer's events with the stdlib client
(ServerRetrieval.ask) against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag_cli import runtime
from rag_cli.config import load_settings
from rag_cli.errors import RagError
from rag_cli.retrieve.client import ServerRetrieval, ServerUnavailable
from tests.fakeserver import FakeRagServe


@pytest.fixture
def serve() -> Iterator[FakeRagServe]:
    with FakeRagServe() as s:
        yield s


def client(url: str, tmp_path: Path) -> ServerRetrieval:
    return ServerRetrieval(load_settings(home=tmp_path, index="docs"), url)


async def collect(r: ServerRetrieval, most: int = 100) -> list[tuple[str, dict[str, Any]]]:
    out = []
    async with contextlib.aclosing(r.ask("why?")) as events:
        async for kind, data in events:
            out.append((kind, data))
            if len(out) >= most:
                break
    return out


def test_events_arrive_whole_from_pieces_that_split_lines_and_characters(serve: FakeRagServe, tmp_path: Path) -> None:
    got = runtime.run(collect(client(serve.url("ok"), tmp_path)), workers=2)
    assert got == FakeRagServe.EVENTS


def test_a_refused_ask_is_unavailable_before_any_event(serve: FakeRagServe, tmp_path: Path) -> None:
    """Nothing shown yet: the CLI may answer in-process."""
    with pytest.raises(ServerUnavailable, match="503"):
        runtime.run(collect(client(serve.url("refuse"), tmp_path)), workers=2)
    with pytest.raises(ServerUnavailable):  # nothing listens there
        runtime.run(collect(client("http://127.0.0.1:9", tmp_path)), workers=2)


def test_a_stream_cut_mid_answer_is_one_clear_error(serve: FakeRagServe, tmp_path: Path) -> None:
    seen: list[str] = []

    async def main() -> None:
        async for kind, _ in client(serve.url("cut"), tmp_path).ask("why?"):
            seen.append(kind)

    with pytest.raises(RagError, match="stopped mid-answer"):
        runtime.run(main(), workers=2)
    assert seen == ["sources"]


def test_leaving_early_hangs_up_on_the_server(serve: FakeRagServe, tmp_path: Path) -> None:
    """Closing the events after the first one closes the connection, which stops the server's model."""
    got = runtime.run(collect(client(serve.url("drip"), tmp_path), most=1), workers=2)
    assert [k for k, _ in got] == ["token"]
    assert serve.closed_early.wait(10)


def test_cancelled_while_waiting_for_the_next_event_hangs_up(serve: FakeRagServe, tmp_path: Path) -> None:
    """Ctrl-C while a read waits on the pool: the socket is shut, the read ends, the server sees it go."""

    async def main() -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in client(serve.url("drip"), tmp_path).ask("why?"):
                first.set()  # then waits for the next event, 0.2 s away: a read on the pool

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    runtime.run(main(), workers=2)
    assert serve.closed_early.wait(10)


def test_an_event_line_past_the_limit_is_refused() -> None:
    from rag_cli.retrieve.client import _SseParser

    parse = _SseParser(max_line=64)
    assert parse.feed(b'data: {"a": 1}\n') == []
    assert parse.feed(b"\n") == [("message", {"a": 1})]
    with pytest.raises(ValueError, match="over 64 bytes"):
        parse.feed(b"data: " + b"x" * 100)


def test_a_server_before_further_passages_gives_none(serve: FakeRagServe, tmp_path: Path) -> None:
    """A `rag serve` without /further (404): the answer reads the passages found, as before."""
    from rag_cli.types import Hit

    held = [Hit("x", 1.0, "dense", path="a.md", chunk_id=1, doc_id="a.md")]
    r = client(serve.url("ok"), tmp_path)
    assert runtime.run(r.further("why?", held, 3), workers=2) == []
