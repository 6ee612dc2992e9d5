"""The server's limits and error shape: settings, the request-body cap (ASGI middleware), text validation."""
import json
from typing import Callable

from pydantic import BaseModel, Field


class ServeSettings(BaseModel):
    max_texts: int = Field(64, ge=1, description="texts per request")
    max_chars: int = Field(2000, ge=1, description="characters per text")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request body size")
    max_batch: int = Field(64, ge=1, description="texts per forward pass")
    max_wait_ms: float = Field(5.0, ge=0, description="how long the first text of a batch waits for company")
    api_key: str | None = Field(None, description="required in the X-API-Key header when set")
    cors_origins: list[str] = Field(default_factory=list, description="empty = CORS off")


def error_body(message: str, details: list | None = None) -> dict:
    """The one JSON body of every error answer (4xx and 5xx): {"error": one line, "details": [...]}."""
    return {"error": message, **({"details": details} if details else {})}


def http_error_body(status: int, message: str, path: str, headers: dict) -> dict:
    """An HTTP error (404, 405, ...) in the one error shape, with details (a 405's allowed methods)."""
    detail = {"type": f"http_{status}", "msg": message, "path": path,
              **({"allowed": headers["Allow"]} if "Allow" in headers else {})}
    return error_body(message, [detail])


def _utf8(text: str) -> str:
    text.encode("utf-8")  # a lone surrogate ("\ud800") passes JSON parsing but no tokenizer: 422, not 500
    if not text.strip():  # an empty text has no sentiment; scoring it would return the model's prior as an answer
        raise ValueError("empty or whitespace-only text")
    return text


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, by Content-Length or while a chunked body streams in."""

    def __init__(self, app, max_bytes: int, on_reject: Callable = lambda path: None):
        self.app, self.max_bytes, self.on_reject = app, max_bytes, on_reject

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(scope, send)
        seen, rejected = 0, False

        async def counted_receive():
            # A chunked body has no Content-Length: count while it streams, answer 413 ourselves at the limit
            # and tell the app the client left (the app's own error response is then dropped).
            nonlocal seen, rejected
            msg = await receive()
            if msg["type"] == "http.request" and not rejected:
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    await self._reject(scope, send)
            return {"type": "http.disconnect"} if rejected else msg

        async def guarded_send(msg):
            if not rejected:
                await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, scope, send):
        self.on_reject(scope.get("path", ""))
        body = json.dumps(error_body(f"request body over {self.max_bytes} bytes")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


