"""`qa mcp`: the collection as Model Context Protocol tools for chatbots: ask, get_passage, list_works.

Each tool answers with the JSON of its HTTP endpoint (POST /v1/ask, GET /v1/passages/{id}, GET /v1/works) as
structured content, and reads its arguments through the same models, so a chatbot and an API client share one
contract. The engine loads once, before the server takes its first message: an index that cannot load stops
`qa mcp` at start with one line instead of failing every tool call. Over stdio only protocol messages may reach
stdout; logs go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from typing import Annotated, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api import version
from api.errors import describe
from api.logs import configure_logging
from api.models import PassageContext, WorkOut
from api.serve import ensure_index, http_limits
from api.settings import Settings
from index import stores
from qa.schema import AskRequest, AskResponse

log = logging.getLogger("api.mcp")
M = TypeVar("M", bound=BaseModel)

INSTRUCTIONS = """\
Searches a collection of documents, which may hold opposed viewpoints. It never writes \
text of its own: every answer is a ranked list of passages copied verbatim from the collection, each with \
its source, a ready-made citation and the viewpoint it expresses. Quote passages exactly and cite them \
(citation.text); say whose view each one gives (viewpoint, attributions). When `answered` is false the \
collection does not answer the question: say so instead of answering from the nearest passages."""

ASK = """\
Answer a question with ranked passages quoted verbatim from the collection (the JSON of POST /v1/ask).
Each passage has its text, `highlights` (the sentences that answer best), `source` (work, title, author, \
year, section, character offsets; `passage_kind`: body, note, caption, byline or quote), `citation` (`text` \
ready to quote, `csl` as CSL-JSON), `viewpoint` and `attributions` (whose view the passage reports). A note \
passage's `cited_by` lists the passages that cite it; a passage's `notes` give each note's passage id. \
`answered` is false when the collection does not answer; \
`reason` says why, and the passages are then only the nearest ones. Each passage's `supports_answer` \
(with its probability `support`) says whether it supports an answer: cite those. `viewpoints` \
groups the passage ids by viewpoint. By default the top results cover every viewpoint the collection holds \
(diversify). Read around a passage with get_passage; list_works gives the values the filters accept."""

GET_PASSAGE = """\
One passage by id (passages[].id of an ask result) with up to `context` neighbouring passages on each side \
in the same work, in reading order, and the work's provenance (the JSON of GET /v1/passages/{id}). Use it \
to read around a quotation before relying on it."""

LIST_WORKS = """\
Every work in the collection: id, title, authors, year, kind, origin (edition, publisher) and viewpoint \
(the JSON of GET /v1/works, under "result"). Work ids, authors, kinds and viewpoint labels are the values \
ask's filters accept."""

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


class PassageRequest(BaseModel):
    """Which passage to read, and how much of its work around it."""

    # The bounds of GET /v1/passages/{passage_id}?context=N.

    model_config = ConfigDict(extra="forbid", strict=True)

    passage_id: str = Field(..., min_length=1, max_length=200, description="a passage id from an ask result")
    context: int = Field(1, ge=0, le=10, description="neighbouring passages to include on each side, 0-10")


def run(s: Settings, transport: str) -> None:
    """Serve over stdio (a client that starts `qa mcp` itself) or streamable HTTP at http://HOST:PORT/mcp."""
    configure_logging(s.log_level, s.log_format)
    with stdout_to_stderr() if transport == "stdio" else contextlib.nullcontext():
        engine = load_engine(s)
    server = build_server(engine, s.log_level)
    if transport == "stdio":
        server.run("stdio")
    else:
        serve_http(server, s)


@contextlib.contextmanager
def stdout_to_stderr():
    """Until the stdio transport takes fd 1 over (it then diverts it itself), whatever building or loading
    prints, from us, a library or a child process, would land in the client's protocol stream."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def load_engine(s: Settings):
    """Build the index first when `qa serve` would (none yet, or the corpus changed), then load it once."""
    from qa.engine import Engine

    ensure_index(s)
    log.info("loading index and model from %s", stores.describe(s.index_location))
    engine = Engine.load(s.index_location, s.corpus_dir)
    log.info("engine ready")
    return engine


def serve_http(server: MCPServer, s: Settings) -> None:
    """Our own uvicorn server rather than the SDK's, so its logs go through ours (stderr, QA_LOG_FORMAT)."""
    import uvicorn

    app = server.streamable_http_app(host=s.host)  # on a loopback host the SDK also refuses DNS rebinding
    log.info("MCP over streamable HTTP at http://%s:%d/mcp", s.host, s.port)
    options = dict(host=s.host, port=s.port, log_config=None, access_log=False, log_level=s.log_level)
    uvicorn_config = uvicorn.Config(app, **options, **http_limits(s))  # the API's head size and time limits
    uvicorn.Server(uvicorn_config).run()


def build_server(engine, log_level: str = "info") -> MCPServer:
    def ask(question=None, top_k=None, filters=None, diversify=None) -> AskResponse:
        from qa.engine import UnknownFilterValue

        req = validated(AskRequest, question=question, top_k=top_k, filters=filters, diversify=diversify)
        try:
            engine.check_filters(req.filters)
        except UnknownFilterValue as exc:
            raise ToolError(f"filters.{exc.field}: {exc} (this tool's input schema lists the values)") from None
        return engine.ask(req)

    def get_passage(passage_id=None, context=None) -> PassageContext:
        req = validated(PassageRequest, passage_id=passage_id, context=context)
        found = engine.passage(req.passage_id, context=req.context)
        if found is None:
            raise ToolError(f"passage_id: no passage with id {req.passage_id!r}")
        return PassageContext.of(found, engine)

    def list_works() -> Annotated[CallToolResult, list[WorkOut]]:
        # Structured content must be an object, so the list goes under "result" (the SDK's way with lists);
        # the text is the JSON array of GET /v1/works itself, not the SDK's one text block per work.
        works = [WorkOut.of(w).model_dump(mode="json") for w in engine.works()]
        text = json.dumps(works, ensure_ascii=False, indent=2)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"result": works})

    tools = [
        tool(ask, "Ask the collection", ASK, ask_schema(engine)),
        tool(get_passage, "Read a passage in context", GET_PASSAGE, PassageRequest.model_json_schema()),
        tool(list_works, "List the works", LIST_WORKS),
    ]
    return MCPServer("qa", version=version(), instructions=INSTRUCTIONS, tools=tools, log_level=log_level.upper())


def tool(fn, title: str, description: str, schema: dict | None = None) -> Tool:
    """A read-only tool that publishes `schema`, the API's own request model, as its input schema. Its
    function takes every argument untyped (None when left out), so the SDK passes them through as they
    came and `validated` checks them with that model: the same rules as the API, errors of one line."""
    t = Tool.from_function(fn, title=title, description=description, annotations=READ_ONLY)
    return t.model_copy(update={"parameters": schema}) if schema else t


def validated(model: type[M], **args) -> M:
    """The arguments read as JSON by `model`, as the API reads a request body; a bad one is a tool error
    naming the field, e.g. "filters.year_to: Input should be a valid integer"."""
    given = {k: v for k, v in args.items() if v is not None}
    try:
        return model.model_validate_json(json.dumps(given))
    except ValidationError as exc:
        _, field, message = describe(exc.errors()[0])
        raise ToolError(message if message.startswith(field.split(".")[-1]) else f"{field}: {message}") from None


def ask_schema(engine) -> dict:
    """AskRequest's JSON schema, listing the values each filter accepts in this index (as the API's OpenAPI
    does), so a chatbot can restrict by viewpoint or work without guessing."""
    schema = AskRequest.model_json_schema()
    fields = schema["$defs"]["Filters"]["properties"]
    for name, values in engine.filter_values.items():
        for option in fields[name].get("anyOf", []):
            if option.get("type") == "array":
                option["items"] = {**option.get("items", {}), "type": "string", "enum": sorted(values)}
    return schema
