"""kb.answer (and kb.followup, kb.sentences): grounded answers over the real articles and the real model.

One question per article must cite a real section of that article and offer its demo; refusals say so;
follow-ups inherit the topic; the LLM path runs end to end against a real OpenAI-compatible loopback server.
"""
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from kb import followup
from kb.answer import NO_ANSWER, answer, is_code_question, stream_answer
from kb.articles import load_article
from kb.errors import QueryError
from kb.llm import LLMConfig
from llm_server import FakeOpenAIServer
from shared_app import real_kb

ARTICLES = Path(__file__).resolve().parent.parent / "articles"
# One question per article, worded as a reader would ask it.
QUESTIONS = {
    "edm-diffusion-framework": "EDM 的网络预条件里 c_skip 和 c_out 是怎么设计的？",
    "diffusion-sde": "前向 SDE 里 VP、VE 和 sub-VP 三种形式有什么不同？",
    "python-list-tuple": "列表追加元素时为什么会过度分配内存？",
    "python-generators": "生成器的 send() 方法是做什么用的？",
    "python-mutable-immutable": "函数的可变默认参数有什么陷阱？",
    "python-gc": "Python 的分代回收是怎么工作的？",
    "python-pdb": "pdb 怎么设置条件断点？",
    "python-inheritance-mro": "C3 线性化算法是怎么计算 MRO 的？",
    "python-object-reference": "is 和 == 有什么区别？",
    "pytorch-ddp": "DistributedSampler 是怎么给每个进程切分数据的？",
    "tensorflow-tf-export": "TensorFlow 的 tf_export 装饰器做了什么？",
    "pytorch-autograd": "PyTorch 的 autograd 是怎么构建计算图并反向传播的？",
}
LINK = re.compile(r"\[\[(\d+)\]\]\((article/[^)#]+)#([^)]+)\)")


@pytest.fixture(scope="session")
def kb(tmp_path_factory):
    return real_kb(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("slug", sorted(QUESTIONS))
def test_each_article_is_cited_and_offers_its_demo(kb, slug):
    path = ARTICLES / f"{slug}.md"
    assert path.exists(), f"article {slug} is missing from articles/"
    article = load_article(path)
    a = answer(kb, QUESTIONS[slug])
    assert a.answerable, f"{slug}: refused: {a.notice}"
    assert a.citations, f"{slug}: no citation in {a.text!r}"
    first = a.citations[0]
    assert first.slug == slug, f"{slug}: first citation is {first.slug} › {first.heading}"
    anchors = {s.anchor for s in article.sections}
    for c in a.citations:
        cited = load_article(ARTICLES / f"{c.slug}.md")
        assert cited.section(c.anchor) is not None, f"citation {c.n} names no section: {c.slug}#{c.anchor}"
        assert c.heading == cited.section(c.anchor).heading
    assert first.anchor in anchors
    assert a.demos and a.demos[0] in article.demos, f"{slug}: demos {a.demos}, article links {article.demos}"


@pytest.mark.slow
def test_answer_text_cites_every_sentence_and_lists_sources(kb):
    a = answer(kb, QUESTIONS["python-list-tuple"])
    body, _, sources = a.text.partition("**来源**")
    assert sources, "the answer ends with a 来源 list"
    numbers = [int(n) for n, _, _ in LINK.findall(body)]
    assert numbers and set(numbers) == {c.n for c in a.citations}
    for c in a.citations:
        assert f"{c.n}. [{c.title} › {c.heading}]({c.url})" in sources
        assert c.url == f"article/{c.slug}#" + c.url.split("#", 1)[1]
    without_blocks = re.sub(r"```.*?```|\$\$.*?\$\$", "", body, flags=re.S)
    prose = [p for p in filter(None, (p.strip() for p in without_blocks.split("\n\n"))) if not p.startswith("|")]
    for paragraph in prose:
        assert LINK.search(paragraph) and paragraph.endswith(")"), f"a paragraph without citation: {paragraph!r}"


@pytest.mark.slow
def test_streaming_gives_increments_that_add_up(kb):
    stream = stream_answer(kb, "生成器和列表推导式有什么区别？")
    assert stream.answer.hits and stream.answer.text == ""
    pieces = list(stream)
    assert len(pieces) >= 2 and "".join(pieces) == stream.answer.text
    assert stream.answer.timings["compose"] >= 0 and stream.answer.timings["search"] > 0


@pytest.mark.slow
def test_code_question_keeps_a_code_block_from_the_cited_article(kb):
    a = answer(kb, "用代码演示一下 C3 线性化算法的实现")
    assert is_code_question(a.question)
    assert "```python" in a.text, a.text
    before_code = a.text.split("```python", 1)[0]
    n = int(LINK.findall(before_code)[-1][0])      # the citation right before the block is its source
    assert next(c for c in a.citations if c.n == n).slug == "python-inheritance-mro"


@pytest.mark.slow
@pytest.mark.parametrize("question", ["今天北京的天气怎么样？", "😀😀😀🎉"])
def test_out_of_scope_question_is_refused_plainly(kb, question):
    a = answer(kb, question)
    assert not a.answerable
    assert a.text.startswith(NO_ANSWER)
    assert "最接近的文章" in a.text and "](article/" in a.text, "the nearest articles are offered as links"
    assert a.citations == [] and a.demos == []


def test_empty_question_is_a_query_error(kb):
    with pytest.raises(QueryError):
        stream_answer(kb, "   ")


@pytest.mark.slow
def test_html_in_the_question_is_never_echoed_as_html(kb):
    a = answer(kb, "<script>alert(1)</script> 列表和元组有什么区别？")
    assert "<script" not in a.text


@pytest.mark.slow
def test_long_question_is_truncated_with_a_notice(kb):
    a = answer(kb, "列表和元组有什么区别？" + "啊" * 10_000)
    assert len(a.searched) == kb.config.max_question_chars
    assert a.notice and "问题过长" in a.notice


@pytest.mark.slow
def test_prefer_slug_favours_the_article_being_read(kb):
    a = answer(kb, "它和普通函数有什么区别？", prefer_slug="python-generators")
    assert a.searched.startswith("生成器 "), "on an article page, 它 is the article's subject"
    assert a.citations[0].slug == "python-generators", a.text


@pytest.mark.slow
def test_prefer_slug_does_not_turn_a_refusal_into_an_answer(kb):
    for q in ("😀😀😀🎉", "今天北京的天气怎么样？"):
        a = answer(kb, q, prefer_slug="python-generators")
        assert not a.answerable and a.searched == q, f"{q}: searched {a.searched!r}"


# Follow-ups ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("question, refers", [
    ("它和迭代器有什么区别？", True), ("那元组呢？", True), ("为什么？", True), ("这两者哪个快？", True),
    ("生成器是什么？", False), ("列表的内存布局是怎样的？", False), ("pdb 怎么设置断点", False),
])
def test_refers_back(question, refers):
    assert followup.refers_back(question) is refers


def test_key_terms_keep_whole_words():
    assert followup.key_terms("生成器是什么？") == ["生成器"]


def test_follow_up_chain_inherits_from_the_question_that_started_it():
    assert followup.contextualize("它和迭代器有什么区别？", ["生成器是什么？"]) == "生成器 它和迭代器有什么区别？"
    assert followup.contextualize("那元组呢？", ["列表的内存布局是怎样的？"]) == "列表 内存 布局 那元组呢？"
    assert followup.contextualize("为什么？", ["列表的内存布局是怎样的？", "那元组呢？"]) == "列表 内存 布局 元组 为什么？"
    assert followup.contextualize("pdb 怎么设置断点", ["生成器是什么？"]) == "pdb 怎么设置断点", "own topic: unchanged"


@pytest.mark.slow
def test_follow_up_without_llm_answers_about_the_previous_topic(kb):
    history = [("生成器是什么？", answer(kb, "生成器是什么？").text)]
    a = answer(kb, "它和迭代器有什么区别？", history=history)
    assert a.searched.startswith("生成器 "), a.searched
    assert a.citations[0].slug == "python-generators", a.text


# The LLM path, end to end over HTTP ------------------------------------------------------------------------

@pytest.fixture
def llm_server():
    with FakeOpenAIServer() as server:
        yield server


@pytest.mark.slow
def test_llm_answer_streams_with_valid_citations_only(kb, llm_server):
    llm_server.script(["列表会过度分配", "[", "1]，", "元组不会[", "7]。", "见 [2", "]。"])
    cfg = LLMConfig(base_url=llm_server.base_url, model=llm_server.model, api_key="k", timeout_s=10)
    stream = stream_answer(kb, QUESTIONS["python-list-tuple"], llm=cfg)
    pieces = list(stream)
    a = stream.answer
    assert a.mode == "llm" and len(pieces) >= 3
    first, second = a.citations[0], a.citations[1]
    assert [c.n for c in a.citations] == [1, 2]
    assert a.text.startswith(f"列表会过度分配[[1]]({first.url})，元组不会。见 [[2]]({second.url})。")
    assert "[7]" not in a.text and "**来源**" in a.text
    prompt = llm_server.requests[0]["messages"][-1]["content"]
    assert prompt.startswith("资料：\n[1] ") and f"问题：{QUESTIONS['python-list-tuple']}" in prompt
    assert a.demos and a.demos[0] == "list-tuple"


@pytest.mark.slow
def test_llm_rewrites_a_follow_up_before_retrieval(kb, llm_server):
    llm_server.script(["生成器和迭代器有什么区别？"], ["区别在于", "[1]。"])
    cfg = LLMConfig(base_url=llm_server.base_url, model=llm_server.model, timeout_s=10)
    a = answer(kb, "它和迭代器有什么区别？", history=[("生成器是什么？", "生成器是……")], llm=cfg)
    assert a.searched == "生成器和迭代器有什么区别？"
    rewrite = llm_server.requests[0]["messages"]
    assert "生成器是什么？" in rewrite[-1]["content"] and "它和迭代器有什么区别？" in rewrite[-1]["content"]
    assert a.citations and a.citations[0].slug == "python-generators"


@pytest.mark.slow
def test_llm_failure_falls_back_to_the_extractive_answer(kb, llm_server):
    llm_server.fail_with = 503
    cfg = LLMConfig(base_url=llm_server.base_url, model=llm_server.model, timeout_s=10)
    a = answer(kb, QUESTIONS["python-gc"], llm=cfg)
    assert a.mode == "extractive" and "LLM 不可用" in a.notice
    assert llm_server.base_url not in a.notice + a.text and "127.0.0.1" not in a.notice, "no internal URL in answers"
    assert a.citations[0].slug == "python-gc" and "**来源**" in a.text


@pytest.mark.slow
def test_refusal_does_not_ask_the_llm(kb, llm_server):
    cfg = LLMConfig(base_url=llm_server.base_url, model=llm_server.model, timeout_s=10)
    a = answer(kb, "今天北京的天气怎么样？", llm=cfg)
    assert a.text.startswith(NO_ANSWER) and llm_server.requests == []


def test_sentences_about_the_article_itself_are_not_quoted():
    from kb.sentences import split_sentences

    text = "本文从内存问题出发，逐步讲清楚生成器。生成器表达式返回一个生成器对象，元素在迭代时才逐个产生。"
    assert [s for _, s in split_sentences(text)] == ["生成器表达式返回一个生成器对象，元素在迭代时才逐个产生。"]


# Composition (kb.compose) on the real model ------------------------------------------------------------------

SHAPES = [   # (question, type, article of the first citation, terms one of which the answer must state)
    ("什么是叶子张量？", "what", "pytorch-autograd", ["is_leaf", "叶子张量"]),
    ("生成器为什么省内存？", "why", "python-generators", ["惰性", "常数级"]),
    ("pdb 怎么设置条件断点？", "how", "python-pdb", ["条件断点"]),
    ("is 和 == 有什么区别？", "diff", "python-object-reference", ["同一个对象"]),
    ("namedtuple 怎么用", "code", "python-list-tuple", ["namedtuple("]),
    ("分代回收的阈值默认是多少", "formula", "python-gc", ["700"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("question, qtype, slug, terms", SHAPES)
def test_answer_shape_per_question_type(kb, question, qtype, slug, terms):
    from kb.compose import LIST_SLACK, MAX_CHARS, answer_elements, dangling_references, question_type
    assert question_type(question) == qtype
    a = answer(kb, question)
    assert a.answerable and a.citations[0].slug == slug, a.text
    elements = answer_elements(a.text)
    prose = [t for kind, t in elements if kind == "prose" and not t.startswith(("示例代码", "公式", "输出"))]
    blocks = [t for kind, t in elements if kind == "block" and not t.startswith("```text")]
    chars = sum(len(t) for t in prose)
    # 450 characters, and up to LIST_SLACK more for the other items of a list the answer quotes (round 13: 分代回收的
    # 阈值 shows all three thresholds under `三个数字的含义并不相同：`, 525 characters).
    limit = MAX_CHARS + LIST_SLACK if re.search(r"^(?:-|\d+\.) ", a.text, re.M) else MAX_CHARS
    assert chars <= limit or len(prose) == 1, f"{chars} characters of prose: {a.text}"
    assert len(blocks) <= 1, f"at most one block (code output aside): {blocks}"
    assert any(t in a.text for t in terms), f"none of {terms} in {a.text}"
    opening = [kind for kind, _ in elements if kind != "heading"]
    assert opening[0] == "prose" and elements[0][0] in ("prose", "heading"), \
        "the answer opens with a sentence (or with the heading a list or a sentence hangs from)"
    sections = [s for c in a.citations for s in kb.articles[c.slug].sections]
    assert dangling_references(a.text, sections) == []
    if qtype == "code":
        assert blocks and blocks[0].startswith("```python"), "a code question shows code"


@pytest.mark.slow
def test_a_how_question_answered_by_a_list_opens_with_the_list_in_source_order(kb):
    """pdb 里怎么打印变量: the section's list of commands is the answer. It comes first, under the section's
    heading, as a Markdown list in the article's order (p, pp, a, display), not as a run-on paragraph."""
    a = answer(kb, "pdb 里怎么打印变量？")
    lines = re.sub(r"\[\[\d+\]\]\([^)]*\)", "", a.text).split("\n")
    assert lines[0] == "**打印变量：p、pp、a 与 display**：", a.text
    assert lines[1].startswith("- `p 表达式`（print）：求值并打印表达式的 `repr`"), a.text
    items = [line.split("`")[1] for line in lines if line.startswith("- `")]
    assert items[:2] == ["p 表达式", "pp 表达式"], items
    order = ["p 表达式", "pp 表达式", "a", "display 表达式"]
    assert [order.index(i) for i in items] == sorted(order.index(i) for i in items), f"not in source order: {items}"
    sections = [s for c in a.citations for s in kb.articles[c.slug].sections]
    from kb.compose import dangling_references
    assert dangling_references(a.text, sections) == []


@pytest.mark.slow
@pytest.mark.parametrize("question, slug", [("生成器为什么省内纯", "python-generators"),
                                            ("pdb 怎么设置条件断店", "python-pdb"),
                                            ("列表和元祖有什么区别", "python-list-tuple")])
def test_a_typo_does_not_refuse(kb, question, slug):
    a = answer(kb, question)
    assert a.answerable and a.citations[0].slug == slug, a.notice


@pytest.mark.slow
@pytest.mark.parametrize("question", ["Java 的内存模型 happens-before 是什么", "Kotlin 的扩展函数怎么写",
                                      "怎么做番茄炒蛋", "Go 的逃逸分析是什么"])
def test_out_of_scope_questions_from_other_domains_are_refused(kb, question):
    a = answer(kb, question)
    assert not a.answerable and a.text.startswith(NO_ANSWER) and a.citations == []


@pytest.mark.slow
def test_a_section_no_hit_points_at_is_cited_like_a_hit(kb):
    """The fitted composer also quotes the top article's other sections; each is cited with its own anchor,
    the article's title and the section's heading, and the answer links it."""
    outside = []
    for question in ("list 和 tuple 有啥区别", "DDP 多卡训练怎么启动", "PyTorch 的自动求导是怎么工作的"):
        a = answer(kb, question)
        hit_keys = {(h.chunk.slug, h.chunk.anchor) for h in a.hits}
        for c in a.citations:
            section = kb.articles[c.slug].section(c.anchor)
            assert section is not None, (question, c)
            assert (c.title, c.heading) == (kb.articles[c.slug].title, section.path[-1]), (question, c)
            assert f"[[{c.n}]]({c.url})" in a.text and c.url.endswith("#" + quote(c.anchor)), (question, c)
            if (c.slug, c.anchor) not in hit_keys:
                outside.append((question, c.anchor))
        assert [c.n for c in a.citations] == list(range(1, len(a.citations) + 1)), a.citations
    assert outside, "none of the three answers quoted a section outside the hits (the fitted model does for all three)"


@pytest.mark.slow
@pytest.mark.parametrize("question, fragment", [
    # Dev questions whose answer misses its gold sentence when the scorer reads the English term as typed (each
    # fails with kb.compose scoring the untranslated question); the articles write these terms in Chinese.
    ("how to make a dataclass hashable so it can be a dict key", "可以用 `@dataclass(frozen=True)`"),
    ("probability flow ODE 为什么是确定性的", "还能导出一个确定性的概率流 ODE"),
    ("how to export a function with tf_export without the @ syntax", "直接写 `tf_export('foo')(foo)` 来导出"),
])
def test_an_english_term_finds_the_sentence_that_names_it_in_chinese(kb, question, fragment):
    a = answer(kb, question)
    assert a.answerable and fragment in a.text, a.text


@pytest.mark.slow
def test_a_list_whose_lead_in_cannot_stand_answers_under_its_heading(kb):
    """多卡训练学习率要不要跟着放大 (dev): the two batch-size choices answer it, and their lead-in 这带来两种选择： leans
    on a chain too long to quote; the list now comes under the section's heading (before: never offered)."""
    a = answer(kb, "多卡训练学习率要不要跟着放大")
    body = re.sub(r"\[\[\d+\]\]\([^)]*\)", "", a.text)
    assert body.startswith("**批大小语义与学习率缩放**：\n1. 保持全局批大小不变："), body[:200]
    assert "这时梯度的统计性质与单卡训练相同，学习率可以不变" in body
    assert "这带来两种选择" not in body


@pytest.mark.slow
def test_a_rule_is_quoted_without_its_aside_about_the_example_above(kb):
    a = answer(kb, "mixin 应该写在继承列表的那边")
    assert "Mixin 写在基类列表的左边，主基类写在最右边" in a.text, a.text
    assert "如上例中" not in a.text and "上例" not in a.text


@pytest.mark.slow
@pytest.mark.parametrize("question, slug, fragment", [
    # Dev questions whose right article was not among the hits when retrieval read the English as typed
    # (`what is …` matched the articles' Python `is`; `ideal denoiser` no Chinese word).
    ("what is ZeroRedundancyOptimizer", "pytorch-ddp", "只把优化器状态分片"),
    ("what is the ideal denoiser in EDM", "edm-diffusion-framework", "理想去噪器就是以高斯似然为权重的加权平均"),
    ("how much memory does each element take inside a list or tuple object", "python-list-tuple", "每多一个元素，容器本身只多 8 字节"),
    # Round 8's glossary terms: `immortal objects` matched nothing and the generators article came first.
    ("what are immortal objects in Python 3.12", "python-gc", "3.12 引入了永生对象（immortal objects，PEP 683）"),
])
def test_a_wholly_english_question_is_searched_in_the_articles_chinese(kb, question, slug, fragment):
    a = answer(kb, question)
    assert a.answerable and a.citations[0].slug == slug, [(c.slug, c.heading) for c in a.citations]
    assert fragment in a.text, a.text


@pytest.mark.slow
def test_a_question_that_is_not_about_code_opens_with_a_statement_not_a_program(kb):
    """rank 0 只有 3 批数据…训练卡死了怎么办 (dev) scores the lead-in of the Join demo highest ("下面真正启动 2 个进程，让
    rank 0 只有 3 批数据…："); the answer opens with what the article says before the program, and the program
    still follows, after its lead-in."""
    a = answer(kb, "rank 0 只有 3 批数据、rank 1 有 5 批，训练卡死了怎么办")
    body = re.sub(r"\[\[\d+\]\]\([^)]*\)", "", a.text)
    first_line = body.split("\n", 1)[0]
    assert first_line.startswith("如果各进程分到的批数不一样"), body[:300]
    assert "`torch.distributed.algorithms.join.Join` 上下文管理器解决了这个问题" in first_line
    lead = body.index("下面真正启动 2 个进程，让 rank 0 只有 3 批数据、rank 1 有 5 批：\n\n```python\n")
    assert lead > body.index("上下文管理器解决了这个问题")


@pytest.mark.slow
@pytest.mark.parametrize("question, quoted, pointer", [
    ("生成器里 return 的值去哪了", "可以手动捕获 `StopIteration`，或者用 `yield from` 获取。", "下一节"),
    ("C3 的单调性是啥意思", "此外它还是单调的（monotonic）。", "下文详述"),
])
def test_an_answer_quotes_no_pointer_to_another_part_of_the_article(kb, question, quoted, pointer):
    """Dev questions whose answers quoted "用下一节的 `yield from` 获取" and "（monotonic，下文详述）": the reader has
    the answer, not the article around it."""
    a = answer(kb, question)
    assert quoted in a.text and pointer not in a.text, a.text


@pytest.mark.slow
def test_a_list_introduced_by_a_remark_on_a_programs_output_answers_under_its_heading(kb):
    """从输出可以读出几条规律： points at output the answer does not show; the list of rules comes under the
    section's heading instead (a dev question opened with that remark)."""
    a = answer(kb, "样本数除不尽进程数时 DistributedSampler 怎么处理")
    body = re.sub(r"\[\[\d+\]\]\([^)]*\)", "", a.text)
    assert body.startswith("**DistributedSampler：数据是怎么切分的**：\n- "), body[:200]
    assert "默认会从头部补齐若干个样本" in body and "从输出可以读出" not in body


@pytest.mark.slow
@pytest.mark.parametrize("question, slug, fragments", [
    ("pdb 里 c 和 r 是什么", "python-pdb", ["`c`（continue，也可写 `cont`）让程序一直运行", "`r`（return）则运行到当前函数即将返回"]),
    ("pdb 的 u 和 d 命令", "python-pdb", ["`u`（up）把“当前帧”往上移到调用者，`d`（down）往下移回被调用者"]),
    ("x += y 是怎么执行的", "python-mutable-immutable", ["增强赋值 `x += y` 会先尝试调用 `x.__iadd__(y)`（原地加法）"]),
])
def test_a_question_naming_one_letter_commands_or_an_operator_is_answered_about_them(kb, question, slug, fragments):
    """Round 13: the scorer's word overlaps counted only `pdb` (every sentence of the article holds it) or only 执行;
    pdb 里 c 和 r opened with the pipe section, x += y with the MRO article's `Python 在执行 class 语句时`."""
    a = answer(kb, question)
    assert a.answerable and a.citations[0].slug == slug, [(c.slug, c.heading) for c in a.citations]
    body = re.sub(r"\[\[\d+\]\]\([^)]*\)", "", a.text)
    assert all(f in body for f in fragments), body[:400]
