"""The web page of `rag serve` (issue 34), driven in headless Chromium (Debian's chromium and chromedriver,
installed by `make test`; Selenium with the system browser, nothing downloaded): ask with quotes only and with
the real packaged model (text before the end), citations open their passage, search with a path filter, Stop
frees the server, a hostile document stays inert text, a wrong token gets the prompt, CSP, a phone's width.

Screenshots of the page (an answer with its source open, a search with filters; desktop and phone widths) are
saved to $RAG_SCREENSHOTS (default build/screenshots/); docs/img/ holds the README's copies."""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, write
from tests.serving import TOKEN, Served, start_serve

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("RAG_SCREENSHOTS") or Path(__file__).resolve().parents[2] / "build" / "screenshots")
PHONE, DESKTOP = (360, 800), (1200, 900)
HOSTILE = """# Hostile page

Plain words before. <script>window.pwned = 'script'</script> and <img src=x onerror="window.pwned='img'">
and a [press me](javascript:window.pwned='link') link, and a bidi override: \u202egnp.exe\u202c ends here.
The marker word zanzibarquux is only in this file.
"""


def _needs_browser() -> None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are missing: `make test` installs them (scripts/browser.sh)")
        pytest.skip("no chromium/chromedriver here: run `make test` (scripts/browser.sh installs them)")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sample_home: Path) -> Iterator[Served]:
    """A server with a token over a copy of the sample index plus an index of one hostile document."""
    _needs_browser()
    tmp = tmp_path_factory.mktemp("page")
    home = tmp / "home"
    shutil.copytree(sample_home, home, ignore=shutil.ignore_patterns("run", "*.lock"))
    write(tmp / "hostile" / "hostile.md", HOSTILE)
    out = run_cli("index", str(tmp / "hostile"), "--index", "hostile", env={"RAG_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    s = start_serve(home, tmp, "--token", TOKEN, "--index", "default", "--index", "hostile")
    yield s
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(60) == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _needs_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def wait(driver: Any, what: Callable[[Any], Any], timeout: float = 90) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(what)


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_page(driver: Any, served: Served, token: str | None = TOKEN) -> None:
    """The page, fresh, with ``token`` typed into its prompt (None: leave the prompt open)."""
    driver.get(served.url("/"))
    driver.execute_script("sessionStorage.clear()")
    driver.get(served.url("/"))
    wait(driver, lambda d: d.find_element("id", "token-dialog").get_attribute("open") is not None)
    if token is not None:
        driver.find_element("id", "token").send_keys(token + "\n")
        wait(driver, lambda d: d.find_element("id", "token-dialog").get_attribute("open") is None)


def choose(
    driver: Any, what: str, *, llm: str | None = None, path: str | None = None, index: str | None = None
) -> None:
    from selenium.webdriver.support.select import Select

    driver.find_element("css selector", f"input[name=what][value={what}]").click()
    if not driver.find_element("id", "options").get_attribute("open"):
        driver.find_element("css selector", "#options summary").click()
    if llm is not None:
        Select(driver.find_element("id", "llm")).select_by_value(llm)
    if index is not None:
        Select(driver.find_element("id", "index")).select_by_value(index)
    field = driver.find_element("id", "path")
    field.clear()
    if path:
        field.send_keys(path)


def send(driver: Any, text: str) -> None:
    q = driver.find_element("id", "q")
    q.clear()
    q.send_keys(text + "\n")  # Enter asks


# records when the answer first shows text and when it ends (its sources list appears), in page time
WATCH = """
window.seen = {};
new MutationObserver(() => {
  const now = performance.now();
  const turn = document.querySelector('#thread .turn:last-child');
  if (!turn) return;
  const text = (turn.querySelector('.answer').textContent + turn.querySelector('.draft').textContent).trim();
  if (text && !window.seen.first) window.seen.first = now;
  if (turn.querySelector('.sources li') && !window.seen.done) window.seen.done = now;
}).observe(document.getElementById('thread'), {subtree: true, childList: true, characterData: true});
"""


def shoot(driver: Any, name: str) -> Path:
    """Save the whole page as it is now (the window's width, its full height up to 2400 px) to SHOTS/NAME.png."""
    import base64

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    width, height = driver.execute_script(
        "return [document.documentElement.clientWidth, Math.min(2400, document.documentElement.scrollHeight)]"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000  # a page, not an empty frame
    return path


def metric(served: Served, name: str) -> float:
    req = urllib.request.Request(served.url("/metrics"), headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_page_headers_and_token(served: Served, browser: Any) -> None:
    with urllib.request.urlopen(served.url("/"), timeout=10) as resp:  # the page itself is public
        csp = resp.headers["Content-Security-Policy"]
        assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "Access-Control-Allow-Origin" not in resp.headers
    # a wrong token: the prompt again, with why, not a broken page
    open_page(browser, served, token="not-the-token")
    choose(browser, "search")
    send(browser, "reciprocal rank fusion")
    wait(browser, lambda d: d.find_element("id", "token-dialog").get_attribute("open") is not None)
    assert "not accepted" in browser.find_element("id", "token-error").text
    browser.find_element("id", "token").send_keys(TOKEN + "\n")  # the right one: the search goes through
    wait(browser, lambda d: css(d, ".hit"))
    assert browser.execute_script("return location.href").endswith("/")  # the token never in the URL


def test_ask_with_quotes_then_open_a_citation(served: Served, browser: Any) -> None:
    open_page(browser, served)
    choose(browser, "ask", llm="none")
    send(browser, "How many bits per weight does the Q4_K_M quantisation use?")
    wait(browser, lambda d: css(d, ".turn .sources li"))
    answer = css(browser, ".turn .answer")[-1].text
    assert "4.5 bits" in answer
    cite = css(browser, ".turn a.cite")[0]
    cite.click()
    wait(browser, lambda d: css(d, "#source-text mark"))
    assert "4.5 bits per weight" in " ".join(m.text for m in css(browser, "#source-text mark"))
    assert "local-llms.pdf#page=1" in browser.find_element("id", "source-loc").text
    shoot(browser, "ask-sources-desktop")
    browser.find_element("id", "whole").click()  # the whole document through /get
    wait(browser, lambda d: "#page" not in d.find_element("id", "source-loc").text)
    assert "Memory bandwidth" in browser.find_element("id", "source-text").text


def test_packaged_model_streams_before_the_end(served: Served, browser: Any) -> None:
    open_page(browser, served)
    choose(browser, "ask", llm="")
    browser.execute_script(WATCH)
    send(browser, "What is reciprocal rank fusion and which constant does it use?")
    seen = wait(browser, lambda d: d.execute_script("return window.seen.done && window.seen"), timeout=240)
    assert seen["first"] < seen["done"], seen  # text showed while the model still wrote
    # a follow-up in the same conversation: condensed by the server, answered (not refused)
    send(browser, "and what about its k?")
    wait(
        browser,
        lambda d: len(css(d, ".turn")) == 2 and css(d, ".turn:last-child .sources li, .turn:last-child .notice"),
        timeout=240,
    )
    last = css(browser, ".turn")[-1]
    assert not last.find_elements("css selector", ".notice.error"), last.text


def test_stop_mid_answer_frees_the_server(served: Served, browser: Any) -> None:
    open_page(browser, served)
    choose(browser, "ask", llm="")
    cancelled = metric(served, 'rag_answers_total{index="default",outcome="cancelled",route="/ask"}')
    send(browser, "How does hybrid search combine BM25 and dense retrieval, and why does it help?")
    deadline = time.monotonic() + 120  # the server holds a generation slot: the answer is under way
    while time.monotonic() < deadline and metric(served, "rag_generation_active") < 1:
        time.sleep(0.05)
    assert metric(served, "rag_generation_active") == 1
    from selenium.webdriver.common.keys import Keys

    browser.find_element("id", "q").send_keys(Keys.ESCAPE)  # Esc stops, as the Stop button does
    wait(browser, lambda d: "stopped" in css(d, ".turn:last-child")[0].text)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and metric(served, "rag_generation_active") > 0:
        time.sleep(0.1)
    assert metric(served, "rag_generation_active") == 0
    assert metric(served, "rag_inflight_searches") == 0
    assert metric(served, 'rag_answers_total{index="default",outcome="cancelled",route="/ask"}') == cancelled + 1


def test_search_with_a_path_filter(served: Served, browser: Any) -> None:
    open_page(browser, served)
    choose(browser, "search", path="concepts/*")
    send(browser, "how are documents split")
    wait(browser, lambda d: css(d, ".hit"))
    locations = [h.find_element("css selector", "button.open").text for h in css(browser, ".hit")]
    assert locations and all("/concepts/" in loc for loc in locations), locations
    shoot(browser, "search-filters-desktop")
    css(browser, ".hit button.open")[0].click()
    wait(browser, lambda d: d.find_element("id", "source").is_displayed())


def test_hostile_document_is_inert_text(served: Served, browser: Any) -> None:
    open_page(browser, served)
    choose(browser, "search", index="hostile")
    send(browser, "zanzibarquux")
    wait(browser, lambda d: css(d, ".hit"))
    shown = css(browser, ".hit .passage")[0].text
    assert "<script>" in shown and "onerror" in shown and "javascript:" in shown
    assert "<U+202E>" in shown  # the override is shown, not obeyed
    choose(browser, "ask", llm="none", index="hostile")
    send(browser, "What does the page with zanzibarquux say?")
    wait(browser, lambda d: css(d, ".turn:last-child .sources li, .turn:last-child .notice"))
    for a in css(browser, ".turn a.cite"):
        a.click()
    assert browser.execute_script("return window.pwned === undefined")
    assert not css(browser, "#thread script, #thread img, #source script, #source img")
    hrefs = browser.execute_script("return [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
    assert all(h == "#" for h in hrefs), hrefs


def fits(driver: Any) -> None:
    width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width  # nothing wider than the phone's screen


def test_phone_width_and_dark_scheme(served: Served, browser: Any) -> None:
    browser.set_window_size(*PHONE)
    try:
        open_page(browser, served)
        choose(browser, "search", path="concepts/*")
        send(browser, "reciprocal rank fusion")
        wait(browser, lambda d: css(d, ".hit"))
        fits(browser)
        shoot(browser, "search-filters-phone")
        open_page(browser, served)
        choose(browser, "ask", llm="none")
        browser.find_element("css selector", "#options summary").click()  # options folded: the answer shows
        send(browser, "How many bits per weight does the Q4_K_M quantisation use?")
        wait(browser, lambda d: css(d, ".turn .sources li"))
        css(browser, ".turn a.cite")[0].click()
        wait(browser, lambda d: css(d, "#source-text mark"))
        fits(browser)
        shoot(browser, "ask-sources-phone")
    finally:
        browser.set_window_size(*DESKTOP)
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    try:
        bg = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert bg != "rgb(255, 255, 255)", bg
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_refusal_is_a_notice_and_tables_render(served: Served, browser: Any) -> None:
    open_page(browser, served)
    choose(browser, "ask", llm="none")
    send(browser, "What is the population of Tokyo?")  # nothing in sample_corpus: declined
    wait(browser, lambda d: css(d, ".turn:last-child .notice"))
    notice = css(browser, ".turn:last-child .notice")[0]
    assert "info" in notice.get_attribute("class").split() and "error" not in notice.get_attribute("class"), notice.text
    assert not css(browser, ".turn:last-child .answer p")
    # a Markdown table as a model writes one: cells, citations as links, markup in a cell inert
    got = browser.execute_script("""
        const box = document.createElement('div');
        rag.markdown(box, 'Prices:\\n\\n| city | hotel |\\n| --- | ---: |\\n| Paris | 190 [1] |\\n| <img src=x onerror="window.pwned=1"> | 140 |\\n\\nAfter.');
        return {cells: [...box.querySelectorAll('td, th')].map(c => c.textContent), cites: box.querySelectorAll('td a.cite').length,
                imgs: box.querySelectorAll('img').length, paras: [...box.querySelectorAll('p')].map(p => p.textContent)};
    """)
    assert got["cells"] == ["city", "hotel", "Paris", "190 [1]", '<img src=x onerror="window.pwned=1">', "140"], got
    assert got["cites"] == 1 and got["imgs"] == 0 and got["paras"] == ["Prices:", "After."], got
    # what verification left out is struck through, what it could not verify is marked: each visibly different
    marks = browser.execute_script("""
        const box = document.createElement('div');
        document.body.append(box);
        rag.markdown(box, 'Kept [1]. ~~Left out [2].~~ \\uE000Not verified [1].\\uE001');
        const del = box.querySelector('del.dropped'), span = box.querySelector('span.unverified');
        const out = {del: del && del.textContent, span: span && span.textContent,
                     delLine: del && getComputedStyle(del).textDecorationLine,
                     spanStyle: span && [getComputedStyle(span).textDecorationLine, getComputedStyle(span).borderBottomStyle,
                                         getComputedStyle(span).backgroundColor].join(' '),
                     plain: [getComputedStyle(box).textDecorationLine, getComputedStyle(box).borderBottomStyle,
                             getComputedStyle(box).backgroundColor].join(' ')};
        box.remove();
        return out;
    """)
    assert marks["del"] == "Left out [2]." and "line-through" in marks["delLine"], marks
    assert marks["span"] == "Not verified [1]." and marks["spanStyle"] != marks["plain"], marks


def test_a_failed_source_is_a_notice_not_an_error(tmp_path: Path, sample_home: Path, browser: Any) -> None:
    """A configured remote source that refuses connections: the search and the answer go on without it, and the
    page says so in a warning notice."""
    import socket

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = write(
        tmp_path / "rag.toml",
        f'[[sources]]\nname = "wiki"\ntype = "http"\n'
        f'url = "http://127.0.0.1:{port}/search?q={{query}}"\nretries = 0\ntimeout = 5\n',
    )
    home = tmp_path / "home"
    shutil.copytree(sample_home, home, ignore=shutil.ignore_patterns("run", "*.lock"))
    served = start_serve(home, tmp_path, "--token", TOKEN, env={"RAG_CONFIG": str(cfg)})
    try:
        open_page(browser, served)
        choose(browser, "search")
        send(browser, "reciprocal rank fusion")
        wait(browser, lambda d: css(d, ".hit"))
        warned = [n.text for n in css(browser, ".notice.warn")]
        assert any(w.startswith("wiki:") for w in warned), warned
        assert not css(browser, ".notice.error")
        choose(browser, "ask", llm="none")
        send(browser, "What is reciprocal rank fusion?")
        wait(browser, lambda d: css(d, ".turn:last-child .sources li"))
        last = css(browser, ".turn")[-1]
        warned = [n.text for n in last.find_elements("css selector", ".notice.warn")]
        assert any("wiki" in w and "answered without it" in w for w in warned), warned
        assert not last.find_elements("css selector", ".notice.error")
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(60) == 0
