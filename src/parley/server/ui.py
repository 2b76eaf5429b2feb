"""The admin web page at `/ui`: static files shipped in the package (no CDN, works offline).

Everything the page shows comes from the admin API with the key the user signs in with; the files
themselves are public. They are served with a strict Content-Security-Policy (own origin only).
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI_DIR = Path(__file__).parent / "ui"
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _Secured:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)


def ui_routes() -> list[BaseRoute]:
    async def to_ui(request: object) -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    return [
        Route("/ui", to_ui, methods=["GET"]),
        Mount("/ui", app=_Secured(StaticFiles(directory=UI_DIR, html=True)), name="ui"),
    ]
