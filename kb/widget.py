"""The one-tag widget's routes: the script a blog page loads, and the posts' permalinks it maps pages with.

    /widget.js             kb/static/widget.js (floating button, panel, the chat's embed view in an iframe)
    /widget/pages.json     {"pages": {"/2024/03/05/my-post/": "my-post", ...}}: each post's path on the blog

Both are public, read-only and cross-origin by design (a blog on another host loads them): the JSON holds
only what the blog itself publishes (paths and slugs). Framing the chat from the blog's origin is allowed
by the CSP's frame-ancestors (KB_FRAME_ANCESTORS, kb/security.py). This module knows FastAPI, not gradio.
"""
from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

WIDGET_JS = resources.files("kb") / "static" / "widget.js"


def pages(kb) -> dict[str, str]:
    """Blog path -> slug for every article that has a page on the blog."""
    return {a.page: a.slug for a in kb.articles.values() if a.page}


def add_widget_routes(app: FastAPI, kb) -> None:
    @app.get("/widget.js")
    def widget_js():
        return Response(WIDGET_JS.read_text(encoding="utf-8"), media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*",
                                 "Cross-Origin-Resource-Policy": "cross-origin"})

    @app.get("/widget/pages.json")
    def widget_pages():
        return JSONResponse({"pages": pages(kb)}, headers={"Access-Control-Allow-Origin": "*",
                                                          "Cache-Control": "public, max-age=60"})
