"""Holder precision and recall of qa.attribution on a labelled set of sentences from two collections.

    python bench/holders.py                      # score bench/holders_labelled.jsonl, print the table and the errors
    python bench/holders.py --split test         # only the held-out half of each collection
    python bench/holders.py --json out.json      # keep the figures
    python bench/holders.py --sample draft.jsonl # draw the sentences to label (seeded); holders left empty

The labelled set, bench/holders_labelled.jsonl: one record a sentence, {"id", "collection", "file", "start",
"end", "text", "holders", "split", "stratum"}; `text` is raw[start:end] of the collection's file, verbatim.
Sentences are drawn (seed 13) from the passages' sentences of two collections: the demo texts (corpus/) and the
SQuAD 2.0 Wikipedia articles (../shared/eval/external/squad2/corpus). Per collection, half of the draw has a
reporting cue (a word such as said/argued/according to/believed/criticized, stratum "cue") and half names a
PERSON, ORG, GPE or NORP (spaCy's NER) with no such cue (stratum "mention": tests precision); then 20 more
sentences with a cue and a GPE, ORG or NORP name (stratum "cue-ent": places and organisations beside reporting
verbs, where they are most often misread as holders). 100 sentences per collection, + 20 "final" (below).
Sentences of 6 to 80 words; exact duplicates (the demo's abridged copy of the Wikipedia article) are drawn
once. Each collection's draw is split in halves by alternation within its stratum: "dev" (the rules were developed
on its errors) and "test" (held out; its errors were seen once, in the listing of the code before the work, and
not worked on, though one rule made for a dev sentence, object control, also fixes "led Stalin to believe"
there). Then 20 more cue sentences per collection, split "final", were drawn and labelled after the rules were
done and scored once: the cleanest held-out figure. One dev label was corrected after the first runs, for
consistency with another (demo-mention-04, see its "note").

Labelling rules (the gold holders were written by reading each sentence, before running the extractor):
- A holder is a person, group, party, movement, organisation or work whose view, claim, belief, argument,
  judgement, criticism or statement the sentence reports (said, argued, wrote, believed, according to, in X's
  view, X criticised/denounced/praised Y, X's argument that..., a passive "was criticised by X").
- A country, city or region counts only when it holds a view as a polity ("China argued", "Britain denounced");
  never as a place or as the actor or object of an event ("in Moscow", "invaded Japan", "Japan's economy").
- An organisation likewise: "the Communist Party declared" yes; "Ford raised prices", "joined the party" no.
- Actors of events that are not views (decided, ordered, signed, built, killed, attended, founded) are not holders;
  nor is the subject the view is about ("Stalin" in "Trotsky argued that Stalin...").
- A common noun alone ("people", "the party", "critics") is a holder only when it names a definite group whose
  view is reported with a modifier that identifies it ("Soviet historians", "the Communist Party of China",
  "many economists" is written "economists"); bare "people"/"some"/"others" are not.
- Pronouns (he/she/they) are resolved to a name in the sentence or its passage (or the passage's preceding text)
  when that is clear; otherwise left out. I/we of the document's own voice are left out.
- Holders are written as they appear in the text, the shortest full name (titles and descriptors dropped).
- Quoted words with no reporting verb, "so-called", and the document's own voice have no holder.

Matching: names are normalised (case folded, soft hyphens, possessive 's, leading articles the/a/an and
surrounding punctuation removed, whitespace collapsed); a predicted holder matches a gold holder of the same
sentence when one normalised name contains the other as whole words ("Conquest" ~ "Robert Conquest"). Each gold
holder is matched at most once; unmatched predictions are false positives, unmatched gold holders false negatives.

How the extractor runs: over each passage that holds a labelled sentence, with the text before it in the same
section as context, exactly as the index build calls it (qa.build._parse_args, _attributions); a prediction
belongs to the sentence its holder mention starts in (raw-file offsets).

Figures: precision, recall and F1 over holders (micro, per collection), with 95 % percentile bootstrap intervals
over sentences (2,000 resamples, seed 0); macro = the mean of the collections' figures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LABELLED = ROOT / "bench" / "holders_labelled.jsonl"
EXTERNAL = ROOT.parent / "shared" / "eval" / "external"
SEED = 13
RESAMPLES = 2000
PER_STRATUM = 40

CUE = re.compile(
    r"\b(sa(y|ys|id)|argu(e|es|ed)|wr(ote|ites)|written|claim(s|ed)?|believ(e|es|ed)|th(ink|inks|ought)|"
    r"stat(es|ed)|according to|view|opinion|criticis(e|es|ed)|criticiz(e|es|ed)|denounc(e|es|ed)|"
    r"declar(e|es|ed)|insist(s|ed)?|maintain(s|ed)|conclud(e|es|ed)|suggest(s|ed)?|not(es|ed)|"
    r"warn(s|ed)|prais(e|es|ed)|condemn(s|ed)?|reject(s|ed)?|den(y|ies|ied)|assert(s|ed)?|"
    r"contend(s|ed)?|call(s|ed)|describ(e|es|ed)|consider(s|ed)?|regard(s|ed)?|report(s|ed)?|"
    r"argument|accus(e|es|ed)|blam(e|es|ed)|estimat(e|es|ed)|predict(s|ed)?)\b",
    re.IGNORECASE,
)


def collection_dirs() -> dict[str, Path]:
    from corpus.ingest import CORPUS_DIR

    return {"demo": CORPUS_DIR, "squad2": EXTERNAL / "squad2" / "corpus"}


# --- sampling -----------------------------------------------------------------------------------------------------
def sample(out: Path) -> None:
    from corpus.ingest import load_corpus
    from qa.attribution import load_nlp

    nlp = load_nlp()
    records = []
    for name, root in collection_dirs().items():
        corpus = load_corpus(root)
        seen, sents = set(), []
        for p in corpus.passages:
            raw = corpus.texts[p.file]
            for a, b in p.sentences:
                text = raw[a:b]
                words = len(text.split())
                key = " ".join(text.split())
                if 6 <= words <= 80 and key not in seen and "\n" not in text.strip():
                    seen.add(key)
                    sents.append((p.file, a, b, text))
        cue = [s for s in sents if CUE.search(s[3])]
        rest = [s for s in sents if not CUE.search(s[3])]
        rng = random.Random(f"{SEED}-{name}")
        rng.shuffle(rest)
        mention = []
        for s, doc in zip(rest, nlp.pipe((s[3] for s in rest), disable=["parser"]), strict=False):
            if any(e.label_ in ("PERSON", "ORG", "GPE", "NORP") for e in doc.ents):
                mention.append(s)
            if len(mention) == PER_STRATUM:
                break
        strata = {"cue": rng.sample(cue, PER_STRATUM), "mention": mention}
        # a reporting cue beside a GPE/ORG/NORP name: where places and organisations are most often misread as holders
        left = [s for s in cue if s not in strata["cue"]]
        rng.shuffle(left)
        strata["cue-ent"] = []
        for s, doc in zip(left, nlp.pipe((s[3] for s in left), disable=["parser"]), strict=False):
            if any(e.label_ in ("ORG", "GPE", "NORP") for e in doc.ents):
                strata["cue-ent"].append(s)
            if len(strata["cue-ent"]) == PER_STRATUM // 2:
                break
        # drawn after the rules were developed, labelled before running them: the "final" split
        drawn = {s for chosen in strata.values() for s in chosen}
        left = [s for s in cue if s not in drawn]
        rng.shuffle(left)
        strata["final"] = left[: PER_STRATUM // 2]
        for stratum, chosen in strata.items():
            for i, (file, a, b, text) in enumerate(sorted(chosen)):
                split = "final" if stratum == "final" else "dev" if i % 2 == 0 else "test"
                rid = f"{name}-{stratum}-{i:02d}"
                records.append(
                    {"id": rid, "collection": name, "file": file, "start": a, "end": b, "text": text, "holders": []}
                    | {"split": split, "stratum": stratum}
                )
    with out.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(records)} sentences -> {out}")


# --- scoring ------------------------------------------------------------------------------------------------------
def norm(name: str) -> str:
    s = name.replace("\u00ad", "").lower()
    s = re.sub(r"['’]s\b", "", s)
    s = re.sub(r"[^\w\s-]", " ", s)
    words = s.split()
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


def matches(pred: str, gold: str) -> bool:
    p, g = f" {norm(pred)} ", f" {norm(gold)} "
    return bool(p.strip() and g.strip()) and (p in g or g in p)


def score_sentence(pred: list[str], gold: list[str]) -> tuple[int, list[str], list[str]]:
    """(true positives, false positives, false negatives) of one sentence."""
    left = list(gold)
    fps = []
    tp = 0
    for p in pred:
        hit = next((g for g in left if matches(p, g)), None)
        if hit is None:
            if not any(matches(p, g) for g in gold):  # a second mention of a matched holder is not an error
                fps.append(p)
        else:
            left.remove(hit)
            tp += 1
    return tp, fps, left


def predict(records: list[dict]) -> dict[str, list[str]]:
    """Predicted holders per record id, the extractor run on the passages that hold the sentences."""
    from corpus.ingest import load_corpus
    from qa.attribution import find_attributions
    from qa.build import _attributions, _parse_args

    out: dict[str, list[str]] = {}
    for name, root in collection_dirs().items():
        recs = [r for r in records if r["collection"] == name]
        if not recs:
            continue
        corpus = load_corpus(root)
        texts, contexts = _parse_args(corpus.passages)
        wanted = {}
        for r in recs:
            for i, p in enumerate(corpus.passages):
                if p.file == r["file"] and p.start <= r["start"] < p.end:
                    wanted.setdefault(i, []).append(r)
                    break
            else:
                raise SystemExit(f"{r['id']}: no passage holds it")
        idx = sorted(wanted)
        found = find_attributions([texts[i] for i in idx], [contexts[i] for i in idx])
        sub = type(corpus).__new__(type(corpus))
        sub.__dict__.update(corpus.__dict__)
        sub.passages = [corpus.passages[i] for i in idx]
        mapped = _attributions(sub, found)
        for i in idx:
            atts = mapped[corpus.passages[i].id]
            for r in wanted[i]:
                out[r["id"]] = [a["holder"] for a in atts if r["start"] <= a["start"] < r["end"]]
    return out


def prf(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[float, float, float]:
    t, f_p, f_n = tp.sum(), fp.sum(), fn.sum()
    p = t / (t + f_p) if t + f_p else 1.0
    r = t / (t + f_n) if t + f_n else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return float(p), float(r), float(f)


def bootstrap(tp, fp, fn) -> list[tuple[float, float]]:
    rng = np.random.default_rng(0)
    n = len(tp)
    samples = np.array([prf(tp[ix], fp[ix], fn[ix]) for ix in rng.integers(0, n, size=(RESAMPLES, n))])
    return [(float(np.percentile(samples[:, k], 2.5)), float(np.percentile(samples[:, k], 97.5))) for k in range(3)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labelled", type=Path, default=LABELLED)
    ap.add_argument("--split", choices=("all", "dev", "test", "final"), default="all")
    ap.add_argument("--sample", type=Path, help="draw the sentences to label into this file and stop")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quiet", action="store_true", help="no error listing")
    args = ap.parse_args()
    if args.sample:
        sample(args.sample)
        return
    records = [json.loads(line) for line in args.labelled.read_text(encoding="utf-8").splitlines() if line.strip()]
    dirs = collection_dirs()
    for r in records:  # verbatim check
        raw = (dirs[r["collection"]] / r["file"]).read_text(encoding="utf-8")
        if raw[r["start"] : r["end"]] != r["text"]:
            raise SystemExit(f"{r['id']}: text is not raw[start:end] of {r['file']}")
    if args.split != "all":
        records = [r for r in records if r["split"] == args.split]
    pred = predict(records)
    table, errors = {}, []
    for name in dirs:
        recs = [r for r in records if r["collection"] == name]
        if not recs:
            continue
        tp, fp, fn = [], [], []
        for r in recs:
            t, fps, fns = score_sentence(pred[r["id"]], r["holders"])
            tp.append(t)
            fp.append(len(fps))
            fn.append(len(fns))
            if fps or fns:
                errors.append((r, fps, fns))
        arrays = [np.array(x) for x in (tp, fp, fn)]
        point, ci = prf(*arrays), bootstrap(*arrays)
        table[name] = {
            "n": len(recs),
            "gold": int(arrays[0].sum() + arrays[2].sum()),
            "tp": int(arrays[0].sum()),
            "fp": int(arrays[1].sum()),
            "fn": int(arrays[2].sum()),
        }
        for k, v, (lo, hi) in zip(("P", "R", "F1"), point, ci, strict=True):
            table[name][k] = {"mean": v, "lo": lo, "hi": hi}
    macro = {k: float(np.mean([t[k]["mean"] for t in table.values()])) for k in ("P", "R", "F1")}
    print(f"holders on {args.labelled.name} (split: {args.split})\n")
    print("| collection | sentences | gold | tp | fp | fn | precision | recall | F1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, t in table.items():
        cells = [f"{t[k]['mean']:.3f} [{t[k]['lo']:.2f}, {t[k]['hi']:.2f}]" for k in ("P", "R", "F1")]
        print(f"| {name} | {t['n']} | {t['gold']} | {t['tp']} | {t['fp']} | {t['fn']} | " + " | ".join(cells) + " |")
    print(f"| macro | | | | | | {macro['P']:.3f} | {macro['R']:.3f} | {macro['F1']:.3f} |")
    if not args.quiet:
        print("\nerrors (FP: predicted, not gold; FN: gold, not predicted):")
        for r, fps, fns in errors:
            print(f"\n{r['id']} [{r['split']}] {r['file']}:{r['start']}-{r['end']}\n  {' '.join(r['text'].split())}")
            if fps:
                print(f"  FP: {fps}")
            if fns:
                print(f"  FN: {fns}")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "collections": table, "macro": macro}, indent=1))


if __name__ == "__main__":
    main()
