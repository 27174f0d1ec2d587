"""The 文章 tab: pick an article and a section; the page itself is /article/<slug> (kb/web.py) in an iframe."""
from __future__ import annotations

import html

import gradio as gr


def create_ui(ui: dict, articles: list) -> None:
    """The 文章 tab's blocks, added to `ui`."""
    with gr.Tab("文章", id="articles"):
        choices = [(a.title, a.slug) for a in articles]
        ui["article_pick"] = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, label="文章")
        ui["article_section"] = gr.Dropdown(label="小节", choices=[])
        ui["article_frame"] = gr.HTML(elem_id="article-frame")


def create_event_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    pick, section, frame = ui["article_pick"], ui["article_section"], ui["article_frame"]

    def show_article(slug, anchor=None):
        article = state.kb.articles.get(slug)
        anchors = [(s.heading, s.anchor) for s in article.sections] if article else []
        src = html.escape(f"article/{slug}" + (f"#{anchor}" if anchor else ""), quote=True)
        return (gr.update(choices=anchors, value=anchor),
                f'<p><a href="{src}" target="_blank">在新标签页打开</a></p>'
                f'<iframe src="{src}" style="width:100%;height:75vh;border:1px solid #ddd;border-radius:6px"></iframe>')
    pick.change(show_article, [pick], [section, frame], api_visibility="private")
    section.select(lambda slug, anchor: show_article(slug, anchor)[1], [pick, section], [frame],
                   api_visibility="private")
    demo.load(show_article, [pick], [section, frame], api_visibility="private")
