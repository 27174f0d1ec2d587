"""The Gradio UI, split by tab the way text-generation-webui splits its `modules/ui_*.py`.

    state.py     ChatApp: the shared state (knowledge base, runner, LLM, admin password) and its handlers,
                 composed from one handler class per tab
    chat.py      the 问答 tab: layout, events, the chat handlers and their pure helpers
    articles.py  the 文章 tab
    demos.py     the 演示 tab: parameter forms and the demo handlers
    runs.py      RunPanel and stream_view: one demo run shown while it goes
    admin.py     the 知识库管理 tab
    api.py       the named gr.api endpoints for gradio_client

Each tab module has `create_ui(...)` (builds its blocks, returns the components others need) and
`create_event_handlers(...)` (wires them). app.py composes the tabs, mounts the routes and starts the
server. This package is the only place in kb/ that imports gradio.
"""
