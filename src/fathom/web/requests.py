"""Malformed requests to the tool server get a typed 4xx with one documented error body, never a 500.

    {"error": {"code": "bad_request" | "too_large" | "not_found" | "method_not_allowed", "message": ..., "retryable":
     false}, "detail": [{"loc": [...], "msg": ..., "type": ...}, ...]}

* :class:`RequestGuard` (pure ASGI middleware) reads a JSON request body up to ``max_body_bytes`` (413 beyond it,
  from the ``Content-Length`` header or while streaming) and refuses, with 422, a body that is not UTF-8 JSON, nests
  too deeply, holds an integer too long to convert, ``NaN``/``Infinity``, or a string with a lone surrogate; it
  then replays the body to the app, so every handler sees only well-formed JSON.
* :class:`FastRoutes` (inside RequestGuard) answers a well-formed call of a JSON tool endpoint without FastAPI's
  per-request machinery, with the same bytes; whatever does not validate goes on to FastAPI unchanged.
* :func:`install_error_handlers` adds one handler per error family (request validation, pydantic validation raised
  inside a handler, HTTP errors, anything else) that renders the body above; the validation detail never echoes the
  offending input (it may be ``NaN`` or megabytes long).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fathom.web.schemas import ToolErrorInfo

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer of the tool server."""

    error: ToolErrorInfo
    detail: list[dict[str, Any]] = []


def error_response(status: int, code: str, message: str, detail: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ToolErrorInfo(code=code, message=message[:2000], retryable=status >= 500),  # type: ignore[arg-type]
                     detail=detail or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _safe_detail(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in list(errors or [])[:20]:
        try:
            loc = [x if isinstance(x, int) else _safe_str(x)[:200] for x in e.get("loc", ())]
            out.append({"loc": loc, "msg": _safe_str(e.get("msg", ""))[:500], "type": _safe_str(e.get("type", ""))})
        except Exception:  # noqa: BLE001 - a detail that cannot be rendered is left out
            continue
    return out


def _safe_str(x: Any) -> str:
    return str(x).encode("utf-8", "replace").decode("utf-8")


def _message(detail: list[dict[str, Any]]) -> str:
    if not detail:
        return "malformed request"
    parts = [f"{'.'.join(str(p) for p in d['loc'])}: {d['msg']}" for d in detail[:5]]
    return "invalid request: " + "; ".join(parts)


def validation_error_response(exc: RequestValidationError | ValidationError) -> JSONResponse:
    detail = _safe_detail(exc.errors())
    return error_response(422, "bad_request", _message(detail), detail)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(ValidationError)
    async def _validation(_req: Request, exc: ValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        return error_response(exc.status_code, code, _safe_str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal", f"{type(exc).__name__}")


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


def _reject_constant(name: str) -> Any:
    raise _Refused(422, "bad_request", f"{name} is not valid JSON")


def _check_strings(obj: Any) -> None:
    """Refuse lone surrogates anywhere in a decoded JSON value (iteratively: the value may nest deeply)."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                raise _Refused(422, "bad_request", "a string holds a lone UTF-16 surrogate") from None
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)


def check_json_body(body: bytes) -> Any:
    """The decoded JSON value of ``body``; raise :class:`_Refused` unless it is UTF-8 JSON without NaN/Infinity,
    excessive nesting, oversized integers or lone surrogates."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(422, "bad_request", "the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except _Refused:
        raise
    except json.JSONDecodeError as exc:
        raise _Refused(422, "bad_request", f"the body is not JSON ({exc.msg} at line {exc.lineno} column "
                       f"{exc.colno})") from None
    except RecursionError:
        raise _Refused(422, "bad_request", "the JSON body is nested too deeply") from None
    except (ValueError, OverflowError) as exc:
        raise _Refused(422, "bad_request", f"the JSON body holds a value that cannot be read "
                       f"({str(exc)[:100]})") from None
    _check_strings(value)
    return value


#: Scope key under which :class:`RequestGuard` leaves the decoded JSON body for the app (``FastRoutes``).
JSON_BODY = "fathom.json_body"


class RequestGuard:
    """ASGI middleware: body size limit (413) and JSON well-formedness (422) before the app sees a request. The
    decoded body is left in ``scope[JSON_BODY]`` (the app need not decode it again)."""

    def __init__(self, app, max_body_bytes: int = 1_000_000):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length = headers.get(b"content-length")
        try:
            if length is not None:
                try:
                    n = int(length)
                except ValueError:
                    raise _Refused(400, "bad_request", "the Content-Length header is not a number") from None
                if n > self.max_body_bytes:
                    raise _Refused(413, "too_large", f"the request body is {n} bytes; the limit is "
                                   f"{self.max_body_bytes}")
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _Refused(413, "too_large", f"the request body is over the limit of "
                                   f"{self.max_body_bytes} bytes")
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            if body:  # every body of this API is JSON, whatever the content type claims
                scope[JSON_BODY] = check_json_body(body)
        except _Refused as exc:
            await error_response(exc.status, exc.code, exc.message)(scope, receive, send)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


_JSON_HEADERS = (b"content-type", b"application/json")


def _json_or_no_content_type(scope) -> bool:
    for k, v in scope.get("headers", ()):
        if k.lower() == b"content-type":
            return v.split(b";", 1)[0].strip().lower() == b"application/json"
    return True


class FastRoutes:
    """ASGI middleware (inside :class:`RequestGuard`): the common case of the JSON tool endpoints without FastAPI's
    per-request machinery (routing, dependency solving, response-model validation, jsonable encoding).

    ``routes`` maps a POST path to (request model, async handler returning a pydantic model). A request whose JSON
    body (decoded by RequestGuard), content type (JSON or none) and fields validate is answered here: the handler's
    model serialized by pydantic in one call, the same bytes FastAPI would send. Anything else (a body that does not
    validate, another content type, another path or method) goes on to the app unchanged, so errors keep FastAPI's
    rendering and the OpenAPI schema still describes these routes."""

    def __init__(self, app, routes: dict[str, tuple[type[BaseModel], Any]]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send):
        route = self.routes.get(scope.get("path")) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or JSON_BODY not in scope or not _json_or_no_content_type(scope):
            await self.app(scope, receive, send)
            return
        model, handler = route
        try:
            req = model.model_validate(scope[JSON_BODY])
        except ValidationError:
            await self.app(scope, receive, send)  # FastAPI renders the 422, as for any other malformed request
            return
        try:
            resp = await handler(req)
            body = resp.__pydantic_serializer__.to_json(resp)
        except ValidationError as exc:  # as the app's exception handlers would answer
            await validation_error_response(exc)(scope, receive, send)
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("unhandled error")
            await error_response(500, "internal", f"{type(exc).__name__}")(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()), _JSON_HEADERS]})
        await send({"type": "http.response.body", "body": body})
