// The reading room: ask, browse the collection, read a passage in context.
// Every piece of corpus text goes into the page as a text node (never as HTML).
"use strict";

const $ = (sel) => document.querySelector(sel);

// el("p", {class: "x"}, "text", childNode, ...) — strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("The service cannot be reached. Check that it is running, then try again.");
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    const failure = new Error(error.message || `The service answered ${response.status}.`);
    failure.field = error.field;
    failure.status = response.status;
    throw failure;
  }
  return body;
}

// ---- viewpoints: a colour per label, always shown together with the label's name ----------------
const PALETTE = ["vp-0", "vp-1", "vp-2", "vp-3", "vp-4", "vp-5", "vp-6", "vp-7"];
const viewpointClass = new Map();
function vpClass(label) {
  if (!viewpointClass.has(label)) viewpointClass.set(label, PALETTE[viewpointClass.size % PALETTE.length]);
  return viewpointClass.get(label);
}
function vpBadge(label) {
  return el("span", { class: `badge ${vpClass(label)}` }, label);
}

// ---- highlights ---------------------------------------------------------------------------------
// Highlights are raw-file offsets. The passage text is cleaned (markers and markup removed), so
// offsets map onto it only where the text is the raw span itself; a highlight that carries its own
// text is found in the passage text instead.
function highlightRange(passage) {
  const h = (passage.highlights || [])[0];
  if (!h) return null;
  const text = passage.text;
  if (typeof h.text === "string" && h.text) {
    const at = text.indexOf(h.text);
    if (at >= 0) return [at, at + h.text.length];
  }
  const { start, end } = passage.source;
  if (end - start !== text.length) return null;
  const a = h.start - start;
  const b = h.end - start;
  return a >= 0 && b <= text.length && a < b ? [a, b] : null;
}

function passageText(passage, withHighlight) {
  const text = passage.text;
  const range = withHighlight ? highlightRange(passage) : null;
  const quote = el("blockquote", { class: "passage-text", cite: passage.source.file });
  if (!range) {
    quote.append(text);
    return quote;
  }
  const [a, b] = range;
  quote.append(text.slice(0, a), el("mark", {}, text.slice(a, b)), text.slice(b));
  return quote;
}

// ---- citations ----------------------------------------------------------------------------------
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      // fall through to the selection fallback
    }
  }
  const area = el("textarea", { class: "copy-buffer", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (err) {
    ok = false;
  }
  area.remove();
  return ok;
}

function citeBlock(passage, name) {
  const note = el("p", { class: "copy-note", role: "status", "aria-live": "polite" });
  const text = el("p", { class: "citation-text" }, passage.citation.text);
  const button = el(
    "button",
    {
      type: "button",
      class: "copy",
      "aria-label": name ? `Copy citation of ${name}` : null,
      onclick: async () => {
        const ok = await copyText(passage.citation.text);
        note.textContent = ok ? "Citation copied." : "Copy failed: select the citation above and copy it.";
        if (!ok) window.getSelection().selectAllChildren(text);
      },
    },
    "Copy citation",
  );
  return el("div", { class: "cite" }, el("p", { class: "label" }, "Cite as"), text, button, note);
}

function holdersLine(passage) {
  const holders = [...new Set((passage.attributions || []).map((a) => a.holder))];
  if (!holders.length) return null;
  return el("p", { class: "holders" }, el("span", { class: "label" }, "Views held by: "), holders.join("; "));
}

function sourceLine(passage) {
  const s = passage.source;
  const who = [s.author, s.year].filter((x) => x !== null && x !== "").join(", ");
  return el(
    "p",
    { class: "source" },
    kindTag(s),
    el("cite", {}, s.title),
    who ? ` — ${who}` : "",
    s.section ? el("span", { class: "section" }, ` · § ${s.section}`) : "",
    el("span", { class: "kind" }, ` · ${s.kind}`),
  );
}

// A passage that is not the work's running text says what it is: "note", "caption", "byline", "quote".
function kindTag(source) {
  const kind = source.passage_kind;
  return kind && kind !== "body" ? el("span", { class: `passage-kind passage-kind-${kind}` }, kind) : "";
}

// A note's passages that cite it, and a passage's notes that are passages too: links to read them.
function noteLinks(passage) {
  const links = [];
  for (const id of passage.cited_by || []) {
    links.push(el("a", { href: `#/passage/${encodeURIComponent(id)}` }, "Cited from this passage"));
  }
  for (const n of passage.notes || []) {
    if (n.passage) links.push(el("a", { href: `#/passage/${encodeURIComponent(n.passage)}` }, `Note ${n.marker}`));
  }
  if (!links.length) return null;
  const parts = [];
  links.forEach((a, i) => parts.push(...(i ? [" · ", a] : [a])));
  return el("p", { class: "links note-links" }, ...parts);
}

function passageCard(passage) {
  return el(
    "article",
    { class: `passage ${passage.supports_answer ? "" : "nearest"}`, id: `p-${passage.id}` },
    el(
      "header",
      {},
      el("span", { class: "rank", "aria-label": `Rank ${passage.rank}` }, `${passage.rank}`),
      sourceLine(passage),
      vpBadge(passage.viewpoint.label),
    ),
    passage.supports_answer ? null : el("p", { class: "nearest-note" }, `Does not support an answer (support ${passage.support.toFixed(2)}).`),
    passageText(passage, true),
    holdersLine(passage),
    noteLinks(passage),
    citeBlock(passage, `passage ${passage.rank}`),
    el(
      "p",
      { class: "links" },
      el(
        "a",
        { href: `#/passage/${encodeURIComponent(passage.id)}`, "aria-label": `Read passage ${passage.rank} in context` },
        "Read in context",
      ),
    ),
  );
}

// ---- ask ----------------------------------------------------------------------------------------
function showError(message) {
  const box = $("#question-error");
  box.textContent = message;
  box.hidden = !message;
  $("#question").setAttribute("aria-invalid", message ? "true" : "false");
}

function renderAnswer(resp) {
  const results = $("#results");
  results.replaceChildren();
  const byId = new Map(resp.passages.map((p) => [p.id, p]));
  const heading = el("h2", { id: "answer-title", tabindex: "-1" });
  if (resp.answered) {
    heading.textContent = `${resp.passages.length} passages from ${resp.viewpoints.length} viewpoint${resp.viewpoints.length === 1 ? "" : "s"}`;
    results.append(heading);
  } else {
    heading.textContent = "The collection does not answer this. Nearest passages:";
    results.append(heading);
    if (resp.reason) results.append(el("p", { class: "reason" }, resp.reason));
  }
  const shown = new Set();
  for (const group of resp.viewpoints) {
    const cards = group.passages.filter((id) => byId.has(id)).map((id) => {
      shown.add(id);
      return passageCard(byId.get(id));
    });
    if (!cards.length) continue;
    results.append(
      el(
        "section",
        { class: `viewpoint ${vpClass(group.label)}`, "aria-label": `Viewpoint: ${group.label}` },
        el("h3", {}, vpBadge(group.label), " ", group.description),
        group.holders.length ? el("p", { class: "holders" }, el("span", { class: "label" }, "Holders: "), group.holders.join("; ")) : null,
        cards,
      ),
    );
  }
  const rest = resp.passages.filter((p) => !shown.has(p.id));
  if (rest.length) {
    results.append(el("section", { class: "viewpoint" }, el("h3", {}, "Other passages"), rest.map(passageCard)));
  }
  heading.focus();
}

async function ask(question) {
  showError("");
  const q = question.trim();
  if (!q) {
    showError("Type a question first.");
    $("#question").focus();
    return;
  }
  $("#question").value = question;
  const body = { question: q, top_k: Number($("#top-k").value), diversify: $("#diversify").checked };
  const viewpoint = $("#viewpoint").value;
  if (viewpoint) body.filters = { viewpoint: [viewpoint] };
  $("#status").textContent = "Searching the collection…";
  $("#ask-button").disabled = true;
  try {
    const resp = await api("v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    $("#status").textContent = `Searched in ${Math.round(resp.took_ms)} ms.`;
    renderAnswer(resp);
  } catch (err) {
    $("#status").textContent = "";
    showError(err.message);
  } finally {
    $("#ask-button").disabled = false;
  }
}

// ---- works --------------------------------------------------------------------------------------
let worksCache = null;
async function loadWorks() {
  if (!worksCache) worksCache = await api("v1/works");
  return worksCache;
}

function workCard(w) {
  const facts = [
    ["Author", w.author || "—"],
    ["Year", w.year === null ? "undated" : String(w.year) + (w.date_note ? ` (${w.date_note})` : "")],
    ["Kind", w.kind],
    ["Origin", w.origin],
    ["File", w.file],
  ];
  return el(
    "article",
    { class: `work ${vpClass(w.viewpoint_label)}`, id: `w-${w.id}` },
    el("h2", {}, el("cite", {}, w.title), w.year === null ? "" : ` (${w.year})`),
    el("p", { class: "work-viewpoint" }, vpBadge(w.viewpoint_label), " ", w.viewpoint),
    el("dl", {}, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    w.inferred ? el("p", { class: "note" }, "Described by inference: the file has no manifest entry.") : null,
  );
}

async function showWorks() {
  const box = $("#works");
  box.replaceChildren(el("p", { class: "status" }, "Loading the collection…"));
  try {
    const works = await loadWorks();
    box.replaceChildren(...works.map(workCard));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
  }
}

async function fillViewpoints() {
  try {
    const labels = [...new Set((await loadWorks()).map((w) => w.viewpoint_label))].sort();
    const select = $("#viewpoint");
    for (const label of labels) {
      vpClass(label); // one colour per viewpoint, the same on every view
      select.append(el("option", { value: label }, label));
    }
  } catch (err) {
    // the filter stays at "All viewpoints"
  }
}

// ---- passage in context -------------------------------------------------------------------------
function contextPara(p, current, showSection) {
  const section = p.source.section;
  return el(
    "div",
    { class: current ? "context current" : "context", id: `ctx-${p.id}` },
    showSection && section ? el("p", { class: "section" }, `§ ${section}`) : null,
    p.source.passage_kind && p.source.passage_kind !== "body" ? el("p", {}, kindTag(p.source)) : null,
    el("blockquote", { class: "passage-text" }, p.text),
    current ? null : el("p", { class: "links" }, el("a", { href: `#/passage/${encodeURIComponent(p.id)}` }, "Centre on this passage")),
  );
}

async function showPassage(id) {
  const box = $("#passage");
  box.replaceChildren(el("p", { class: "status" }, "Loading the passage…"));
  try {
    const ctx = await api(`v1/passages/${encodeURIComponent(id)}?context=2`);
    const p = ctx.passage;
    const w = ctx.work;
    const parts = [];
    if (w) {
      parts.push(
        el("p", { class: "source" }, el("cite", {}, w.title), ` — ${w.author}${w.year ? ", " + w.year : ""} · ${w.kind}`),
        el("p", { class: "work-viewpoint" }, vpBadge(w.viewpoint_label), " ", w.viewpoint),
        el("p", { class: "origin" }, el("span", { class: "label" }, "Origin: "), w.origin),
      );
    }
    const run = [...(ctx.before || []), p, ...(ctx.after || [])];
    run.forEach((q, i) => {
      const newSection = i === 0 || q.source.section !== run[i - 1].source.section;
      parts.push(contextPara(q, q.id === p.id, newSection));
    });
    const notes = noteLinks(p);
    if (notes) parts.push(notes);
    if (p.citation) parts.push(citeBlock(p));
    parts.push(el("p", { class: "links" }, el("a", { href: "#/", onclick: (e) => { if (history.length > 1) { e.preventDefault(); history.back(); } } }, "Back")));
    box.replaceChildren(...parts);
    const current = box.querySelector(".current");
    if (current) current.scrollIntoView({ block: "center" });
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
  }
}

// ---- routing: #/ (ask, with ?q=), #/works, #/passage/ID ---------------------------------------
function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const views = { ask: $("#view-ask"), works: $("#view-works"), passage: $("#view-passage") };
  let view = "ask";
  if (path === "/works") view = "works";
  else if (path.startsWith("/passage/")) view = "passage";
  for (const [name, node] of Object.entries(views)) node.hidden = name !== view;
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    if (link.dataset.nav === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "works") showWorks();
  else if (view === "passage") showPassage(decodeURIComponent(path.slice("/passage/".length)));
  else {
    const q = new URLSearchParams(query || "").get("q");
    if (q && q !== $("#question").dataset.asked) {
      $("#question").dataset.asked = q;
      ask(q);
    }
  }
}

// The collection's own name (its manifest's) heads the page: the service is for any collection.
async function nameCollection() {
  try {
    const info = await api("v1/info");
    $("#collection-name").textContent = info.collection;
    document.title = `${info.collection} — Verbatim QA`;
  } catch (err) {
    // the generic name stays; the ask form reports the service's state itself
  }
}

async function init() {
  const form = $("#ask-form");
  const question = $("#question");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = question.value.trim();
    if (!q) {
      showError("Type a question first.");
      question.focus();
      return;
    }
    question.dataset.asked = q;
    history.pushState(null, "", `#/?q=${encodeURIComponent(q)}`);
    ask(q);
  });
  question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  window.addEventListener("hashchange", route);
  await Promise.all([fillViewpoints(), nameCollection()]);
  route();
}

document.addEventListener("DOMContentLoaded", init);
