"""LangChain tools: search the knowledge base, list the demos, run a demo — for any tool-calling agent.

    from kb.tools import make_tools
    tools = make_tools(kb, runner)               # [search_knowledge_base, list_demos, run_demo]
    tools[0].invoke({"query": "列表和元组有什么区别"})

`search_knowledge_base` goes through the engine's LangChain retriever (`KnowledgeBase.as_langchain_retriever`)
and returns numbered passages with their article, heading and link, so an agent can cite `[n]`; a question
the knowledge base cannot answer returns 知识库中没有相关内容 instead of passages. `run_demo` submits through
the same `demos.runner.Runner` the app uses, waits for the end and returns the checks as JSON.
This module imports langchain_core (about a second), so the app and the CLI import it only when asked.
"""
from __future__ import annotations

import json

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from kb.answer import NO_ANSWER, article_url


class SearchArgs(BaseModel):
    query: str = Field(description="用中文写的检索问题，例如“生成器和迭代器有什么区别”")
    article: str = Field("", description="读者正在看的文章 slug（可空）：同分时优先这篇文章")


class RunDemoArgs(BaseModel):
    demo_id: str = Field(description="演示的 id，先用 list_demos 查看，例如 mro、list-tuple")
    params: dict = Field(default_factory=dict, description="演示参数（可空，用默认值），例如 {\"max_len\": 40}")


def format_documents(docs) -> str:
    """Numbered passages `[n] title › heading (url)` + text, as an agent should cite them."""
    if not docs:
        return f"{NO_ANSWER}。"
    parts = []
    for n, doc in enumerate(docs, start=1):
        m = doc.metadata
        heading = " › ".join(m.get("heading_path", [])[1:]) or m.get("title", "")
        parts.append(f"[{n}] {m.get('title', '')} › {heading} ({article_url(m['slug'], m.get('anchor'))})\n"
                     f"{doc.page_content}")
    return "\n\n".join(parts)


def make_tools(kb, runner=None, k: int = 5, demo_timeout_s: float | None = None) -> list[StructuredTool]:
    """The knowledge-base tools; the demo tools only when a `runner` is given."""

    def search_knowledge_base(query: str, article: str = "") -> str:
        retriever = kb.as_langchain_retriever(k=k)
        retriever.prefer_slug = article or None
        return format_documents(retriever.invoke(query))

    tools = [StructuredTool.from_function(
        search_knowledge_base, name="search_knowledge_base", args_schema=SearchArgs,
        description="在技术博客知识库（Python、PyTorch、TensorFlow、扩散模型的文章）中检索与问题相关的段落；"
                    "返回带编号、文章标题、小节和链接的段落，回答时用 [编号] 引用。")]
    if runner is None:
        return tools

    def list_demos() -> str:
        from demos.present import list_demos as demo_rows

        return json.dumps(demo_rows(), ensure_ascii=False)

    def run_demo(demo_id: str, params: dict | None = None) -> str:
        from demos.registry import UnknownDemo
        from demos.spec import DemoParamError

        try:
            handle = runner.submit(demo_id, params or {}, timeout_s=demo_timeout_s)
        except (UnknownDemo, DemoParamError, ValueError) as exc:
            return json.dumps({"error": str(exc)}, ensure_ascii=False)
        result = handle.wait(handle.timeout_s + 30) or {}
        return json.dumps({"run_id": handle.id, "status": handle.status, "passed": handle.status == "passed",
                           "checks": result.get("checks", []), "metrics": result.get("metrics", {}),
                           "error": result.get("error")}, ensure_ascii=False)

    tools.append(StructuredTool.from_function(
        list_demos, name="list_demos",
        description="列出可运行的演示：id、标题、对应文章和参数范围（JSON）。"))
    tools.append(StructuredTool.from_function(
        run_demo, name="run_demo", args_schema=RunDemoArgs,
        description="运行一个演示并等待结束，返回每项检查是否通过（JSON）。"))
    return tools
