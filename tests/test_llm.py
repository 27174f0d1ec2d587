"""kb.llm: configuration from the environment, the citation filter, streaming from a real loopback server."""
import pytest

from kb.llm import (CitationFilter, LLMConfig, LLMError, build_messages, filter_citations, stream_chat,
                    stream_grounded)
from llm_server import FakeOpenAIServer

SECRET = "sk-test-SECRET-never-shown"


@pytest.fixture
def server():
    with FakeOpenAIServer() as s:
        yield s


def config_for(server: FakeOpenAIServer) -> LLMConfig:
    return LLMConfig(base_url=server.base_url, model=server.model, api_key=SECRET, timeout_s=10)


def test_from_env_unset_means_extractive():
    assert LLMConfig.from_env({}) is None


def test_from_env_reads_all_three_and_hides_the_key():
    cfg = LLMConfig.from_env({"KB_LLM_BASE_URL": "http://h:8000/v1/", "KB_LLM_MODEL": "qwen",
                              "KB_LLM_API_KEY": SECRET})
    assert (cfg.base_url, cfg.model, cfg.api_key) == ("http://h:8000/v1", "qwen", SECRET)
    assert SECRET not in repr(cfg) and SECRET not in str(cfg) and SECRET not in cfg.describe()
    assert cfg.scrub(f"bad key {SECRET}") == "bad key ***"


def test_from_env_half_configured_is_a_clear_error():
    with pytest.raises(LLMError, match="KB_LLM_MODEL is not set"):
        LLMConfig.from_env({"KB_LLM_BASE_URL": "http://h/v1"})


def test_missing_key_defaults_for_local_servers():
    assert LLMConfig.from_env({"KB_LLM_BASE_URL": "http://h/v1", "KB_LLM_MODEL": "m"}).api_key == "EMPTY"


@pytest.mark.parametrize("text, want, cited", [
    ("A[1]。B[2]。", "A[1]。B[2]。", [1, 2]),
    ("A[7]。B[2]。", "A。B[2]。", [2]),
    ("A[1, 9, 2]。", "A[1][2]。", [1, 2]),
    ("A【3】。", "A[3]。", [3]),
    ("A[3，3]", "A[3]", [3]),
    ("看 [文档](http://x) 和 a[i]", "看 [文档](http://x) 和 a[i]", []),
    ("列表 `xs[0]` 是第一项，MRO[1]", "列表 `xs[0]` 是第一项，MRO[1]", [1]),
    ("`m[i][5]` 与 [5][1]", "`m[i][5]` 与 [1]", [1]),
    ("```python\nprint(a [5])\n```\n见 [5]", "```python\nprint(a [5])\n```\n见 ", []),
])
def test_filter_citations(text, want, cited):
    f = CitationFilter({1, 2, 3})
    assert f.feed(text) + f.flush() == want
    assert f.cited == cited


def test_filter_handles_citations_split_over_tokens():
    tokens = ["生成器是", "惰性的[", "1", "]，而", "列表不是 [", "1", "2", "]。最后", "【", "3", "】"]
    f = CitationFilter({1, 3})
    pieces = [f.feed(t) for t in tokens] + [f.flush()]
    assert "".join(pieces) == "生成器是惰性的[1]，而列表不是 。最后[3]"
    assert f.cited == [1, 3] and f.dropped == [12]
    # Nothing that could still become a citation is shown early: "[" is held until "1]" arrives.
    assert pieces[1] == "惰性的" and pieces[2] == "" and pieces[3] == "[1]，而"


def test_filter_keeps_code_split_over_tokens():
    f = CitationFilter({1})
    tokens = ["代码：`", "`", "`py\nx = [", "9]\n`", "``\n结论[", "9][1]"]
    assert "".join(f.feed(t) for t in tokens) + f.flush() == "代码：```py\nx = [9]\n```\n结论[1]"


def test_filter_does_not_hold_unclosed_brackets_forever():
    f = CitationFilter({1})
    out = f.feed("[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11")
    assert out == "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11", "a long run that never closes is plain text"


def test_build_messages_numbers_the_context_and_keeps_recent_history():
    history = [(f"q{i}", f"a{i}") for i in range(5)]
    msgs = build_messages("问题？", ["第一段", "第二段"], history)
    assert msgs[0]["role"] == "system" and "[编号]" in msgs[0]["content"]
    assert [m["content"] for m in msgs[1:7]] == ["q2", "a2", "q3", "a3", "q4", "a4"]
    assert msgs[-1]["content"] == "资料：\n[1] 第一段\n\n[2] 第二段\n\n问题：问题？"


def test_stream_from_a_real_server_token_by_token(server):
    server.script(["你", "好", "！"])
    assert list(stream_chat(config_for(server), [{"role": "user", "content": "hi"}])) == ["你", "好", "！"]
    req = server.requests[0]
    assert req["stream"] is True and req["model"] == "stub-model"
    assert req["messages"] == [{"role": "user", "content": "hi"}]
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"


def test_grounded_stream_drops_invented_citations_end_to_end(server):
    server.script(["元组不可变", "[", "2", "]，列表可变[", "5]。", "见[1", "]"])
    f = CitationFilter(range(1, 3))
    out = list(stream_grounded(config_for(server), "区别？", ["列表……", "元组……"], citations=f))
    assert "".join(out) == "元组不可变[2]，列表可变。见[1]"
    assert len(out) >= 3, f"the answer must arrive in several increments, got {out}"
    assert f.cited == [2, 1] and f.dropped == [5]
    assert "[2] 元组……" in server.requests[0]["messages"][-1]["content"]


def test_server_error_becomes_llm_error_without_the_key(server):
    server.fail_with = 500
    with pytest.raises(LLMError) as info:
        list(stream_chat(config_for(server), [{"role": "user", "content": "hi"}]))
    assert server.base_url in str(info.value) and SECRET not in str(info.value)


def test_unreachable_endpoint_is_a_clear_error():
    cfg = LLMConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key=SECRET, timeout_s=2)
    with pytest.raises(LLMError, match="127.0.0.1:9") as info:
        list(stream_chat(cfg, [{"role": "user", "content": "hi"}]))
    assert SECRET not in str(info.value)


def test_filter_formats_links_and_escapes_html_outside_code():
    f = CitationFilter({1}, fmt=lambda n: f"[[{n}]](article/x#s{n})", escape_html=True)
    out = f.feed("<script>alert(1)</script> 见[1]，代码 `<b>` 与\n```html\n<i>[1]</i>\n```\n") + f.flush()
    assert out == "&lt;script>alert(1)&lt;/script> 见[[1]](article/x#s1)，代码 `<b>` 与\n```html\n<i>[1]</i>\n```\n"
