"""An agent that searches the knowledge base and launches a demo, with LangChain tools, fully offline.

    .venv/bin/python -m kb.agent_example       # KB_HOME or .kb/: builds the index on first use

The chat model here is langchain_core's `GenericFakeChatModel` playing a scripted tool-calling model, so
the example needs no endpoint: it asks for `search_knowledge_base`, then `run_demo`, then answers citing
`[1]`. The loop below is the standard tool-calling protocol (AIMessage.tool_calls -> ToolMessage). With a
real OpenAI-compatible model, the same tools go to LangChain's agent:

    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI
    agent = create_agent(ChatOpenAI(base_url=..., model=..., api_key=...), tools)
    agent.invoke({"messages": [("user", "C3 线性化是怎么算的？跑一下演示")]})
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from demos.runner import Runner
from kb.config import Config
from kb.engine import KnowledgeBase
from kb.tools import make_tools

QUESTION = "C3 线性化算法是怎么计算 MRO 的？顺便运行对应的演示验证一下。"


def scripted_model() -> GenericFakeChatModel:
    """A stand-in for a tool-calling LLM: search, then run the demo, then answer."""
    return GenericFakeChatModel(messages=iter([
        AIMessage("", tool_calls=[{"name": "search_knowledge_base", "id": "call-1",
                                   "args": {"query": "C3 线性化算法 计算 MRO"}}]),
        AIMessage("", tool_calls=[{"name": "run_demo", "id": "call-2", "args": {"demo_id": "mro"}}]),
        AIMessage("C3 线性化把类本身放在最前，再合并各基类的线性化和基类列表，每次取不出现在其他列表尾部的"
                  "第一个表头 [1]。演示 mro 的检查全部通过。"),
    ]))


def run_agent(model, tools, question: str, max_steps: int = 6) -> list:
    """The tool-calling loop: call the model, run the tools it asks for, feed the results back."""
    by_name = {t.name: t for t in tools}
    messages = [HumanMessage(question)]
    for _ in range(max_steps):
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            output = by_name[call["name"]].invoke(call["args"])
            messages.append(ToolMessage(output, tool_call_id=call["id"]))
    return messages


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")   # before the model loads: the example never goes online
    kb = KnowledgeBase(Config.from_env())          # KB_HOME or .kb/: builds the index on first use
    with tempfile.TemporaryDirectory() as runs:
        tools = make_tools(kb, Runner(Path(runs)))
        for message in run_agent(scripted_model(), tools, QUESTION):
            name = type(message).__name__
            text = message.content if isinstance(message.content, str) else str(message.content)
            calls = f" tool_calls={[c['name'] for c in message.tool_calls]}" if getattr(message, "tool_calls", None) else ""
            print(f"--- {name}{calls}\n{text[:600]}\n")


if __name__ == "__main__":
    main()
