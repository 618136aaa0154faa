"""From sentences to citable passages: sections inherited across copies, chunking, near-duplicate collapse."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from corpus.clean import SOFT_HYPHEN
from corpus.model import Note, Passage, Span
from corpus.structure import Sentence

MIN_WORDS, TARGET_WORDS, MAX_WORDS = 45, 90, 130
PASSAGE_MAX_WORDS = MAX_WORDS + 30  # never more (a heading over the passage aside): a short tail may join one
DUP_MIN_WORDS = 6  # shorter sentences ("No one.") are too common to call copies
DUP_RATIO = 85  # rapidfuzz ratio of normalized sentences
# A three-word run shared by more earlier sentences than this tells nothing about which one a sentence copies, and
# counting its votes made thousands of similar notes quadratic (the bundled corpus's most shared run: 126).
MAX_POSTINGS = 256
FUZZY_MIN_WORDS = 12  # a shorter sentence copies another only when identical: in a short note every word counts
VERSION_SHARE = 0.15  # share of a work's sentences found in an earlier work that makes it a version of it


@dataclass
class WorkText:
    """One work's kept sentences, before chunking."""

    work: str
    file: str
    sentences: list[Sentence]
    dup_of: list[tuple[int, int] | None] = field(default_factory=list)  # (work index, sentence index)


def normalize(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.replace(SOFT_HYPHEN, "").lower()))


def _shingles(norm: str, n: int = 3) -> set[str]:
    w = norm.split()
    return {" ".join(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}


def find_copies(works: list[WorkText]) -> None:
    """Mark each sentence that copies a sentence of an earlier work which it is a version of."""
    pool: dict[str, list[tuple[int, int]]] = defaultdict(list)  # shingle -> earlier canonical sentences
    exact: dict[str, tuple[int, int]] = {}  # normalized text -> its first canonical sentence
    norms = [[normalize(s.text) for s in w.sentences] for w in works]
    for wi, work in enumerate(works):
        matches: list[tuple[int, int] | None] = []
        for si, s in enumerate(work.sentences):
            norm = norms[wi][si]
            matches.append(_best_match(norms, pool, norm) or exact.get(norm) if s.words >= DUP_MIN_WORDS else None)
        # Only a work that largely repeats an earlier one is a version of it; a quotation shared by two
        # different works stays in both.
        shared = Counter(m[0] for m in matches if m)
        versions = {w for w, n in shared.items() if n >= VERSION_SHARE * max(1, len(matches))}
        work.dup_of = [m if m and m[0] in versions else None for m in matches]
        for si, m in enumerate(work.dup_of):
            if m is None and work.sentences[si].words >= DUP_MIN_WORDS:
                exact.setdefault(norms[wi][si], (wi, si))
                for sh in _shingles(norms[wi][si]):
                    if len(pool[sh]) <= MAX_POSTINGS:
                        pool[sh].append((wi, si))


def _best_match(norms, pool, norm: str) -> tuple[int, int] | None:
    shingles = _shingles(norm)
    votes = Counter(c for sh in shingles if len(found := pool.get(sh, ())) <= MAX_POSTINGS for c in found)
    best, best_score = None, DUP_RATIO
    for cand, shared in votes.most_common(5):
        if shared < max(2, 0.3 * len(shingles)):
            break
        other = norms[cand[0]][cand[1]]
        score = fuzz.ratio(norm, other) if other == norm or _may_differ(norm, other) else 0
        if score >= best_score:
            best, best_score = cand, score
    return best


def _may_differ(norm: str, other: str) -> bool:
    """Whether two different sentences may still be copies (when near-identical): two versions of an article
    reword long sentences, but short notes that differ in one word are different notes, and a changed number
    ("note 1234" and "note 0", "in 1914" and "in 1917") is what a sentence says, not an edit to fold away."""
    words, other_words = norm.split(), other.split()
    if len(words) < FUZZY_MIN_WORDS:
        return False
    numbers = Counter(w for w in words if any(c.isdigit() for c in w))
    other_numbers = Counter(w for w in other_words if any(c.isdigit() for c in w))
    return not (numbers - other_numbers and other_numbers - numbers)  # "16" for "sixteen" is an edit


def inherit_sections(works: list[WorkText]) -> None:
    """A sentence without a heading takes the section of its copies in other works, carried forward."""
    found: dict[tuple[int, int], str] = {}
    for w in works:
        for s, m in zip(w.sentences, w.dup_of, strict=True):
            if m and s.section and m not in found:
                found[m] = s.section
    for wi, w in enumerate(works):
        current = None
        for si, s in enumerate(w.sentences):
            if s.section is None:
                current = found.get((wi, si), current)
                s.section = current


def chunk(sents: list[Sentence]) -> list[list[Sentence]]:
    """Greedy sentence packing: one idea a researcher would quote, never across sections."""
    chunks: list[list[Sentence]] = []
    cur: list[Sentence] = []
    words = 0
    para_words = Counter()
    for s in sents:
        para_words[s.paragraph] += s.words
    for s in sents:
        new_section = cur and s.section != cur[-1].section
        new_para = cur and s.paragraph != cur[-1].paragraph
        # A paragraph that makes a passage by itself (a block quote, say) does not take a short lead-in;
        # a short one (a caption, "Bukharin on Stalin's theoretical position, 1928.") stays with what it
        # follows.
        whole_para = new_para and para_words[s.paragraph] >= MIN_WORDS and words >= MIN_WORDS // 2
        caption = new_para and para_words[s.paragraph] < MIN_WORDS // 2 and words + s.words <= MAX_WORDS
        if cur and (
            new_section
            or (words + s.words > MAX_WORDS and words >= MIN_WORDS // 2)
            or words + s.words > PASSAGE_MAX_WORDS  # sentences are at most MAX_SENTENCE_WORDS long
            or (new_para and words >= MIN_WORDS and not caption)
            or whole_para
            or words >= TARGET_WORDS
        ):
            chunks.append(cur)
            cur, words = [], 0
        cur.append(s)
        words += s.words
    if cur:
        chunks.append(cur)
    return _merge_short_tails(_headings_lead(chunks))


def chunk_apart(sents: list[Sentence]) -> list[list[Sentence]]:
    """Notes, captions, bylines and quotes: each paragraph (one note, one caption) its own passage, a long one
    chunked like the body."""
    groups: list[list[Sentence]] = []
    for s in sents:
        if groups and s.paragraph == groups[-1][-1].paragraph and s.kind == groups[-1][-1].kind:
            groups[-1].append(s)
        else:
            groups.append([s])
    return [c for g in groups for c in chunk(g)]


def _headings_lead(chunks: list[list[Sentence]]) -> list[list[Sentence]]:
    """Headings alone in a chunk (a heading right above a sub-heading) open the chunk right under them. A heading
    whose section kept no text (a list of names dropped as junk) is structure, not content: it goes, unless the
    work kept nothing else (its title above a table of contents), so that every work can be found."""
    out: list[list[Sentence]] = []
    waiting: list[Sentence] = []
    for c in chunks:
        if waiting and c[0].paragraph != waiting[-1].paragraph + 1:
            waiting = []
        if all(s.heading for s in c):
            waiting += c
            continue
        out.append(waiting + c)
        waiting = []
    return out or chunks[:1]


def _merge_short_tails(chunks: list[list[Sentence]]) -> list[list[Sentence]]:
    out: list[list[Sentence]] = []
    for c in chunks:
        words = sum(s.words for s in c)
        if out and words < MIN_WORDS // 2 and out[-1][-1].section == c[0].section:
            if sum(s.words for s in out[-1]) + words <= PASSAGE_MAX_WORDS:
                out[-1] = out[-1] + c
                continue
        out.append(c)
    return out


def passage_id(work: str, text: str, taken: set[str]) -> str:
    digest = hashlib.sha1(normalize(text).encode()).hexdigest()
    pid, n = f"{work}-{digest[:8]}", 1
    while pid in taken:  # the same text twice in one work
        n += 1
        pid = f"{work}-{digest[:8]}-{n}"
    taken.add(pid)
    return pid


def build_passages(
    works: list[WorkText], notes: dict[str, tuple[dict[str, Note], list]]
) -> tuple[list[Passage], dict[str, int]]:
    """Chunk every work; chunks that only repeat an earlier version become `also_in` of its passages.

    Returns the passages and, per work, how many chunks were collapsed into an earlier copy.
    """
    find_copies(works)
    inherit_sections(works)
    passages: list[Passage] = []
    owner: dict[tuple[int, int], Passage] = {}  # canonical sentence -> its passage
    collapsed: dict[str, int] = Counter()
    taken: set[str] = set()
    for wi, w in enumerate(works):
        index_of = {id(s): si for si, s in enumerate(w.sentences)}
        body = [s for s in w.sentences if s.kind == "body"]
        for c in chunk(body) + chunk_apart([s for s in w.sentences if s.kind != "body"]):
            keys = [index_of[id(s)] for s in c]
            copies = [w.dup_of[k] for k in keys]
            copied = any(m is not None for m in copies)
            if copied and all(m is not None or s.heading for s, m in zip(c, copies, strict=True)):  # a version's copy
                _record_copy(w.file, c, copies, owner)
                collapsed[w.work] += 1
                continue
            text = " ".join(s.text for s in c)
            work_notes, refs = notes.get(w.work, ({}, []))
            p = Passage(
                id=passage_id(w.work, text, taken),
                file=w.file,
                start=c[0].start,
                end=c[-1].end,
                work=w.work,
                section=Counter(s.section for s in c).most_common(1)[0][0],
                text=text,
                sentences=[(s.start, s.end) for s in c],
                notes=_notes_in(c[0].start, c[-1].end, work_notes, refs),
                kind=c[0].kind,
            )
            passages.append(p)
            for k in keys:
                owner[(wi, k)] = p
            for s, m in zip(c, copies, strict=True):  # copied sentences inside a kept chunk
                if m is not None and m in owner and owner[m] is not p:
                    _add_span(owner[m], Span(w.file, s.start, s.end))
    link_notes(passages, notes)
    return passages, dict(collapsed)


def link_notes(passages: list[Passage], notes: dict[str, tuple[dict[str, Note], list]]) -> None:
    """Each note to the note passage holding its text (Note.passage), and each note passage to the passages whose
    text carries the note's marker (Passage.cited_by)."""
    by_work: dict[str, list[Passage]] = defaultdict(list)
    for p in passages:
        if p.kind == "note":
            by_work[p.work].append(p)
    holder: dict[int, Passage] = {}
    for work, (work_notes, refs) in notes.items():
        for n in work_notes.values():
            n.passage, n.cited_at = None, sorted({pos for k, pos in refs if work_notes.get(k) is n})
            for p in by_work.get(work, ()):
                if max(p.start, n.start) < min(p.end, n.end):  # the note's markup ("*Title*") may open it
                    n.passage, holder[id(n)] = p.id, p
                    break
    for p in passages:
        for n in p.notes:
            if (q := holder.get(id(n))) is not None and q is not p and p.id not in q.cited_by:
                q.cited_by.append(p.id)


def _record_copy(file: str, chunk_sents, copies, owner) -> None:
    """Group the chunk's sentences by the canonical passage they copy and record one span per group."""
    groups: dict[str, list[Sentence]] = defaultdict(list)
    targets: dict[str, Passage] = {}
    for s, m in zip(chunk_sents, copies, strict=True):
        p = owner.get(m)
        if p is not None:
            groups[p.id].append(s)
            targets[p.id] = p
    for pid, sents in groups.items():
        _add_span(targets[pid], Span(file, sents[0].start, sents[-1].end))


def _add_span(p: Passage, span: Span) -> None:
    for i, old in enumerate(p.also_in):
        if old.file == span.file and old.start <= span.end and span.start <= old.end:
            p.also_in[i] = Span(span.file, min(old.start, span.start), max(old.end, span.end))
            return
    p.also_in.append(span)


def _notes_in(start: int, end: int, notes: dict[str, Note], refs: list[tuple[str, int]]) -> list[Note]:
    seen: dict[str, Note] = {}
    for marker, pos in refs:  # a marker right after the passage's last word ("… war.[3]") is the passage's
        if start <= pos <= end and marker in notes:
            seen.setdefault(marker, notes[marker])
    return list(seen.values())
