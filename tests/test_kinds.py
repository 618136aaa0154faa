"""Nothing of a work is lost: notes, captions, bylines and quote boxes are passages of their own kind, linked to
the passages that cite them; only chrome is dropped, each piece by a named rule (corpus.audit)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import cli
from api.render import render_passage
from corpus.audit import audit, format_audit
from corpus.ingest import CORPUS_DIR, load_corpus, load_manifest
from corpus.model import PASSAGE_KINDS, Passage

WORD = re.compile(r"\w+")

ESSAY_MD = """# The harbour lights

Written by: Ana Reis. Written for: the Port Historical Society, March 2021

The keeper lit the harbour lights each evening for forty years, and the fishermen came home by them through every \
winter storm of the long northern coast.[1] When the lights were automated in 1961, the keeper's house became a small \
museum of the harbour, its boats and the families who sailed them.[2]

[1] Interview with Joao Silva, the last keeper, recorded by the author in the lighthouse kitchen in 2019.

[2] Port Authority, Annual Report for 1962, p. 14.
"""

FOOTNOTES_MD = """# Salt

The salt pans south of the river were worked by hand until the nineteen-sixties, when the last families \
left for the canning towns on the coast and the dykes were allowed to silt up.[^pans]

[^pans]: The figures come from the parish register, which names every family that paid the salt tithe.
"""

PAGE_HTML = """<html><head><title>Harbour</title></head><body><h1>Harbour lights</h1>
<p class="byline">By Ana Reis, 3 March 2021</p>
<p>The lamps of the old harbour were trimmed at every dusk, and the trawlers steered home by them through the
winter gales.</p>
<figure><img src="k.jpg"><figcaption>The keeper, Joao Silva, with his daughter Marta on the mole in 1950
</figcaption></figure>
<blockquote>We never lost a boat while the lights burned, the old men of the port still say.</blockquote>
<p>After the war the lights were automated and the keeper's house became a small museum of the harbour.</p>
<nav>Home | About | Contact</nav><form>Leave a comment</form>
</body></html>"""


def collection(tmp_path: Path, texts: dict[str, str]) -> Path:
    root = tmp_path / "collection"
    root.mkdir()
    for name, text in texts.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def words_in_order(text: str, span: str) -> bool:
    raw = iter(w.lower() for w in WORD.findall(span))
    return all(any(w == r for r in raw) for w in (w.lower() for w in WORD.findall(text)))


def check_verbatim(corpus) -> None:
    for p in corpus.passages:
        assert p.kind in PASSAGE_KINDS
        assert words_in_order(p.text, corpus.texts[p.file][p.start : p.end]), p.id


def test_endnotes_are_note_passages_linked_both_ways(tmp_path):
    c = load_corpus(collection(tmp_path, {"essay.md": ESSAY_MD}))
    check_verbatim(c)
    kinds = {p.kind: p for p in c.passages}
    notes = [p for p in c.passages if p.kind == "note"]
    assert [n.text for n in notes] == [
        "Interview with Joao Silva, the last keeper, recorded by the author in the lighthouse kitchen in 2019.",
        "Port Authority, Annual Report for 1962, p. 14.",
    ]
    body = kinds["body"]
    assert "[1]" not in body.text and "Interview" not in body.text  # markers go; the notes are apart
    assert [(n.marker, n.passage) for n in body.notes] == [("1", notes[0].id), ("2", notes[1].id)]
    assert all(n.cited_by == [body.id] for n in notes)
    assert kinds["byline"].text.startswith("Written by: Ana Reis. Written for: the Port Historical Society")
    # the link and the kind survive the index's files
    for p in c.passages:
        assert Passage.from_dict(p.to_dict()) == p


def test_markdown_footnotes_are_notes(tmp_path):
    c = load_corpus(collection(tmp_path, {"salt.md": FOOTNOTES_MD}))
    check_verbatim(c)
    [note] = [p for p in c.passages if p.kind == "note"]
    [body] = [p for p in c.passages if p.kind == "body"]
    assert note.text.startswith("The figures come from the parish register") and "[^" not in body.text
    assert note.cited_by == [body.id] and body.notes[0].passage == note.id


def test_html_captions_quotes_and_bylines_are_kept_apart_and_chrome_goes(tmp_path):
    c = load_corpus(collection(tmp_path, {"page.html": PAGE_HTML}))
    check_verbatim(c)
    by_kind = {}
    for p in c.passages:
        by_kind.setdefault(p.kind, []).append(p.text)
    assert by_kind["caption"] == ["The keeper, Joao Silva, with his daughter Marta on the mole in 1950"]
    assert by_kind["quote"] == ["We never lost a boat while the lights burned, the old men of the port still say."]
    assert by_kind["byline"] == ["By Ana Reis, 3 March 2021"]
    body = " ".join(by_kind["body"])
    assert "Joao Silva" not in body and "trawlers steered home" in body and "small museum" in body
    assert "Home" not in " ".join(p.text for p in c.passages) and "Leave a comment" not in body


FOOTNOTES_HTML = """<!doctype html><html><head><title>The salt road</title></head><body><article>
<h1>The salt road</h1>
<p>Salt left the marshes on the backs of mules until the railway came, and whole villages lived by the trade that \
crossed the mountains every summer.<sup><a href="#fn1" id="r1">1</a></sup> The last caravan crossed in 1911, and \
the inns along the road closed one by one over the next decade.<a href="#fn2">[2]</a> See the
<a href="#map">map of the road</a> for the route the caravans took through the passes.</p>
<section class="footnotes"><ol>
<li id="fn1">The figures come from the parish registers of the marsh villages, which the author read in 2015. \
<a href="#r1">↩</a></li>
<li id="fn2">Interview with the granddaughter of the last innkeeper, recorded in the village square.</li>
</ol></section>
<p id="map">The map shows the road from the marshes to the mountain towns, with the inns marked along it.</p>
</article></body></html>
"""


def test_html_footnotes_are_notes_linked_to_their_markers(tmp_path):
    root = collection(tmp_path, {"salt.html": FOOTNOTES_HTML})
    c = load_corpus(root)
    check_verbatim(c)
    notes = [p for p in c.passages if p.kind == "note"]
    assert [n.text[:40] for n in notes] == [
        "The figures come from the parish registe",
        "Interview with the granddaughter of the ",
    ]
    [body] = [p for p in c.passages if p.kind == "body" and "Salt left" in p.text]
    assert "summer. The last" in body.text and "decade. See" in body.text  # the markers go from the text
    assert [(n.marker, n.passage) for n in body.notes] == [("fn1", notes[0].id), ("fn2", notes[1].id)]
    assert all(n.cited_by == [body.id] for n in notes)
    assert "map of the road" in body.text  # a link to a part of the page that is no note is words of the text
    [audited] = audit(root).values()
    assert not audited.unexplained
    assert any(d.rule == "footnote reference" and d.text in ("1", "[2]") for d in audited.dropped)


def test_an_old_index_passage_reads_as_body():
    d = {"id": "w-1", "file": "f.txt", "start": 0, "end": 4, "work": "w", "section": None, "text": "Text"}
    p = Passage.from_dict(d)
    assert (p.kind, p.cited_by) == ("body", [])
    assert "kind" not in p.to_dict() and "cited_by" not in p.to_dict()  # body passages' records stay as they were


def test_every_bundled_file_loses_nothing_but_chrome_dropped_by_a_named_rule():
    """Every word of every bundled file is in a passage or was dropped by a named rule; the report (pytest -s)
    shows what each rule dropped, for a reader to audit."""
    audits = audit(CORPUS_DIR)
    print(format_audit(audits, samples=5))
    listed = {f["name"] for f in load_manifest(CORPUS_DIR)["files"]}
    assert listed <= set(audits) and len(listed) == 5
    for a in audits.values():
        assert not a.unexplained, (a.file, [(p.start, p.text[:80]) for p in a.unexplained])
        assert a.kept / a.chars > 0.4, a.file
    # nothing a reader reads is among the dropped pieces of the bundled files
    dropped = " ".join(p.text for a in audits.values() for p in a.dropped)
    for read in ("Written for: Professor David Reynolds", "Published by Red Rebel Press", "top photo",
                 "Raymond Birt, ‘Personality and Foreign Policy", "a statement by the Central Committee"):  # fmt: skip
        assert read not in dropped, read


def test_the_bundled_bylines_notes_and_captions_are_passages_of_their_kind():
    c = load_corpus()

    def find(kind: str, words: str) -> Passage:
        [p] = [p for p in c.passages if p.kind == kind and words in p.text]
        return p

    assert find("byline", "Written for: Professor David Reynolds").work == "strachan-war-aims-2011"
    assert find("byline", "Published by Red Rebel Press January 2023").work == "red-rebel-press-2023-front-matter"
    assert find("caption", "walking with Stalin in the top photo").work == "wikipedia-stalinism-2017"
    birt = find("note", "Raymond Birt, ‘Personality and Foreign Policy")
    [citing] = [p for p in c.passages if p.id in birt.cited_by]
    assert "Raymond Birt" in citing.text and any(n.passage == birt.id for n in citing.notes)
    cpc = find("note", "a statement by the Central Committee of the Communist Party of China")
    assert cpc.cited_by and cpc.work == "cpc-question-of-stalin-1963"
    # a work's notes are cited from its own text only: the essay's "[2]" is not the next work's
    assert all(q.startswith("strachan-war-aims-2011-") for q in birt.cited_by)
    wiki = [p for p in c.passages if p.work == "wikipedia-stalinism-2017"]
    assert not any(n.passage == birt.id for p in wiki for n in p.notes)


def test_corpus_audit_command(tmp_path):
    root = collection(tmp_path, {"essay.md": ESSAY_MD, "page.html": PAGE_HTML})
    result = CliRunner().invoke(cli, ["corpus", "audit", "page.html", "--corpus", str(root)], prog_name="qa")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("page.html:") and "essay.md" not in result.output
    assert "caption 1" in result.output and "quote 1" in result.output


@pytest.mark.slow
def test_notes_and_captions_are_retrieved_with_their_kind_and_link(tmp_path):
    from qa.build import build_default_index
    from qa.engine import Engine
    from qa.schema import AskRequest

    root = collection(tmp_path, {"essay.md": ESSAY_MD, "page.html": PAGE_HTML})
    engine = Engine.load(build_default_index(root, tmp_path / "index", progress=False), root)
    r = engine.ask(AskRequest(question="In which room was the interview with the last keeper recorded, and when?"))
    ids = [p.id for p in r.passages]
    [note] = [p for p in r.passages[:3] if p.source.passage_kind == "note"]
    assert "lighthouse kitchen" in note.text and note.source.start > 0
    [citing] = note.cited_by
    assert citing in ids[: ids.index(note.id)]  # a note ranks below the passage that cites it
    assert any(n.passage == note.id for n in r.passages[ids.index(citing)].notes)
    assert "[note]" in render_passage(note, None, full=True, color=False)
    # asked where a statement of the body comes from, its note (about the question too) comes right below it
    question = "Who says the fishermen came home through every winter storm of the long northern coast?"
    r = engine.ask(AskRequest(question=question))
    ids = [p.id for p in r.passages]
    assert ids[ids.index(citing) + 1] == note.id
    r = engine.ask(AskRequest(question="Who is with the keeper in the photograph on the mole?", top_k=3))
    caption = next(p for p in r.passages if p.source.passage_kind == "caption")
    assert "daughter Marta" in caption.text
    assert r.model_dump()["passages"][0]["source"]["passage_kind"] in PASSAGE_KINDS  # in the API's JSON
