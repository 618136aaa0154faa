"""The `qa` command: corpus statistics, index building, asking questions, and serving the API and page.

Errors are one line on stderr: exit 2 for a usage mistake, 1 for anything that went wrong at run time.
Set QA_DEBUG=1 to see the full trace of an unexpected error.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from api import DISTRIBUTION
from api.settings import Settings

DIR = click.Path(file_okay=False, path_type=Path)


class QAGroup(click.Group):
    """Turns any error a command raises into one line on stderr and exit 1 (never a traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get("QA_DEBUG"):
                raise
            raise click.ClickException(one_line(exc)) from exc


def one_line(exc: BaseException) -> str:
    from pydantic import ValidationError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ValidationError):  # a bad QA_* setting: its message, not pydantic's report
        text = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or text}: {exc.filename}"
    from index.store import IndexLoadError, StoreUnavailable

    if not isinstance(exc, IndexLoadError | StoreUnavailable | ValueError | OSError):  # the errors a user can fix
        text = f"unexpected {type(exc).__name__}: {text} (QA_DEBUG=1 shows the trace)"
    return text


def describe(location) -> str:
    from index.stores import describe as where

    return where(location)


def corpus_option(f):
    help = "the collection's documents [default: $QA_CORPUS_DIR, or $QA_DATA_DIR/collection]"
    return click.option("--corpus", "corpus_dir", type=DIR, help=help)(f)


def index_option(f):
    help = "index directory [default: $QA_INDEX_DIR, or $QA_DATA_DIR/index]"
    f = click.option("--index", "index_dir", type=DIR, help=help)(f)
    return store_option(f)


def store_option(f):
    """--store on every command that has --index: read by settings_with, so no command has to pass it on."""

    def remember(ctx: click.Context, _param, value: str | None) -> None:
        if value is not None:
            ctx.meta["qa_store"] = value

    help = "the index in a PostgreSQL database instead, postgresql://user@host:port/db [default: $QA_STORE]"
    return click.option("--store", help=help, expose_value=False, callback=remember)(f)


def settings_with(**overrides) -> Settings:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and "qa_store" in ctx.meta:
        overrides["store"] = ctx.meta["qa_store"]
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@click.group(cls=QAGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="qa", message="%(prog)s %(version)s")
def cli() -> None:
    """Ask questions of a collection of documents; get cited passages, never generated text.

    Answers are ranked verbatim passages with citations and the viewpoint each comes from;
    when the collection does not answer, qa says so and shows the nearest passages.
    """


@cli.group()
def corpus() -> None:
    """Inspect the corpus."""


@corpus.command("stats")
@corpus_option
def corpus_stats(corpus_dir: Path | None) -> None:
    """Works, passages and viewpoints in the corpus."""
    from corpus.ingest import load_corpus
    from corpus.stats import format_stats

    click.echo(format_stats(load_corpus(settings_with(corpus_dir=corpus_dir).corpus_dir)))


@corpus.command("audit")
@click.argument("files", nargs=-1)
@click.option("--samples", default=3, show_default=True, help="pieces shown for each rule")
@corpus_option
def corpus_audit(files: tuple[str, ...], samples: int, corpus_dir: Path | None) -> None:
    """What ingestion leaves out of every passage, by the rule that drops it (chrome, markers, reference lists).

    FILES are names of files in the collection's folder (default: all of them). Exits 1 if some text with words
    is left out by no rule."""
    from corpus.audit import audit, format_audit

    root = settings_with(corpus_dir=corpus_dir).corpus_dir
    names = [Path(f).name for f in files]
    if missing := [n for n in names if not (root / n).is_file()]:
        raise click.UsageError(f"not in the collection's folder {root}: {', '.join(missing)}")
    audits = audit(root, names or None)
    click.echo(format_audit(audits, samples=samples))
    if any(a.unexplained for a in audits.values()):
        raise SystemExit(1)


@cli.group()
def index() -> None:
    """Build or extend the search index."""


@index.command("build")
@corpus_option
@index_option
def index_build(corpus_dir: Path | None, index_dir: Path | None) -> None:
    """Build the index from the corpus, replacing any previous one only when the build succeeds."""
    from api.logs import command_logging
    from qa.collection import build

    s = settings_with(corpus_dir=corpus_dir, index_dir=index_dir)
    with command_logging(s.log_level, s.log_format):  # the build's own lines, one per event ($QA_LOG_FORMAT)
        build(s.corpus_dir, s.index_location, progress=True)
    click.echo(f"index built at {describe(s.index_location)}")


@index.command("compact")
@store_option
def index_compact() -> None:
    """Merge a database collection's segments into one, leaving out the rows its writes hid (a full rewrite, as a
    new version: servers serve on meanwhile). Writes merge segments on their own past a threshold too."""
    from api.logs import command_logging
    from index.pg import compact

    s = settings_with()
    if not s.store:
        raise click.UsageError("compact merges a database's segments: give --store postgresql://... (or $QA_STORE)")
    with command_logging(s.log_level, s.log_format):
        done = compact(s.store)
    (before, after), where = done.segments, describe(s.store)
    if done.version is None:
        click.echo(f"nothing to compact in {where}: {before} segment(s), no hidden rows ({done.seconds:.1f} s)")
        return
    click.echo(f"compacted {where} to version {done.version}: {before} segments -> {after}, {done.passages} passages"
               f" ({done.hidden} hidden rows left out) in {done.seconds:.1f} s")  # fmt: skip


@cli.group()
def collection() -> None:
    """List, add and remove the collection's documents (in $QA_DATA_DIR, see `qa collection path`)."""


@collection.command("path")
@corpus_option
@index_option
def collection_path(corpus_dir: Path | None, index_dir: Path | None) -> None:
    """Where the collection's documents and index are."""
    s = settings_with(corpus_dir=corpus_dir, index_dir=index_dir)
    click.echo(f"documents: {s.corpus_dir}\nindex: {describe(s.index_location)}")


@collection.command("list")
@click.option("--json", "as_json", is_flag=True, help="print JSON: one object per document")
@corpus_option
@index_option
def collection_list(as_json: bool, corpus_dir: Path | None, index_dir: Path | None) -> None:
    """The documents of the collection: each file's works (title, authors, year, viewpoint) as indexed."""
    from qa.collection import documents

    s = settings_with(corpus_dir=corpus_dir, index_dir=index_dir)
    docs = documents(s.corpus_dir, s.index_location)
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    from api.render import printable

    for doc in docs:
        click.echo(printable(f"{doc['file']}  [{doc['status']}]"))
        for w in doc["works"]:
            year = w["year"] if w["year"] is not None else "n.d."
            line = f"  {w['title']} ({', '.join(w['authors'])}, {year}) {w['kind']}; viewpoint: {w['viewpoint_label']}"
            click.echo(printable(line))


def add_options(f):
    options = [
        click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option("--title", help="the document's title [default: read from the file]"),
        click.option("--author", "authors", multiple=True, help="an author (repeatable) [default: read from the file]"),
        click.option("--year", type=click.IntRange(-3000, 3000), help="year of publication"),
        click.option("--kind", help='what it is, e.g. "journal article", "book chapter", "report"'),
        click.option("--viewpoint", help="a short label for whose view it expresses, usable as a filter"),
        click.option("--viewpoint-description", help="one line describing that viewpoint (for a new label)"),
        corpus_option,
        index_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


@add_options
def add_command(paths, title, authors, year, kind, viewpoint, viewpoint_description, corpus_dir, index_dir) -> None:
    """Add documents to the collection and update the index.

    Formats: plain text (.txt), Markdown (.md), HTML (.html, .htm), PDF (.pdf, with a text layer) and Word
    (.docx). Metadata each states is read: Markdown front matter (title, author, date, description, kind) or its
    first heading; HTML <title> and author, date, description, citation_*, Dublin Core and Open Graph meta tags;
    PDF document info (Title, Author, CreationDate); DOCX core properties (title, author, created). What you
    state (--title, --author, ...) is kept in the collection's manifest and wins over what is read. PDF
    passages are cited with their page numbers.
    """
    from api.logs import command_logging
    from qa.collection import add_documents

    s = settings_with(corpus_dir=corpus_dir, index_dir=index_dir)
    for p in paths:
        with p.open("rb"):  # an unreadable file fails here, before any work is done
            pass
    fields = dict(title=title, authors=list(authors) or None, year=year, kind=kind, viewpoint_label=viewpoint)
    fields = {k: v for k, v in fields.items() if v is not None}
    if viewpoint_description and not viewpoint:
        raise click.UsageError("--viewpoint-description: describes a --viewpoint label; give one")
    with command_logging(s.log_level, s.log_format):
        add_documents(list(paths), s.corpus_dir, s.index_location, fields, viewpoint_description)
    click.echo(f"added {len(paths)} document(s) to {s.corpus_dir}; index at {describe(s.index_location)}")


add_command = click.command("add")(add_command)  # one command, under both groups
index.add_command(add_command)
collection.add_command(add_command)


@collection.command("remove")
@click.argument("names", nargs=-1, required=True)
@corpus_option
@index_option
def collection_remove(names: tuple[str, ...], corpus_dir: Path | None, index_dir: Path | None) -> None:
    """Remove documents (by file name, as `qa collection list` shows them) and update the index."""
    from api.logs import command_logging
    from qa.collection import remove_documents

    s = settings_with(corpus_dir=corpus_dir, index_dir=index_dir)
    with command_logging(s.log_level, s.log_format):
        remove_documents(list(names), s.corpus_dir, s.index_location)
    click.echo(f"removed {len(names)} document(s); index at {describe(s.index_location)}")


@cli.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="print the API response JSON")
@click.option("--top-k", type=click.IntRange(1, 50), default=10, show_default=True, help="passages to return")
@click.option("--work", "works", multiple=True, help="only this work id (repeatable)")
@click.option("--viewpoint", "viewpoints", multiple=True, help="only this viewpoint label (repeatable)")
@click.option("--no-diversify", is_flag=True, help="rank by relevance alone, not covering every viewpoint")
@click.option("--full", is_flag=True, help="print whole passages, not just the highlighted sentence")
@corpus_option
@index_option
def ask(question, as_json, top_k, works, viewpoints, no_diversify, full, corpus_dir, index_dir) -> None:
    """Answer QUESTION with ranked verbatim passages."""
    from pydantic import ValidationError

    from api.render import render_answer
    from qa.schema import AskRequest

    filters = {k: list(v) for k, v in (("work", works), ("viewpoint", viewpoints)) if v}
    try:
        req = AskRequest(question=question, top_k=top_k, filters=filters or None, diversify=not no_diversify)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise click.UsageError(f"{err['loc'][0]}: {err['msg'].removeprefix('Value error, ')}") from exc

    from qa.engine import Engine, UnknownFilterValue

    s = settings_with(corpus_dir=corpus_dir, index_dir=index_dir)
    engine = Engine.load(s.index_location, s.corpus_dir)
    try:
        if req.filters is not None:
            engine.check_filters(req.filters)
    except UnknownFilterValue as exc:
        raise click.UsageError(f"--{exc.field}: {exc}") from exc
    resp = engine.ask(req)
    if as_json:
        click.echo(json.dumps(resp.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        click.echo(render_answer(resp, raw_reader(s.corpus_dir), full=full, color=sys.stdout.isatty()))


def raw_reader(corpus_dir: Path):
    """file name -> its raw text (None if it is not in corpus_dir), each file read once."""
    from corpus.ingest import raw_text

    @functools.cache
    def read(file: str) -> str | None:
        try:
            return raw_text(corpus_dir / Path(file).name)  # a PDF's or DOCX's: the text offsets point into
        except (OSError, ValueError):
            return None

    return read


@cli.command()
@click.option("--host", help="address to listen on [default: $QA_HOST or 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), help="port [default: $QA_PORT or 8000]")
@click.option("--workers", type=click.IntRange(1, 64), help="worker processes [default: $QA_WORKERS or 1]")
@corpus_option
@index_option
def serve(host, port, workers, corpus_dir, index_dir) -> None:
    """Serve the API and the web page (building the index first if there is none)."""
    from api.serve import run

    s = settings_with(host=host, port=port, workers=workers, corpus_dir=corpus_dir, index_dir=index_dir)
    run(s)


@cli.command("mcp")
@click.option(
    "--transport",
    type=click.Choice(["stdio", "http"]),
    default="stdio",
    show_default=True,
    help="stdio for a chatbot that starts qa itself; http for streamable HTTP at http://HOST:PORT/mcp",
)
@click.option("--host", help="address to listen on with --transport http [default: $QA_HOST or 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), help="port for --transport http [default: $QA_PORT or 8000]")
@corpus_option
@index_option
def mcp_command(transport, host, port, corpus_dir, index_dir) -> None:
    """Serve the collection to chatbots over the Model Context Protocol (building the index first if there is
    none): tools ask, get_passage and list_works, answering with the API's JSON."""
    from api.mcp_server import run

    run(settings_with(host=host, port=port, corpus_dir=corpus_dir, index_dir=index_dir), transport)


def main() -> None:
    # Model loading prints progress bars of its own; a person asking a question does not need them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    cli(prog_name="qa")


if __name__ == "__main__":
    main()
