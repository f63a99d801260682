"""Hostile trees, hostile documents and clumsy users (issue 14): the real CLI in a subprocess.

Each test reproduces what broke: a path-like index name deleting folders, symlinks carrying files
from outside the indexed tree, escape sequences reaching the terminal, undecodable file names and
hostile PDFs aborting every future update.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli, run_pty, write

HASH = {"RAG_EMBED_BACKEND": "hash"}
CANARY = "canaryzebra0xdeadbeef secret key material"
# what a hostile document carries: window title (OSC 0), clear screen, hyperlink (OSC 8), clipboard (OSC 52), BEL
PAYLOAD = "Quokka facts. \x1b]0;pwned\x07 \x1b[2J \x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\ \x1b]52;c;cHduZWQ=\x07 end"
RAW_SEQUENCES = [b"\x1b]0;", b"\x1b[2J", b"\x1b]8;", b"\x1b]52;", b"\x07", b"\x9b"]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"RAG_HOME": str(home), **HASH, **extra}


def make_pdf(trailer_extra: str, objects_extra: list[str]) -> bytes:
    """A one-page PDF written by hand (correct xref offsets) with extra objects and trailer keys."""
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        *objects_extra,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R {trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


@pytest.fixture
def hostile_tree(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A folder with what a hostile or messy tree holds: links out of it, a FIFO, a deep nest, names
    that are not UTF-8 or carry escape sequences, a PDF with an unknown security handler."""
    outside = tmp_path / "outside"
    write(outside / "id_rsa", CANARY + "\n")
    write(outside / "secret.md", "# Secret\n\n" + CANARY + "\n")
    root = tmp_path / "repo"
    write(root / "docs" / "good.md", "# Good\n\nWombats dig burrows with their claws.\n")
    write(root / "docs" / "inside.md", "# Inside\n\nPlatypus lay eggs.\n")
    os.symlink(outside / "id_rsa", root / "docs" / "notes.md")  # a file link leaving the tree
    os.symlink(outside / "secret.md", root / "docs" / "secret.md")
    os.symlink(root / "docs" / "inside.md", root / "docs" / "alias.md")  # a link inside the tree: fine
    os.symlink(outside, root / "linked_dir")  # folder links are never followed
    os.symlink(tmp_path / "nowhere.md", root / "docs" / "dangling.md")
    os.mkfifo(root / "docs" / "pipe.md")  # would block a reader forever
    locked = write(root / "locked" / "private.md", "# Private\n\nQuolls hunt at night.\n").parent
    os.chmod(locked, 0o311)  # listable by nobody but root (CI runs as root: then it is simply indexed)
    deep = root / "deep"
    chain = [deep]
    deep.mkdir()
    for _ in range(1200):  # os.walk in Python 3.11 recurses: RecursionError (so do makedirs and rmtree)
        deep = deep / "d"
        deep.mkdir()
        chain.append(deep)
    write(deep / "bottom.md", "# Bottom\n\nEchidnas live at the bottom.\n")
    bad = os.fsencode(root / "docs") + b"/caf\xe9.md"  # Latin-1 name: not UTF-8
    with open(bad, "wb") as fh:
        fh.write(b"# Cafe\n\nNumbats eat termites.\n")
    write(root / "docs" / "title\x1b]0;pwned\x07.md", "# Name\n\nBilbies are small.\n")
    write(root / "docs" / "inject.md", "# Inject\n\n" + PAYLOAD + "\n")
    write(
        root / "docs" / "pubsec.pdf",
        make_pdf("/Encrypt 4 0 R /ID [<01><01>]", ["<< /Filter /Adobe.PubSec /V 4 /R 4 /SubFilter /adbe.pkcs7.s5 >>"]),
    )
    yield {"root": root, "outside": outside, "tmp": tmp_path}
    os.chmod(locked, 0o755)
    (deep / "bottom.md").unlink()
    for d in reversed(chain):
        d.rmdir()


def index_json(root: Path, home: Path, *extra: str) -> dict:
    out = run_cli("index", str(root), "--json", *extra, env=env_for(home))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)


# -- 1. index names are names, and drop deletes only indexes ----------------------------------------


def test_drop_refuses_paths_and_non_indexes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = write(tmp_path / "d" / "a.md", "# A\n\nApples.\n").parent
    assert run_cli("index", str(docs), env=env_for(home)).returncode == 0
    victim = write(tmp_path / "victim" / "keep.txt", "precious").parent
    for name in (str(victim), "", "..", ".", "../..", "a/b", "x\x1b[2J", "-rf"):
        out = run_cli("indexes", "drop", name, "--yes", env=env_for(home))
        assert out.returncode == 2, (name, out.stderr)
        assert "Traceback" not in out.stderr and "\x1b" not in out.stderr
    assert (victim / "keep.txt").read_text() == "precious"
    assert (home / "indexes" / "default" / "CURRENT").is_file()
    # a folder under indexes/ that is not an index (no CURRENT and manifest), and a link to one elsewhere
    write(home / "indexes" / "notmine" / "data.txt", "x")
    os.symlink(victim, home / "indexes" / "linked")
    for name in ("notmine", "linked"):
        out = run_cli("indexes", "drop", name, "--yes", env=env_for(home))
        assert out.returncode == 2 and "not a rag index" in out.stderr, out.stderr
    assert (home / "indexes" / "notmine" / "data.txt").exists() and (victim / "keep.txt").exists()
    out = run_cli("indexes", "drop", "missing", "--yes", env=env_for(home))
    assert out.returncode == 3
    out = run_cli("indexes", "drop", "default", "--yes", env=env_for(home))
    assert out.returncode == 0, out.stderr
    assert not (home / "indexes" / "default").exists()
    assert sorted(p.name for p in (home / "indexes").iterdir()) == ["linked", "notmine"]


@pytest.mark.parametrize("name", ["../x", "{tmp}/abs", "..", "", "a/../../b", "\x07"])
def test_index_name_cannot_leave_home(tmp_path: Path, name: str) -> None:
    name = name.format(tmp=tmp_path)
    home = tmp_path / "home"
    docs = write(tmp_path / "d" / "a.md", "# A\n\nApples.\n").parent
    for args in (["index", str(docs), "-i", name], ["search", "apples", "-i", name]):
        out = run_cli(*args, env=env_for(home))
        assert out.returncode == 2, out.stderr
        assert "invalid index name" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("index", str(docs), env=env_for(home, RAG_INDEX="../escape"))
    assert out.returncode == 2
    assert not (tmp_path / "x").exists() and not (home / "escape").exists() and not (tmp_path / "abs").exists()
    assert not (home / "indexes").exists() or not any((home / "indexes").iterdir())


# -- 2, 4, 5, 7 and the hostile tree ------------------------------------------------------------------


def test_hostile_tree_indexes_what_it_should(hostile_tree: dict[str, Path]) -> None:
    root, home = hostile_tree["root"], hostile_tree["tmp"] / "home"
    report = index_json(root, home)
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert "outside the indexed folders" in reasons["notes.md"]
    assert "outside the indexed folders" in reasons["secret.md"]
    assert "not a regular file" in reasons["pipe.md"]
    if os.geteuid() != 0:
        assert reasons["locked"].startswith("unreadable folder")
    assert "PDF" in reasons["pubsec.pdf"] and "NotImplementedError" in reasons["pubsec.pdf"]
    # indexed: the good files, the in-tree link (once), the bottom of the deep nest, the bad names
    out = run_cli(
        "search", "wombats platypus echidnas numbats bilbies", "-k", "10", "--json", "--mode", "bm25", env=env_for(home)
    )
    assert out.returncode == 0, out.stderr
    names = {Path(h["path"]).name for h in json.loads(out.stdout)["hits"]}
    assert {"good.md", "inside.md", "bottom.md", "caf\udce9.md", "title\x1b]0;pwned\x07.md"} <= names
    assert "alias.md" not in names  # the in-tree link is its target, indexed once
    # nothing from outside: not in search, not in the database
    out = run_cli("search", "canaryzebra0xdeadbeef", "--mode", "bm25", "--json", env=env_for(home))
    assert out.returncode == 0 and json.loads(out.stdout)["hits"] == []
    # every later run still works (a non-UTF-8 name used to abort every update), and is a no-op
    again = index_json(root, home)
    assert again["files"]["indexed"] == 0 and again["files"]["unchanged"] == report["files"]["indexed"]
    os.unlink(os.fsencode(root / "docs") + b"/caf\xe9.md")
    third = index_json(root, home)
    assert third["files"]["removed"] == 1


def test_follow_links_allows_links_out_explicitly(hostile_tree: dict[str, Path]) -> None:
    root, home = hostile_tree["root"], hostile_tree["tmp"] / "home"
    index_json(root, home, "--follow-links")
    out = run_cli("search", "canaryzebra0xdeadbeef", "--mode", "bm25", "--json", env=env_for(home))
    assert len(json.loads(out.stdout)["hits"]) >= 1


def test_a_folder_swapped_for_a_link_mid_run_brings_nothing_in(hostile_tree: dict[str, Path]) -> None:
    """Issue 29, item 1: the walk lists files first and opens them later. A plugin loader swaps ``zzz`` for a
    link to the folder of secrets on the first read (the files sort after it), as an attacker racing the run."""
    root, outside, home = hostile_tree["root"], hostile_tree["outside"], hostile_tree["tmp"] / "home"
    write(root / "aaa" / "0000.swap", "the first file read: it swaps zzz for a link out of the tree\n")
    write(root / "zzz" / "secret.md", "# Zzz\n\nan innocent page, until the swap\n")
    env = env_for(
        home,
        RAG_PLUGINS="tests.plugins.swap_loader",
        RAG_TEST_SWAP_DIR=str(root / "zzz"),
        RAG_TEST_SWAP_TARGET=str(outside),
    )
    out = run_cli("index", str(root), "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert (root / "zzz").is_symlink(), "the plugin did not swap the folder: the test tests nothing"
    skipped = {Path(s["path"]).name: s["reason"] for s in json.loads(out.stdout)["skipped"]}
    assert "link" in skipped.get("secret.md", ""), skipped
    hits = run_cli("search", "canaryzebra0xdeadbeef secret key material", "--mode", "bm25", "--json", env=env)
    assert hits.returncode == 0 and not any(CANARY in h["text"] for h in json.loads(hits.stdout)["hits"])
    for target in (root / "zzz" / "secret.md", outside / "secret.md"):
        assert CANARY not in run_cli("get", str(target), env=env).stdout


def test_non_utf8_folder_name(tmp_path: Path) -> None:
    base = os.fsencode(tmp_path) + b"/d\xff\xfe"
    os.makedirs(base)
    with open(base + b"/a.md", "wb") as fh:
        fh.write(b"# A\n\nKangaroos hop.\n")
    home = tmp_path / "home"
    out = run_cli("index", os.fsdecode(base), "--json", env=env_for(home))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files"]["indexed"] == 1
    plain = run_cli("search", "kangaroos", "--mode", "bm25", env=env_for(home))
    assert plain.returncode == 0 and "d\\xff\\xfe/a.md" in plain.stdout
    js = run_cli("search", "kangaroos", "--mode", "bm25", "--json", env=env_for(home))
    assert json.loads(js.stdout)["hits"][0]["path"].endswith("d\udcff\udcfe/a.md")  # lossless
    assert run_cli("index", os.fsdecode(base), env=env_for(home)).returncode == 0


def test_loader_exception_skips_only_that_file(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "ok.md", "# Ok\n\nFine text.\n")
    write(
        root / "weird.pdf",
        make_pdf("", ["<< /Length 5 /Filter /NoSuchFilter >>\nstream\nxxxxx\nendstream"]).replace(
            b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 612 792] /Contents 4 0 R"
        ),
    )
    write(root / "unknown.pdf", make_pdf("/Encrypt 4 0 R /ID [<01><01>]", ["<< /Filter /FooBar.Handler /V 2 >>"]))
    report = index_json(root, tmp_path / "home")
    assert report["files"]["indexed"] == 1
    assert {Path(s["path"]).name for s in report["skipped"]} >= {"unknown.pdf"}


# -- 3. no escape sequence from a document reaches the terminal ---------------------------------------

# what Rich itself writes on a terminal: SGR colours, cursor hide/show, erase line, cursor movement
RICH_CSI = re.compile(rb"\x1b\[[0-9;?]*[mlhKABCDG]")


def assert_inert(screen: bytes) -> None:
    for seq in RAW_SEQUENCES:
        assert seq not in screen, (seq, screen[:3000])
    assert b"\x1b" not in RICH_CSI.sub(b"", screen), screen[:3000]


@pytest.mark.parametrize("no_color", [False, True])
def test_terminal_injection_under_pty(hostile_tree: dict[str, Path], no_color: bool) -> None:
    root, home = hostile_tree["root"], hostile_tree["tmp"] / "home"
    index_json(root, home)
    env = env_for(home, **({"NO_COLOR": "1"} if no_color else {}))
    code, screen = run_pty("search", "quokka facts bilbies", "--mode", "bm25", "-k", "5", env=env)
    assert code == 0, screen
    assert b"Quokka" in screen and b"\\x1b]0;pwned" in screen  # shown, escaped
    assert_inert(screen)
    code, screen = run_pty("ask", "quokka facts", "--llm", "none", "--mode", "bm25", env=env)
    assert code in (0, 7), screen
    assert_inert(screen)
    code, screen = run_pty("search", "bilbies", "--mode", "bm25", "--files", env=env)
    assert code == 0 and b"title\\x1b]0;pwned\\x07.md" in screen, screen
    assert_inert(screen)


def test_plain_and_json_output_are_inert(hostile_tree: dict[str, Path]) -> None:
    root, home = hostile_tree["root"], hostile_tree["tmp"] / "home"
    report = run_cli("index", str(root), env=env_for(home))
    assert report.returncode == 0 and "\x1b" not in report.stderr and "\x07" not in report.stderr
    for args in (
        ["search", "quokka bilbies", "--mode", "bm25"],
        ["search", "bilbies", "--files", "--mode", "bm25"],
        ["ask", "quokka facts", "--llm", "none", "--mode", "bm25"],
    ):
        out = run_cli(*args, env=env_for(home))
        assert out.returncode in (0, 7), out.stderr
        for text in (out.stdout, out.stderr):
            assert "\x1b" not in text and "\x07" not in text, text
    out = run_cli("search", "quokka", "--mode", "bm25", "--json", env=env_for(home))
    assert "\x1b" not in out.stdout and "\\u001b]0;pwned" in out.stdout
    hit = json.loads(out.stdout)["hits"][0]
    assert "\x1b]0;pwned\x07" in hit["text"]  # JSON keeps the text exactly, escaped as JSON does


# -- rag chat on a real terminal (issue 21, 1) -----------------------------------------------------------


PROMPT = b"rag>\x1b[4D"  # prompt_toolkit drawing an empty prompt: the chat waits for a question


def plain(screen: bytes) -> str:
    return re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[=>]|\r", b"", screen).decode("utf-8", "replace")


@pytest.mark.slow
def test_chat_on_a_terminal(sample_home: Path) -> None:
    """Typed questions, a follow-up, the up arrow, /sources, Ctrl-D: on a pseudo-terminal, where
    prompt_toolkit's prompt must run inside the chat's own event loop."""
    code, screen = run_pty(
        "chat",
        "--llm",
        "none",
        env={"RAG_HOME": str(sample_home)},
        timeout=180,
        keys=[
            (PROMPT, b"How many bits per weight does Q4_K_M use?\r"),
            (PROMPT, b"and on a CPU?\r"),
            (PROMPT, b"\x1b[A"),
            (1.0, b"\x15/sources\r"),
            (PROMPT, b"\x04"),
        ],
    )
    text = plain(screen)
    assert code == 0, text[-2000:]
    assert "Traceback" not in text and "RuntimeError" not in text
    assert text.count("Sources:") >= 2 and "[1]" in text
    assert "Q4_K_M" in text


@pytest.mark.slow
def test_chat_ctrl_c_stops_the_answer_not_the_chat(sample_home: Path) -> None:
    code, screen = run_pty(
        "chat",
        env={"RAG_HOME": str(sample_home)},
        timeout=180,
        keys=[(PROMPT, b"What does the GGUF format store?\r"), (0.3, b"\x03"), (PROMPT, b"\x04")],
    )
    text = plain(screen)
    assert code == 0, text[-2000:]
    assert "(answer interrupted)" in text and "Traceback" not in text


def test_search_on_a_terminal_keeps_locations_whole(tmp_path: Path) -> None:
    """Issue 21, 6: at 80 columns the table broke `path:line` mid-number and mid-path, and showed raw
    fusion scores (0.039)."""
    root = tmp_path / "docs"
    deep = root / "a-rather-long-folder-name" / "and-another-long-folder-name" / "nested"
    write(deep / "the-document-with-a-long-name.md", "# Title\n\nIntro.\n\n## Part\n\n" + "Wombats dig. " * 30 + "\n")
    home = tmp_path / "home"
    assert run_cli("index", str(root), env=env_for(home)).returncode == 0
    code, screen = run_pty("search", "wombats dig", "-k", "2", env=env_for(home), cols=80)
    assert code == 0, screen
    text = screen.decode()
    location = str(deep / "the-document-with-a-long-name.md") + ":"
    assert location in text, text  # one run of bytes: no line break inside the path
    assert re.search(r"\b0\.0\d\d\b", text) is None  # no fusion score


@pytest.mark.slow
def test_ask_shows_a_transient_status_while_waiting(sample_home: Path) -> None:
    """Issue 21, 4: 5-7 s of blank screen before the first token. A status on stderr fills the wait
    and is erased once the answer streams; off a terminal nothing of it is written."""
    q = "How many bits per weight does the Q4_K_M quantisation use?"
    code, screen = run_pty("ask", q, "--max-tokens", "24", env={"RAG_HOME": str(sample_home)}, timeout=180)
    text = plain(screen)
    assert code in (0, 1), text[-1500:]
    assert "searching the index" in text
    assert "Sources:" in text or "Passages used" in text
    out = run_cli("ask", q, "--max-tokens", "24", env={"RAG_HOME": str(sample_home)})
    assert "searching the index" not in out.stdout + out.stderr


@pytest.mark.slow
def test_ask_ctrl_c_shows_the_partial_answer_once(sample_home: Path) -> None:
    """Issue 21, 5: Ctrl-C during `rag ask` printed the partial answer twice (the ^C echo moved the
    cursor under Rich's live redraw). The pseudo-terminal's bytes are replayed through a terminal
    emulator (pyte) and the screen a person would see is checked: each line of the answer once."""
    import pyte

    env = {
        "RAG_HOME": str(sample_home),
        "RAG_PLUGINS": "tests.plugins.slow_llm",
        "RAG_TEST_LLM_DELAY": "0.15",
        "RAG_TEST_LLM_TOKENS": "400",
        "RAG_ANSWER_UNVERIFIED": "mark",
    }  # (its words are in no source)
    q = "How many bits per weight does the Q4_K_M quantisation use?"
    code, screen = run_pty(
        "ask",
        q,
        "--llm",
        "slow",
        "--fallback",
        "",
        env=env,
        timeout=180,
        cols=80,
        rows=60,
        keys=[(b"word1 word2", b"\x03")],
    )
    term = pyte.Screen(80, 60)
    # the tty echoes Ctrl-C as a raw ETX byte (ECHOCTL off), which terminals ignore and pyte would draw
    pyte.ByteStream(term).feed(re.sub(rb"[\x00-\x06\x10-\x1a\x1c-\x1f]", b"", screen))
    lines = [ln.rstrip() for ln in term.display if ln.strip()]
    assert code == 130, "\n".join(lines)
    assert lines[-1] == "rag: interrupted", lines
    quoted = [ln for ln in lines if not re.search(r"word\d", ln) and ln != lines[-1]]  # the slow model's quote
    assert quoted and quoted[0].lstrip("•- ").startswith('"'), lines
    assert len(quoted) == len(set(quoted)), "\n".join(lines)  # no line of the partial answer drawn twice
    assert "^C" not in "\n".join(lines)
