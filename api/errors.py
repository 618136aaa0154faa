"""One error body for every failure: {"error": {"code", "message", "field", "request_id", "details"?}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.logs import request_id
from index.store import StoreUnavailable

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "not_ready",
}


class ErrorDetail(BaseModel):
    code: str = Field(
        description="stable machine-readable code, e.g. invalid_value, invalid_json, unknown_filter_value, "
        "not_found, payload_too_large, not_ready, store_unavailable, internal_error"
    )
    message: str = Field(description="what went wrong, for people (wording may change)")
    field: str | None = Field(None, description="the request field at fault, e.g. 'filters.year_to' or 'body'")
    request_id: str | None = Field(None, description="the request's X-Request-ID, to find it in the logs")
    details: list[dict] | None = Field(
        None, description="when several fields are at fault: one {field, message} object each"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail = Field(description="the one error the request met (see details for more fields)")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.headers = status, code, message, field, headers


def error_response(status, code, message, field=None, details=None, headers=None) -> JSONResponse:
    detail = ErrorDetail(code=code, message=message, field=field, request_id=request_id.get(), details=details)
    return JSONResponse(ErrorBody(error=detail).model_dump(exclude_none=True), status, headers=headers)


def field_name(loc: tuple) -> str:
    """("body", "filters", "viewpoint", 0) -> "filters.viewpoint[0]"; ("query", "context") -> "context"."""
    out = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or (str(loc[0]) if loc else "body")


def describe(err: dict) -> tuple[str, str, str]:
    """(code, field, message) for one pydantic/FastAPI validation error."""
    kind, loc = err.get("type", ""), tuple(err.get("loc", ()))
    if kind == "json_invalid":
        pos = loc[1] if len(loc) > 1 else "?"
        reason = (err.get("ctx") or {}).get("error", "malformed")
        return "invalid_json", "body", f"request body is not valid JSON: {reason} (at character {pos})"
    if loc == ("body",):
        if kind == "missing":
            return "invalid_body", "body", "request body is required: a JSON object"
        return "invalid_body", "body", "request body must be a JSON object"
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return "invalid_value", field_name(loc), message


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.field, headers=exc.headers)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable):
        # The database went away or refused a query: the service is there, its store is not (retry later).
        return error_response(503, "store_unavailable", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        found = [describe(e) for e in exc.errors()] or [("invalid_request", "body", "invalid request")]
        code, field, message = found[0]
        details = [{"field": f, "message": m} for _, f, m in found] if len(found) > 1 else None
        if not message.startswith((field.split(".")[-1], "request body")):
            message = f"{field}: {message}"
        return error_response(422, code, message, field, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))
