"""A per-work summary of ingestion, for `qa corpus stats`."""

from __future__ import annotations

from corpus.ingest import Corpus


def stats_rows(corpus: Corpus) -> list[dict]:
    rows = []
    for work_id, work in corpus.works.items():
        st = corpus.stats.get(work_id)
        rows.append(
            {
                "work": work_id,
                "file": work.file,
                "title": work.title,
                "passages": st.passages if st else 0,
                "words": st.words if st else 0,
                "duplicates_collapsed": st.duplicates_collapsed if st else 0,
                "chrome_dropped_chars": st.chrome_dropped_chars if st else 0,
            }
        )
    return rows


def format_stats(corpus: Corpus) -> str:
    cols = ["work", "passages", "words", "duplicates_collapsed", "chrome_dropped_chars"]
    heads = ["work", "passages", "words", "duplicates collapsed", "chrome dropped (chars)"]
    rows = stats_rows(corpus)
    widths = [max(len(h), *(len(str(r[c])) for r in rows)) for h, c in zip(heads, cols, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    for r in rows:
        lines.append("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    total = sum(r["passages"] for r in rows)
    lines.append(f"{len(rows)} works, {total} passages from {len(corpus.texts)} files")  # files that gave text
    lines += [f"skipped {s.file}: {s.reason}" for s in corpus.skipped]
    return "\n".join(lines)
