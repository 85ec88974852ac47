"""Upload budgets: how many bytes one client, and everyone together, may upload per hour.

Gradio stores every upload (`POST .../gradio_api/upload`) in its upload folder before any handler
runs, and keeps it up to an hour (``delete_cache``); the per-file cap (MELASMA_MAX_UPLOAD_MB) does
not stop a visitor from sending many files (one stored 472 MB in 3.5 s). `UploadBudget` is an ASGI
middleware that reads each upload's Content-Length first and refuses it with HTTP 413 and a message
once the client's budget (`Settings.upload_budget_mb_per_user`) or the server's
(`Settings.upload_budget_mb`) for the last hour would be passed. A client is its signed-in name
when the request carries Gradio's session cookie or Hugging Face session, else its address (the
first X-Forwarded-For entry behind a proxy such as a Space's).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The budgets count the uploads of the last hour (Gradio deletes cached uploads after an hour).
WINDOW_S = 3600.0
MB = 1024 * 1024


class UploadLedger:
    """Bytes admitted per client and in total over the last `window_s` seconds; thread-safe."""

    def __init__(self, per_client: int, total: int, window_s: float = WINDOW_S) -> None:
        self.per_client, self.total, self.window_s = per_client, total, window_s
        self._entries: deque[tuple[float, str, int]] = deque()
        self._lock = threading.Lock()

    def _used(self, now: float) -> tuple[dict[str, int], int]:
        while self._entries and self._entries[0][0] <= now - self.window_s:
            self._entries.popleft()
        per: dict[str, int] = {}
        for _, client, size in self._entries:
            per[client] = per.get(client, 0) + size
        return per, sum(per.values())

    def admit(self, client: str, size: int, now: float | None = None) -> str | None:
        """Record `size` bytes for `client` and return None, or return why they are refused."""
        now = time.monotonic() if now is None else now
        with self._lock:
            per, total = self._used(now)
            mine = per.get(client, 0)
            if mine + size > self.per_client:
                return (f"upload refused: you have uploaded {mine / MB:.0f} MB in the last hour and this "
                        f"server allows {self.per_client / MB:.0f} MB per person per hour; try again later")
            if total + size > self.total:
                return (f"upload refused: this server has taken its {self.total / MB:.0f} MB of uploads for "
                        "the last hour; try again later")
            self._entries.append((now, client, size))
            return None


def client_key(scope: Scope) -> str:
    """Who is uploading: Gradio's sign-in cookie or the OAuth session cookie when present, else the
    address (first X-Forwarded-For entry, else the socket's peer)."""
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if value and (name.startswith("access-token") or name == "session"):
            return f"{name}={value[-32:]}"
    forwarded = headers.get("x-forwarded-for", "").split(",")[0].strip()
    if forwarded:
        return f"ip={forwarded}"
    client = scope.get("client")
    return f"ip={client[0]}" if client else "ip=unknown"


def is_upload(scope: Scope) -> bool:
    """Gradio's upload route (`.../gradio_api/upload`, with or without a trailing slash)."""
    return (scope.get("type") == "http" and scope.get("method") == "POST"
            and str(scope.get("path", "")).rstrip("/").endswith("/upload"))


class UploadBudget:
    """ASGI middleware: uploads over a client's or the server's hourly budget get HTTP 413 (with the
    reason in `detail`) before a byte of them is stored; an upload without Content-Length gets 411."""

    def __init__(self, app: ASGIApp, *, per_client_mb: int, total_mb: int) -> None:
        self.app = app
        self.ledger = UploadLedger(per_client_mb * MB, total_mb * MB)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_upload(scope):
            lengths = [v for k, v in scope.get("headers", []) if k.lower() == b"content-length"]
            try:
                size = int(lengths[0]) if lengths else -1
            except ValueError:
                size = -1
            refusal = ("upload refused: send the file's size (Content-Length)" if size < 0
                       else self.ledger.admit(client_key(scope), size))
            if refusal is not None:
                await _refuse(send, 411 if size < 0 else 413, refusal)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
