"""The `rag` logger (rag_cli/logs.py): one logfmt line a record, on the stream the CLI gives it."""

from __future__ import annotations

import io
import logging

import pytest

from rag_cli import logs


def test_a_record_is_one_logfmt_line_with_its_fields() -> None:
    out = io.StringIO()
    log = logs.setup("info", out)
    logs.get("serve.access").info(
        "",
        extra={
            "fields": {
                "method": "GET",
                "path": "/search",
                "status": 200,
                "ms": 12.345,
                "agent": 'say "hi"\nsecond line',
            }
        },
    )
    logs.get("index").warning("stopped early")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # a client's line break stays inside its value
    first = lines[0]
    assert first.startswith("ts=") and first.split()[0].endswith("Z")
    assert " level=info logger=rag.serve.access method=GET path=/search status=200 ms=12.3 " in first
    assert first.endswith('agent="say \\"hi\\"\\nsecond line"')
    assert ' level=warning logger=rag.index msg="stopped early"' in lines[1]
    assert log is logs.get()


def test_setup_again_changes_level_and_stream_without_a_second_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.setup("debug", first)
    monkeypatch.setenv("RAG_LOG_LEVEL", "error")
    logs.setup(stream=second)  # the level from RAG_LOG_LEVEL
    logs.get("x").warning("not shown")
    logs.get("x").error("shown")
    assert first.getvalue() == "" and second.getvalue().count("\n") == 1 and "msg=shown" in second.getvalue()
    assert sum(1 for h in logs.get().handlers if isinstance(h.formatter, logs.LogfmtFormatter)) == 1
    monkeypatch.setenv("RAG_LOG_LEVEL", "loud")  # not a level: the default, warning
    assert logs.setup(stream=second).level == logging.WARNING


def test_values_are_bare_only_when_plain() -> None:
    assert logs.value("/v1/chat/completions") == "/v1/chat/completions"
    assert logs.value("") == '""'
    assert logs.value("a b") == '"a b"'
    assert logs.value(12.345) == "12.3"
    assert logs.value("x=y") == '"x=y"'
