"""What the server shows to people: the page at / and the API reference at /docs and /redoc.

Everything is served from this process: the page's own files from server/http/static, Swagger UI
and ReDoc from the files the fastapi-offline package ships, so nothing needs the internet.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from models.types import ANALYSIS_TYPES
from server.http.openapi import install_openapi

STATIC_DIR = Path(__file__).parent / "static"
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/static/docs"
# The reference pages may load nothing from elsewhere: ReDoc's sidebar, for one, links an
# image on cdn.redoc.ly. The browser refuses such requests instead of sending them.
LOCAL_ONLY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'"
}


def install_web(app: FastAPI) -> None:
    """Adds the page, its files, and the offline API reference to ``app`` (created with
    ``docs_url=None, redoc_url=None``)."""
    # Mounted before /static so that its prefix wins.
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    openapi_url = app.openapi_url or "/openapi.json"
    install_openapi(app)

    page_html = render_page((STATIC_DIR / "index.html").read_text())

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title}: API reference",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            # Swagger UI's default validator badge is an image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None, "defaultModelsExpandDepth": 0},
        )
        return _local_only(page)

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title}: API reference",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        return _local_only(page)


def render_page(template: str) -> str:
    """The page with its type menu and parameter fields from the API's catalogue (the first
    type's fields shown, the others' hidden until their type is chosen)."""
    types = list(ANALYSIS_TYPES.values())
    options = [
        f'          <option value="{escape(t.name)}">{escape(t.name)}</option>'
        for t in types
    ]
    fields = []
    for type_ in types:
        hidden = "" if type_ is types[0] else " hidden"
        for parameter in type_.parameters:
            name = escape(parameter.name)
            limits = f'min="{parameter.minimum}"'
            if parameter.maximum is not None:
                limits += f' max="{parameter.maximum}"'
            fields.append(
                f'      <label class="param" data-for="{escape(type_.name)}"{hidden}>{name}\n'
                f'        <input type="number" id="{name}" name="{name}" {limits} '
                f'value="{parameter.example}"></label>'
            )
    return template.replace("          <!-- types -->", "\n".join(options)).replace(
        "      <!-- parameters -->", "\n".join(fields)
    )


def _local_only(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(LOCAL_ONLY)
    return response
