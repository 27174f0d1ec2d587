"""kb.tools: the LangChain tools over the real knowledge base and the demo runner, and the offline example
(kb/agent_example.py)."""
import json

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from demos.runner import Runner
from kb import agent_example as example
from kb.tools import make_tools
from shared_app import real_kb


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    kb = real_kb(tmp_path_factory)
    return {t.name: t for t in make_tools(kb, Runner(tmp_path_factory.mktemp("tool-runs")))}


def test_without_a_runner_only_search_is_offered(tmp_path_factory):
    assert [t.name for t in make_tools(real_kb(tmp_path_factory))] == ["search_knowledge_base"]


def test_tool_schemas(tools):
    assert sorted(tools) == ["list_demos", "run_demo", "search_knowledge_base"]
    assert set(tools["search_knowledge_base"].args) == {"query", "article"}
    assert set(tools["run_demo"].args) == {"demo_id", "params"}


@pytest.mark.slow
def test_search_returns_numbered_citable_passages(tools):
    out = tools["search_knowledge_base"].invoke({"query": "pdb 怎么设置条件断点？"})
    first = out.split("\n", 1)[0]
    assert first.startswith("[1] 用 pdb 调试 Python") and "(article/python-pdb#" in first
    assert "[2] " in out


@pytest.mark.slow
def test_search_out_of_scope_says_so(tools):
    assert tools["search_knowledge_base"].invoke({"query": "今天北京的天气怎么样？"}) == "知识库中没有相关内容。"


def test_list_demos_gives_ids_and_bounds(tools):
    rows = {r["id"]: r for r in json.loads(tools["list_demos"].invoke({}))}
    max_len = next(p for p in rows["list-tuple"]["params"] if p["name"] == "max_len")
    assert {k: max_len[k] for k in ("type", "default", "min", "max", "choices")} == {
        "type": "int", "default": 80, "min": 8, "max": 20000, "choices": None}
    assert rows["mro"]["articles"] == ["python-inheritance-mro"]


@pytest.mark.slow
def test_run_demo_waits_and_reports_checks(tools):
    out = json.loads(tools["run_demo"].invoke({"demo_id": "mro"}))
    assert out["status"] == "passed" and out["passed"] is True
    assert out["checks"] and all(c["passed"] for c in out["checks"])


@pytest.mark.parametrize("args, message", [
    ({"demo_id": "nope"}, "unknown demo 'nope'"),
    ({"demo_id": "list-tuple", "params": {"max_len": 1}}, "must be ≥ 8"),
])
def test_run_demo_bad_input_is_a_message_not_a_crash(tools, args, message):
    assert message in json.loads(tools["run_demo"].invoke(args))["error"]


@pytest.mark.slow
def test_offline_agent_example_searches_and_runs_a_demo(tools):
    messages = example.run_agent(example.scripted_model(), list(tools.values()), example.QUESTION)
    tool_outputs = [m.content for m in messages if isinstance(m, ToolMessage)]
    assert len(tool_outputs) == 2
    assert "(article/python-inheritance-mro#" in tool_outputs[0]
    assert json.loads(tool_outputs[1])["status"] == "passed"
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls and "[1]" in messages[-1].content
