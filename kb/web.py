"""Plain HTTP routes next to the Gradio app: article pages, KaTeX's files, the embed example page.

    /article/<slug>            the article as HTML (kb.render), each heading's id = Section.anchor
    /kb-assets/<file>          KaTeX CSS, fonts and auto-render, served from the copy inside gradio
    /kb-assets/article.js      the article page's only script (kb/static/article.js): starts KaTeX
    /web/embed.html            the example page embedding the chat (kb/static/embed.html)

KaTeX cannot be downloaded here; gradio ships it (hashed file names that change with its version), so the
files are found by pattern once, and only KaTeX's own files can be served from that folder. gradio's
package folder is located with `importlib.util.find_spec`, never imported: this module knows FastAPI and
where those files lie, not gradio (app.py mounts the Blocks next to these routes).
"""
from __future__ import annotations

import html
import importlib.util
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

from kb.render import ARTICLE_JS, article_page

EMBED_PAGE = resources.files("kb") / "static" / "embed.html"
ARTICLE_SCRIPT = resources.files("kb") / "static" / ARTICLE_JS
_KATEX_FILE = re.compile(r"(KaTeX_[A-Za-z0-9_-]+\.(woff2?|ttf)|katex-[A-Za-z0-9_-]+\.(css|js)|auto-render-[A-Za-z0-9_-]+\.js)")


def gradio_folder() -> Path | None:
    """The installed gradio package's folder, found without importing gradio; None when not installed."""
    spec = importlib.util.find_spec("gradio")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def katex_assets() -> tuple[Path | None, str | None, str | None]:
    """(folder, css file name, auto-render file name) of the KaTeX copy in gradio's frontend, or Nones."""
    package = gradio_folder()
    if package is None:
        return None, None, None
    folder = package / "templates" / "frontend" / "assets"
    css = sorted(folder.glob("katex-*.css"))
    js = sorted(folder.glob("auto-render-*.js"))
    if not (css and js):
        return None, None, None
    return folder, css[0].name, js[0].name


def add_routes(app: FastAPI, kb) -> None:
    folder, css, js = katex_assets()

    @app.get("/article/{slug}", response_class=HTMLResponse)
    def article(slug: str):
        found = kb.articles.get(slug)
        if found is None:
            return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>没有这篇文章</title>"
                                f"<p>没有 slug 为 “{html.escape(slug[:80])}” 的文章。<a href='../'>返回</a></p>",
                                status_code=404)
        demos = ""
        if found.demos:
            items = "、".join(f"<code>{html.escape(d)}</code>" for d in found.demos)
            demos = f'<p class="meta">相关演示：{items}（在应用的“演示”页运行）</p>'
        page = article_page(found, f"../kb-assets/{css}" if css else None, f"../kb-assets/{js}" if js else None,
                            demo_links=demos, script_url=f"../kb-assets/{ARTICLE_JS}")
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get(f"/kb-assets/{ARTICLE_JS}")
    def article_script():
        return Response(ARTICLE_SCRIPT.read_text(encoding="utf-8"), media_type="text/javascript",
                        headers={"Cache-Control": "no-cache"})

    @app.get("/kb-assets/{name}")
    def asset(name: str):
        if folder is None or not _KATEX_FILE.fullmatch(name) or not (folder / name).is_file():
            return Response("not found", status_code=404)
        return FileResponse(folder / name, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/web/embed.html", response_class=HTMLResponse)
    def embed_example():
        return HTMLResponse(EMBED_PAGE.read_text(encoding="utf-8"))
