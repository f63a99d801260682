// rag serve's page: ask (streamed from /ask as server-sent events), search (/search), read the sources (/get).
// Every text that comes from a document, a file name or the model is inserted as text (textContent), never as
// HTML; the only links made are citation links within the page. The bearer token lives in session storage.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { token: sessionStorage.getItem("rag-token") || "", auth: false, history: [], controller: null,
                  tokenWaiters: null };
  const UNVERIFIED_OPEN = "\uE000", UNVERIFIED_CLOSE = "\uE001";  // private marks around a sentence not verified

  // -- text -------------------------------------------------------------------------------------------------
  // bidi controls would reorder what a document shows (a file name that reads backwards): shown as visible codes
  const BIDI = /[\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/g;
  function inert(s) {
    return String(s ?? "").replace(BIDI, (c) => `<U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}>`)
      .replace(/[\uE000\uE001]/g, "");
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = inert(text);
    return e;
  }

  // inline Markdown: `code`, **bold**, *em*, ~~left out~~, a sentence not verified, [n] citations (the only links)
  const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(~~[^~]+~~)|(\uE000[^\uE001]*\uE001)|(\[(\d+(?:\s*,\s*\d+)*)\])|(\*[^*\s][^*\n]*\*)/g;
  function inline(parent, text, onCite) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      if (m.index > last) parent.append(document.createTextNode(inert(text.slice(last, m.index))));
      const t = m[0];
      if (m[1]) parent.append(el("code", null, t.slice(1, -1)));
      else if (m[2]) { const b = el("strong"); inline(b, t.slice(2, -2), onCite); parent.append(b); }
      else if (m[3]) {
        const d = el("del", "dropped");
        d.title = "left out: verification found no source supporting it";
        inline(d, t.slice(2, -2), onCite); parent.append(d);
      } else if (m[4]) {
        const u = el("span", "unverified");
        u.title = "shown, but not verified against the passage it cites";
        inline(u, t.slice(1, -1), onCite); parent.append(u);
      } else if (m[5]) {
        for (const n of m[6].split(/\s*,\s*/)) {
          const a = el("a", "cite", `[${n}]`);
          a.href = "#";
          a.dataset.n = n;
          a.setAttribute("role", "button");
          a.addEventListener("click", (ev) => { ev.preventDefault(); onCite(Number(n)); });
          parent.append(a);
        }
      } else if (m[7]) { const i = el("em"); inline(i, t.slice(1, -1), onCite); parent.append(i); }
      last = m.index + t.length;
    }
    if (last < text.length) parent.append(document.createTextNode(inert(text.slice(last))));
  }

  // a GitHub table's row: its cells, the outer pipes dropped ("a | b" and "| a | b |" alike)
  function cells(line) {
    return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  }
  const TABLE_RULE = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;

  // a table from its header line, the rows below the rule line (each cell inline Markdown, so citations link)
  function table(lines, i, onCite) {
    const t = el("table"), head = el("tr");
    for (const c of cells(lines[i])) { const th = el("th"); inline(th, c, onCite); head.append(th); }
    t.append(el("thead"), el("tbody"));
    t.firstChild.append(head);
    let j = i + 2;
    for (; j < lines.length && lines[j].includes("|") && lines[j].trim(); j++) {
      const tr = el("tr");
      for (const c of cells(lines[j])) { const td = el("td"); inline(td, c, onCite); tr.append(td); }
      t.lastChild.append(tr);
    }
    const box = el("div", "table"); box.append(t);
    return [box, j - 1];
  }

  // block Markdown: paragraphs, lists, code fences, quotes, headings, tables
  function markdown(container, text, onCite) {
    container.replaceChildren();
    const lines = String(text).split("\n");
    let para = [], list = null, quote = null;
    const flush = () => {
      if (para.length) { const p = el("p"); inline(p, para.join(" "), onCite); container.append(p); para = []; }
      list = null; quote = null;
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      let m;
      if (/^\s*```/.test(line)) {
        flush();
        const code = [];
        for (i++; i < lines.length && !/^\s*```/.test(lines[i]); i++) code.push(lines[i]);
        const pre = el("pre"); pre.append(el("code", null, code.join("\n"))); container.append(pre);
      } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
        flush();
        const [box, end] = table(lines, i, onCite);
        container.append(box);
        i = end;
      } else if ((m = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/))) {
        const kind = /\d/.test(m[1]) ? "ol" : "ul";
        if (para.length || quote) flush();
        if (!list || list.tagName.toLowerCase() !== kind) { list = el(kind); container.append(list); }
        const li = el("li"); inline(li, m[2], onCite); list.append(li);
      } else if ((m = line.match(/^\s*>\s?(.*)$/))) {
        if (para.length || list) flush();
        if (!quote) { quote = el("blockquote"); container.append(quote); }
        const p = el("p"); inline(p, m[1], onCite); quote.append(p);
      } else if ((m = line.match(/^(#{1,6})\s+(.*)$/))) {
        flush();
        const h = el("h4"); inline(h, m[2], onCite); container.append(h);
      } else if (!line.trim()) {
        flush();
      } else if (list && /^\s{2,}/.test(line)) {
        inline(list.lastChild, " " + line.trim(), onCite);
      } else {
        if (list || quote) { list = null; quote = null; }
        para.push(line.trim());
      }
    }
    flush();
  }

  // a sentence wrapped in marks, its list marker and spacing left outside them (the list stays a list)
  function wrapped(text, open, close) {
    const m = String(text).match(/^(\s*(?:(?:[-*+]|\d+[.)])\s+|>\s?)?)([\s\S]*?)(\s*)$/);
    return m[2] ? `${m[1]}${open}${m[2].replace(/[\uE000\uE001~]/g, "")}${close}${m[3]}` : text;
  }

  // -- the server -------------------------------------------------------------------------------------------
  function headers(extra) {
    const h = { "Content-Type": "application/json", ...extra };
    if (state.token) h.Authorization = `Bearer ${state.token}`;
    return h;
  }

  async function api(path, init = {}) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const resp = await fetch(path, { ...init, headers: headers(init.headers), credentials: "omit" });
      if (resp.status !== 401) return resp;
      await askToken(state.token ? "That token was not accepted." : "");
    }
    throw new Error("the server did not accept the token");
  }

  function askToken(message) {
    sessionStorage.removeItem("rag-token");
    state.token = "";
    const dialog = $("token-dialog");
    $("token-error").hidden = !message;
    $("token-error").textContent = message || "";
    $("token").value = "";
    if (!dialog.open) dialog.showModal();
    $("token").focus();
    return new Promise((resolve) => { (state.tokenWaiters ||= []).push(resolve); });
  }

  function tokenGiven(ev) {
    ev.preventDefault();
    state.token = $("token").value.trim();
    if (!state.token) return;
    sessionStorage.setItem("rag-token", state.token);
    $("token-dialog").close();
    const waiters = state.tokenWaiters || [];
    state.tokenWaiters = null;
    waiters.forEach((w) => w());
  }

  async function problem(resp) {
    try { const body = await resp.json(); return body.error || body.message || resp.statusText; }
    catch { return `${resp.status} ${resp.statusText}`; }
  }

  // server-sent events of a fetch response: each event's JSON object
  async function* events(resp) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (data) yield JSON.parse(data);
      }
    }
  }

  function options() {
    const out = { index: $("index").value || undefined };
    const mode = $("mode").value, k = $("k").value.trim();
    if (mode) out.mode = mode;
    if (k) out.k = Number(k);
    for (const f of ["path", "type", "since"]) {
      const v = $(f).value.trim();
      if (v) out[f] = f === "path" ? v.split(/\s+/) : v;
    }
    return out;
  }

  // -- answers ------------------------------------------------------------------------------------------------
  class Turn {
    constructor(question) {
      this.node = el("article", "turn");
      this.node.append(el("p", "question", question));
      this.notices = el("div");
      this.body = el("div", "answer");
      this.body.setAttribute("aria-live", "polite");
      this.draftNode = el("p", "draft");
      this.list = el("ol", "sources");
      this.node.append(this.notices, this.body, this.draftNode, this.list);
      this.view = "";
      this.draft = "";
      this.sources = [];
      this.sentences = [];
      this.pending = null;  // the verdict of the sentence whose text comes next
      $("thread").append(this.node);
      this.node.scrollIntoView({ block: "end" });
    }
    notice(text, kind) { this.notices.append(el("p", `notice ${kind}`, text)); }
    render() {
      markdown(this.body, this.view, (n) => openSource(this, n));
      this.draftNode.textContent = inert(this.draft.replace(/[\uE000\uE001]/g, "").trim());
    }
    event(ev) {
      switch (ev.event) {
        case "sources":
          this.sources = ev.sources || [];
          setStatus(`reading ${this.sources.length} passages…`);
          return;
        case "draft":
          this.draft += ev.text;
          break;
        case "verdict": {
          const raw = ev.raw || "";
          this.draft = this.draft.startsWith(raw) ? this.draft.slice(raw.length) : this.draft.slice(raw.length).trimStart();
          if (!ev.shown && raw.trim()) this.view += wrapped(raw.trim(), "~~", "~~") + " ";
          this.pending = ev;
          break;
        }
        case "token": {
          const v = this.pending;
          this.pending = null;
          this.view += v && v.shown && !v.verified ? wrapped(ev.text, UNVERIFIED_OPEN, UNVERIFIED_CLOSE) : ev.text;
          setStatus("answering…");
          break;
        }
        case "warning":
          this.notice(ev.message, "warn");
          return;
        case "error":
          this.notice(ev.message, "error");
          return;
        case "done":
          this.done(ev);
          return;
        default:
          return;
      }
      this.render();
    }
    done(result) {
      this.draft = "";
      this.result = result;
      if (result.answer == null) {  // declined (exit 7) or failed: a notice, not a broken page
        this.notice(result.error || "no answer", result.exit_code === 7 ? "info" : "error");
      }
      for (const d of result.degraded || []) this.notice(`${d.source}: ${d.reason} (answered without it)`, "warn");
      if (result.sources) this.sources = result.sources;
      this.sentences = result.sentences || [];
      this.render();
      const cited = new Set(result.citations || []);
      const shown = this.sources.filter((s) => cited.has(s.n));
      this.list.replaceChildren();
      for (const s of shown.length ? shown : this.sources) {
        const li = el("li");
        li.value = s.n;
        const b = el("button", null, `${s.location}${s.title ? " — " + s.title : ""}`);
        b.type = "button";
        b.addEventListener("click", () => openSource(this, s.n));
        li.append(b);
        this.list.append(li);
      }
    }
  }

  async function ask(question) {
    const turn = new Turn(question);
    const body = { question, history: state.history.slice(-8), ...options() };
    turn.index = body.index;  // its citations open in the index it was answered from
    const llm = $("llm").value;
    if (llm) body.llm = llm;
    const controller = new AbortController();
    busy(controller);
    setStatus("searching…");
    try {
      const resp = await api("/ask", { method: "POST", body: JSON.stringify(body), signal: controller.signal,
                                       headers: { Accept: "text/event-stream" } });
      if (!resp.ok) { turn.notice(await problem(resp), resp.status === 429 || resp.status === 503 ? "warn" : "error"); return; }
      if ((resp.headers.get("Content-Type") || "").includes("text/event-stream")) {
        for await (const ev of events(resp)) turn.event(ev);
      } else {
        turn.done(await resp.json());
      }
      state.history.push(question);
    } catch (err) {
      if (err.name === "AbortError") { turn.draft = ""; turn.render(); turn.notice("stopped", "info"); }
      else turn.notice(String(err.message || err), "error");
    } finally {
      busy(null);
      setStatus("");
    }
  }

  // -- sources ------------------------------------------------------------------------------------------------
  const WORD = /[\p{L}\p{N}_]{3,}/gu;
  const words = (s) => new Set((String(s).toLowerCase().match(WORD) || []));

  // the passage's sentences that the answer's sentences citing it share most of their words with
  function supporting(text, claims) {
    const sentences = String(text).split(/(?<=[.!?:])\s+/);
    if (!claims.length) return sentences.map((s) => [s, false]);
    const claimWords = claims.map(words);
    const share = sentences.map((s) => {
      const w = words(s);
      if (!w.size) return 0;
      return Math.max(...claimWords.map((c) => [...w].filter((x) => c.has(x)).length / w.size));
    });
    const best = Math.max(...share);
    return sentences.map((s, i) => [s, share[i] >= 0.5 || (share[i] === best && best > 0.2)]);
  }

  function showPassage(text, claims) {
    const box = $("source-text");
    box.replaceChildren();
    for (const [s, hit] of supporting(text, claims)) {
      box.append(hit ? el("mark", null, s) : document.createTextNode(inert(s)), document.createTextNode(" "));
    }
  }

  // the side panel for a passage (an answer's source or a search hit) of ``index``; "Open whole document" reads
  // the whole file from that index
  function panel(s, index) {
    $("layout").classList.add("with-source");
    $("source").hidden = false;
    $("source-title").textContent = inert(s.title || s.path || s.url || "");
    $("source-loc").textContent = inert(s.location || "");
    $("source-trail").textContent = inert((s.heading || []).join(" › "));
    $("whole").hidden = !s.path;
    $("whole").onclick = () => wholeDocument(s.path, index);
  }

  // what the index holds of a file (a line range, or all of it) through /get; null after showing why not
  async function fetchDocument(params, index) {
    const q = new URLSearchParams(params);
    if (index) q.set("index", index);
    const resp = await api(`/get?${q}`);
    if (!resp.ok) { $("source-text").textContent = inert(await problem(resp)); return null; }
    return resp.json();
  }

  async function openSource(turn, n) {
    const s = turn.sources.find((x) => x.n === n);
    if (!s) return;
    panel(s, turn.index);
    const claims = turn.sentences.filter((v) => (v.citations || []).includes(n)).map((v) => v.text);
    $("source-text").textContent = "…";
    if (!s.path) { showPassage(s.text || "", claims); return; }
    const range = { path: s.path };
    if (s.start_line != null) range.start_line = s.start_line;
    if (s.end_line != null) range.end_line = s.end_line;
    const doc = await fetchDocument(range, turn.index);
    if (!doc) return;
    const chunks = (doc.chunks || []).filter((c) => s.page == null || c.page == null || c.page === s.page);
    showPassage(chunks.map((c) => c.text).join("\n\n"), claims);
  }

  async function wholeDocument(path, index) {
    const doc = await fetchDocument({ path }, index);
    if (!doc) return;
    $("source-loc").textContent = inert(doc.path || path);
    showPassage((doc.chunks || []).map((c) => c.text).join("\n\n"), []);
  }

  // -- search -------------------------------------------------------------------------------------------------
  async function search(query) {
    const box = el("article", "turn");
    box.append(el("p", "question", `search: ${query}`));
    $("thread").append(box);
    setStatus("searching…");
    try {
      const body = { query, ...options() };
      const resp = await api("/search", { method: "POST", body: JSON.stringify(body) });
      if (!resp.ok) { box.append(el("p", "notice error", await problem(resp))); return; }
      const result = await resp.json();
      for (const d of result.degraded || []) box.append(el("p", "notice warn", `${d.source}: ${d.reason}`));
      if (!result.hits.length) box.append(el("p", "notice info", "no passage matches"));
      for (const h of result.hits) {
        const item = el("div", "hit");
        const open = el("button", "open", `${h.rank}. ${h.location}`);
        open.type = "button";
        open.addEventListener("click", () => { panel(h, body.index); showPassage(h.text, []); });
        item.append(open);
        if (h.heading && h.heading.length) item.append(el("div", "trail", h.heading.join(" › ")));
        item.append(el("div", "passage", h.text));
        box.append(item);
      }
    } catch (err) {
      box.append(el("p", "notice error", String(err.message || err)));
    } finally {
      setStatus("");
    }
  }

  // -- the page -----------------------------------------------------------------------------------------------
  function setStatus(text) { $("status").textContent = text; }
  function busy(controller) {
    state.controller = controller;
    $("stop").hidden = !controller;
    $("go").disabled = !!controller;
  }
  function stop() { if (state.controller) state.controller.abort(); }
  const what = () => document.querySelector("input[name=what]:checked").value;

  // the renderer, for a test or a user's console: rag.markdown(node, text) renders as answers are rendered
  window.rag = Object.freeze({ markdown: (node, text) => markdown(node, text, () => {}) });

  async function start() {
    $("token-form").addEventListener("submit", tokenGiven);
    $("form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const q = $("q").value.trim();
      if (!q || state.controller) return;
      $("q").value = "";
      (what() === "ask" ? ask : search)(q);
    });
    $("q").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $("form").requestSubmit(); }
    });
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") stop(); });
    $("stop").addEventListener("click", stop);
    $("new").addEventListener("click", () => { state.history = []; $("thread").replaceChildren(); });
    $("close-source").addEventListener("click", () => { $("source").hidden = true; $("layout").classList.remove("with-source"); });
    for (const r of document.querySelectorAll("input[name=what]")) {
      r.addEventListener("change", () => {
        $("go").textContent = what() === "ask" ? "Ask" : "Search";
        $("q").placeholder = what() === "ask" ? "Ask a question about your documents (Enter to send)" : "Search the index";
      });
    }
    const none = el("option", null, "none (quote the evidence)");
    none.value = "none";
    $("llm").append(none);
    try {
      const resp = await fetch("/healthz", { credentials: "omit" });
      const info = await resp.json();
      state.auth = !!info.auth;
      for (const name of Object.keys(info.indexes || { [info.index]: info })) {
        const o = el("option", null, name);
        o.value = name;
        $("index").append(o);
      }
      if (info.status && info.status !== "ok") setStatus(`index: ${info.status}`);
      if (state.auth && !state.token) await askToken("");
    } catch (err) {
      setStatus(`server not reachable: ${err.message || err}`);
    }
    $("q").focus();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
