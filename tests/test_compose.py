"""kb.compose without a model: question types, sentence/block units, reference resolution, and the dangling-
reference check a finished answer is held to. The composer on the real model is tested in tests/test_answer.py."""
import pytest

from kb.articles import Section
from kb.compose import _group, answer_elements, dangling_references, question_type, section_units
from kb.sentences import Unit

SECTION = """生成器是惰性的。因此它很省内存。

下面的代码演示了这一点：

```python
g = (i for i in range(3))
```

这段代码创建了一个生成器。第二句话很普通，长度也够。
它只保存自己的栈帧。

| 类型 | 大小 |
|---|---|
| list | 56 |

本文到此结束，感谢阅读。
"""


@pytest.mark.parametrize("question, qtype", [
    ("生成器是什么？", "what"), ("生成器为什么省内存", "why"), ("pdb 怎么设置断点", "how"),
    ("is 和 == 有什么区别", "diff"), ("namedtuple 怎么用", "code"), ("分代回收的阈值默认是多少", "formula"),
    ("how do I set a breakpoint", "how"), ("S_churn", "what"), ("Euler–Maruyama 的收敛阶是多少", "formula"),
])
def test_question_type(question, qtype):
    assert question_type(question) == qtype


def test_section_units_keep_blocks_and_tables_whole():
    units = section_units(SECTION)
    kinds = [(u.kind, u.text[:8]) for u in units]
    assert kinds == [("prose", "生成器是惰性的。"), ("prose", "因此它很省内存。"), ("prose", "下面的代码演示了"),
                     ("block", "```pytho"), ("prose", "这段代码创建了一"), ("prose", "第二句话很普通，"),
                     ("prose", "它只保存自己的栈"), ("block", "| 类型 | 大"), ("prose", "本文到此结束，感")]
    assert units[7].text.count("\n") == 2, "the three table rows are one block"


def test_references_are_resolved_or_left_out():
    units = section_units(SECTION)
    texts = lambda g: None if g is None else [u.text[:6] for u in g]
    assert texts(_group(units, 0)) == ["生成器是惰性"]
    assert texts(_group(units, 1)) == ["生成器是惰性", "因此它很省内"], "a connective brings its predecessor"
    assert texts(_group(units, 2)) == ["生成器是惰性", "因此它很省内", "下面的代码演", "```pyt"], \
        "a pointer brings its block, and 演示了这一点 the point it demonstrates"
    assert _group(units, 4) is None, "a pointer back at code is left out"
    assert _group(units, 5) is None, "第二 needs the sentence before it, which points back: left out"
    assert _group(units, 6) is None, "它 needs 第二…, which cannot stand either: left out"
    assert _group(units, 8) is None, "the article talking about itself is left out"
    assert _group(units, 3) is None, "a block alone is not a sentence"


def test_dangling_references_in_finished_answers():
    sections = [Section("s", "S", 2, ("T", "S"), SECTION, 1)]
    link = "[[1]](article/x#s)"
    good = f"生成器是惰性的。{link}因此它很省内存。{link}\n\n下面的代码演示了这一点：{link}\n\n```python\ng = (i for i in range(3))\n```\n\n**来源**\n\n1. [x](y)"
    assert dangling_references(good, sections) == []
    assert answer_elements(good)[3] == ("block", "```python\ng = (i for i in range(3))\n```")
    bad = f"因此它很省内存。{link}下面的代码演示了这一点：{link}\n\n这段代码创建了一个生成器。{link}"
    reasons = dangling_references(bad, sections)
    assert [r.split(":")[0] for r in reasons] == [
        "opens with a connective without its predecessor", "points at a block that does not follow",
        "points back at something not shown", "opens with a connective without its predecessor"], reasons
    escaped = f"用 `a < b` 比较，a &lt; b 成立。{link}"
    assert answer_elements(escaped) == [("prose", "用 `a < b` 比较，a < b 成立。")]


# The fitted sentence scorer and the selection, without a model ------------------------------------------------

from kb.compose import HAND_PARAMS, Cand, Scored, _groups, candidates, select  # noqa: E402
from kb import sentence_model  # noqa: E402

A = "生成器是惰性的，元素在迭代时才逐个产生。它只保存自己的栈帧和局部变量。因此它很省内存，适合处理大文件。"
B = "列表一次性把所有元素放进内存。列表支持随机访问和切片操作。"
C = "垃圾回收器处理循环引用，引用计数处理其余对象。"


def _scored(rel_by_text, qtype="what", params=None):
    cands = [Cand("gen", "a", "生成器", 0, section_units(A), 0.8), Cand("gen", "b", "列表", 1, section_units(B), 0.6),
             Cand("gc", "c", "回收", 2, section_units(C), 0.5)]
    rel, groups = {}, {}
    for c, cand in enumerate(cands):
        for i, g in _groups(tuple(cand.units)).items():
            rel[(c, i)] = rel_by_text.get(cand.units[i].text[:4], -5.0)
            groups[(c, i)] = g
    return Scored(qtype, cands, rel, groups, {**HAND_PARAMS, **(params or {})})


def _texts(plan):
    return [(key, [p.text[:4] for p in pieces]) for key, pieces in plan.groups]


def test_select_opens_with_the_best_sentence_and_brings_what_it_needs():
    plan = select(_scored({"因此它很": 1.0, "生成器是": 0.5, "它只保存": 0.2}, params={"floor": 0.6, "fill_chars": 0}))
    assert _texts(plan)[0] == (("gen", "a"), ["生成器是", "它只保存", "因此它很"]), \
        "因此… brings 它只保存…, which brings the opening sentence"
    assert _texts(plan)[1:] == [(("gen", "b"), ["列表一次"])], \
        "under MIN_CHARS the answer continues with the best sentence of another section of the same article, not gc"


def test_select_keeps_the_top_article_unless_another_is_better_by_switch():
    rel = {"垃圾回收": 1.0, "列表一次": 0.5}
    kept = select(_scored(rel, params={"switch": 0.8, "floor": 0.1, "close_other": 0.0, "fill_chars": 0}))
    assert [key for key, _ in kept.groups] == [("gen", "b"), ("gen", "a")], \
        "0.5 + 0.8 > 1.0: the gc sentence loses and stays out (gen a only fills the answer up to MIN_CHARS)"
    switched = select(_scored(rel, params={"switch": 0.3, "floor": 0.1, "fill_chars": 0}))
    assert [key for key, _ in switched.groups] == [("gc", "c")], "1.0 >= 0.5 + 0.3: the other article opens"
    on_page = select(_scored(rel, params={"switch": 0.3, "floor": 0.1, "fill_chars": 0}), keep_article=True)
    assert [key for key, _ in on_page.groups][0] == ("gen", "b"), "on the top article's page the answer stays on it"


def test_select_respects_the_budget_and_the_section_limit():
    rel = {"生成器是": 1.0, "列表一次": 0.9, "列表支持": 0.9, "垃圾回收": 0.95}
    plan = select(_scored(rel, params={"floor": 10, "close_same": 10, "close_other": 10, "max_sections": 2,
                                       "fill_chars": 0}), max_chars=60)
    assert plan.prose_chars <= 60, plan.prose_chars
    assert _texts(plan) == [(("gen", "a"), ["生成器是", "它只保存"]), (("gc", "c"), ["垃圾回收"])], \
        "by score: gen a, then 它只保存… (its predecessor is already in: it continues that group), then gc c; " \
        "max_sections 2 is reached and 列表… (26 characters) no longer fits in 60"


def test_candidates_add_the_top_articles_other_sections_once():
    class H:
        def __init__(self, slug, anchor):
            self.chunk = type("C", (), {"slug": slug, "anchor": anchor, "text": A, "heading_path": ("T", anchor)})()
            self.dense_score, self.bm25_rank, self.dense_rank = 0.7, 1, 2
    hits = [H("gen", "a"), H("gc", "c"), H("gen", "a")]
    secs = {("gen", "a"): Section("a", "生成器", 2, ("T", "生成器"), A, 1),
            ("gc", "c"): Section("c", "回收", 2, ("G", "回收"), C, 1)}
    others = [secs[("gen", "a")], Section("b", "列表", 2, ("T", "列表"), B, 5)]
    cands = candidates(hits, secs, others)
    assert [(c.key, c.rank) for c in cands] == [(("gen", "a"), 0), (("gc", "c"), 1), (("gen", "b"), None)]
    assert cands[2].chunk_cos == 0.0 and cands[0].bm25_rank == 1


def test_features_are_columns_the_model_can_score():
    cands = _scored({}).cands
    prose = [(c, u) for c, cand in enumerate(cands) for u in cand.units if u.kind == "prose"]
    cos = [0.9, 0.5, 0.4, 0.3, 0.2, 0.6]
    X = sentence_model.features("生成器为什么省内存", "why", cands, prose, cos)
    col = {name: X[:, j] for j, name in enumerate(sentence_model.FEATURES)}
    assert X.shape == (6, len(sentence_model.FEATURES))
    assert list(col["cos_gap"]) == pytest.approx([0.0, -0.4, -0.5, -0.6, -0.7, -0.3])
    assert list(col["first"]) == [1, 0, 0, 1, 0, 1], "the first prose sentence of each section"
    assert list(col["hit"]) == [1, 1, 1, 1, 1, 1] and list(col["top_section"]) == [1, 1, 1, 0, 0, 0]
    assert list(col["same_article"]) == [1, 1, 1, 1, 1, 0]
    assert list(col["lexical"]) == pytest.approx([0.6, 0.0, 0.4, 0.2, 0.0, 0.0]), \
        "words 生成 成器 生成器 省 内存: the first sentence holds three of the five, the third two, 列表… 内存"
    assert list(col["connective"]) == [0, 1, 1, 0, 0, 0], "它… and 因此… open with a connective"
    assert list(col["neighbour_gap"]) == pytest.approx([-0.4, 0.0, -0.4, -0.7, -0.6, -0.5])


def test_the_shipped_sentence_model_matches_the_features():
    model = sentence_model.load_model("m3e-small@onnx")
    assert model is not None, "kb/sentence_model.json is missing or was fitted for other features"
    assert model.coef.shape == (len(sentence_model.FEATURES),) and set(model.params) == set(HAND_PARAMS)
    assert sentence_model.load_model("bge-small-zh") is None, "another embedding model falls back to the hand-set blend"


def test_a_sentence_about_the_formula_above_brings_the_formula_and_its_lead_in():
    text = "前向过程写成一个随机微分方程：\n\n$$\n\\mathrm dx = f\\,\\mathrm dt + g\\,\\mathrm dw\n$$\n\n其中 f 称为漂移系数，g 称为扩散系数。\n\n$$\ny = 1\n$$\n\n这样写的好处是简洁明了。"
    units = section_units(text)
    assert [u.kind for u in units] == ["prose", "block", "prose", "block", "prose"]
    group = _group(units, 2)
    assert [u.text[:4] for u in group] == ["前向过程", "$$\n\\", "其中 f"], "lead-in, its formula, then 其中…"
    assert _group(units, 4) is None, "这样… follows a formula that no lead-in brings: left out"
    sections = [Section("s", "S", 2, ("T", "S"), text, 1)]
    link = "[[1]](article/x#s)"
    answer = f"{group[0].text}{link}\n\n{group[1].text}\n\n{group[2].text}{link}\n\n**来源**\n\n1. [x](y)"
    assert dangling_references(answer, sections) == [], answer
    assert dangling_references(f"{group[2].text}{link}", sections) != [], "其中… alone still dangles"


SDE_SECTION = ("前向过程写成一个随机微分方程：\n\n$$\n\\mathrm dx = f\\,\\mathrm dt + g\\,\\mathrm dw\n$$\n\n"
               "其中 f 称为漂移系数，g 称为扩散系数。\n\n下面用 Euler–Maruyama 模拟这个过程：\n\n"
               "```python\nx = x + f * dt + g * dw\n```\n\n模拟的终点是标准正态分布。")


def test_a_question_that_asks_for_a_formula_gets_the_formula_not_the_simulation():
    cands = [Cand("sde", "f", "前向 SDE", 0, section_units(SDE_SECTION), 0.8)]
    rel, groups = {}, {}
    for i, g in _groups(tuple(cands[0].units)).items():
        rel[(0, i)] = {"下面用 E": 2.0, "前向过程": 1.5, "其中 f ": 1.0}.get(cands[0].units[i].text[:5], -5.0)
        groups[(0, i)] = g
    prm = {**HAND_PARAMS, "floor": 3.0, "fill_chars": 0}
    kinds = lambda plan: [(p.kind, p.text[:4]) for _, pieces in plan.groups for p in pieces]
    plain = select(Scored("formula", cands, rel, groups, prm))
    assert ("block", "```p") in kinds(plain) and not any(t.startswith("$$") for k, t in kinds(plain)), \
        "a number question (多少) may get the program the best sentence announces"
    asked = select(Scored("formula", cands, rel, groups, prm, wants_formula=True))
    assert kinds(asked) == [("prose", "前向过程"), ("block", "$$\n\\"), ("prose", "其中 f")], kinds(asked)
    from kb.compose import wants_formula
    assert wants_formula("前向 SDE 的公式是啥") and wants_formula("Fokker-Planck 方程怎么推") and wants_formula("the SDE equation")
    assert not wants_formula("gc 的阈值默认是多少")


# Lists and heading lead-ins ----------------------------------------------------------------------------------

LISTS = """以下操作会让引用计数加 1：

- 对象被创建并绑定到名字上，例如 `a = []`；
- 对象被赋值给另一个名字。它和原名字指向同一个对象。
- 对象被放进容器，例如 `lst.append(a)`。

引用计数降到 0 时对象立即被回收。
"""
OPENING_LIST = """- `p 表达式`（print）：求值并打印表达式的 `repr`。
- `pp 表达式`（pretty print）：用 `pprint` 模块格式化输出。
- `display 表达式`：登记一个监视表达式。`undisplay` 取消监视。

其实直接输入变量名也会打印它的值。
"""


def test_list_items_know_their_item_list_and_mark():
    units = section_units(LISTS)
    got = [(u.index, u.item, u.list_id, u.mark, u.text[:6]) for u in units]
    assert got == [(0, -1, -1, "", "以下操作会让"), (1, 1, 1, "-", "对象被创建并"), (2, 2, 1, "-", "对象被赋值给"),
                   (3, 2, 1, "-", "它和原名字指"), (4, 4, 1, "-", "对象被放进容"), (5, -1, -1, "", "引用计数降到")], got
    numbered = section_units("步骤如下：\n\n1. 安装依赖包。\n2. 运行测试命令。\n")
    assert [(u.item, u.mark) for u in numbered] == [(-1, ""), (1, "1."), (2, "2.")]


def test_a_list_item_brings_its_lead_in_and_a_continuation_its_item():
    units = section_units(LISTS)
    texts = lambda g: None if g is None else [u.text[:6] for u in g]
    assert texts(_group(units, 4)) == ["以下操作会让", "对象被放进容"], "an item brings the lead-in ending in ："
    assert texts(_group(units, 3)) == ["以下操作会让", "对象被赋值给", "它和原名字指"], \
        "a later sentence of an item brings the item's first sentence (and the lead-in)"
    assert texts(_group(units, 0)) == ["以下操作会让", "对象被创建并", "对象被赋值给", "它和原名字指", "对象被放进容"], \
        "a lead-in ending in ：brings its (short) list instead of being left out"
    opening = section_units(OPENING_LIST)
    assert [(u.kind, u.text[:6]) for u in _group(opening, 1, heading="打印变量：p、pp 与 display")] == [
        ("heading", "打印变量：p"), ("prose", "`pp 表达")], "a list that opens its section hangs from the heading"


def test_a_first_sentence_about_the_heading_gets_the_heading_as_lead_in():
    units = section_units("两者都支持负数索引：`-1` 表示最后一个元素。越界访问会抛出 `IndexError`。\n")
    assert _group(units, 0) is None, "两者… with no heading to lean on cannot stand"
    group = _group(units, 0, heading="索引与负数索引")
    assert [(u.kind, u.text[:4]) for u in group] == [("heading", "索引与负"), ("prose", "两者都支")]
    sections = [Section("idx", "索引与负数索引", 3, ("T", "索引与负数索引"), "两者都支持负数索引：`-1` 表示最后一个元素。越界访问会抛出 `IndexError`。\n", 1)]
    link = "[[1]](article/x#idx)"
    ok = f"**索引与负数索引**：两者都支持负数索引：`-1` 表示最后一个元素。{link}\n\n**来源**"
    assert answer_elements(ok)[:2] == [("heading", "索引与负数索引"), ("prose", "两者都支持负数索引：`-1` 表示最后一个元素。")]
    assert dangling_references(ok, sections) == []
    wrong = f"**切片**：两者都支持负数索引：`-1` 表示最后一个元素。{link}"
    assert dangling_references(wrong, sections) != [], "another heading does not resolve 两者"


def _scored_of(text, heading, rel_by_text, params=None):
    cands = [Cand("pdb", "p", heading, 0, section_units(text), 0.8)]
    rel, groups = {}, {}
    for i, g in _groups(tuple(cands[0].units), heading).items():
        rel[(0, i)] = rel_by_text.get(cands[0].units[i].text[:4], -5.0)
        groups[(0, i)] = g
    prm = {**HAND_PARAMS, "floor": 2.0, "fill_chars": 0, **(params or {})}
    return Scored("how", cands, rel, groups, prm)


def _plan_of(text, heading, rel_by_text, params=None):
    return select(_scored_of(text, heading, rel_by_text, params))


def test_a_list_is_quoted_in_source_order_under_its_lead_in_and_rendered_as_markdown():
    from kb.answer_markdown import pieces_markdown as _markdown

    plan = _plan_of(OPENING_LIST, "打印变量：p、pp 与 display",
                    {"`dis": 1.0, "`p 表": 0.9, "其实直接": 0.5, "`pp ": 0.4})
    pieces = plan.groups[0][1]
    assert [(p.kind, p.text[:5]) for p in pieces] == [
        ("heading", "打印变量："), ("prose", "`p 表达"), ("prose", "`pp 表"), ("prose", "`disp"), ("prose", "其实直接输")], \
        "the best sentence is an item: the list's chosen items follow the heading in source order, then the rest"
    md = _markdown(pieces, "[[1]](a#p)")
    assert md == ["**打印变量：p、pp 与 display**：\n"
                  "- `p 表达式`（print）：求值并打印表达式的 `repr`。[[1]](a#p)\n"
                  "- `pp 表达式`（pretty print）：用 `pprint` 模块格式化输出。[[1]](a#p)\n"
                  "- `display 表达式`：登记一个监视表达式。[[1]](a#p)",
                  "其实直接输入变量名也会打印它的值。[[1]](a#p)"], md
    sections = [Section("p", "打印变量：p、pp 与 display", 3, ("T", "打印变量：p、pp 与 display"), OPENING_LIST, 1)]
    text = "\n\n".join(md) + "\n\n**来源**"
    assert dangling_references(text, sections) == []
    assert [k for k, _ in answer_elements(text)] == ["heading"] + ["prose"] * 4


def test_numbered_items_are_renumbered_and_a_lead_in_sentence_keeps_its_list():
    from kb.answer_markdown import pieces_markdown as _markdown

    text = "排查顺序如下：\n\n1. 先看服务的错误日志。\n2. 再看服务的配置文件。\n3. 最后重启服务的进程。\n\n这样通常能找到原因所在。\n"
    plan = _plan_of(text, "排查", {"最后重启": 1.0, "先看服务": 0.8})
    md = _markdown(plan.groups[0][1], "[[1]](a#p)")
    assert md[0] == ("排查顺序如下：[[1]](a#p)\n1. 先看服务的错误日志。[[1]](a#p)\n2. 再看服务的配置文件。[[1]](a#p)\n"
                     "3. 最后重启服务的进程。[[1]](a#p)"), md
    sections = [Section("s", "排查", 3, ("T", "排查"), text, 1)]
    assert dangling_references("\n\n".join(md), sections) == []
    cut = "排查顺序如下：[[1]](a#p)\n\n其余略。"
    assert dangling_references(cut, sections) != [], "a lead-in ending in ：without its list dangles"


def test_a_clause_quoted_without_the_clause_after_it_ends_with_a_full_stop():
    """…为 2N−1；is one clause of an article sentence. Quoted with the clause that follows it in the article it
    keeps its ；; quoted without it (the next quoted sentence comes from elsewhere, or nothing follows) it ends
    the sentence with 。, so the answer does not read as unfinished. A list item keeps its ；, as lists write."""
    from kb.answer_markdown import pieces_markdown as _markdown

    def prose(text, index, item=-1):
        return Unit(index, "prose", text, item, 7 if item >= 0 else -1, "-" if item >= 0 else "")

    md = _markdown([prose("总 NFE 为 2N−1；", 4), prose("N 为 18 时正好是 35。", 5),
                    prose("Heun 的误差阶数是二；", 9), prose("纯 Euler 每步只评估一次。", 2),
                    prose("先评估起点的斜率；", 12, item=12), prose("最后一步只用 Euler；", 20)], "[1]")
    assert md == ["总 NFE 为 2N−1；[1]N 为 18 时正好是 35。[1]Heun 的误差阶数是二。[1]纯 Euler 每步只评估一次。[1]\n"
                  "- 先评估起点的斜率；[1]", "最后一步只用 Euler。[1]"], md
    assert _markdown([prose("误差阶数是二；", 3), Unit(4, "block", "$$x$$")], "[1]") == [
        "误差阶数是二。[1]", "$$x$$"], "a clause before a block of its own section ends too"
    section = Section("d", "detach", 2, ("T", "detach"), "detach() 返回的张量共享内存，修改一个另一个也变。另外，autograd "
                      "不允许原地修改需要梯度的叶子张量；在 torch.no_grad() 中则可以修改。\n", 1)
    quoted = "detach() 返回的张量共享内存，修改一个另一个也变。[1]另外，autograd 不允许原地修改需要梯度的叶子张量。[1]"
    assert dangling_references(quoted, [section]) == [], "the clause ended with 。 is still found after its predecessor"


def test_a_connective_sentence_continues_the_group_its_predecessor_is_in():
    """因此… needs 它只保存…, which is already in the answer with the opening sentence: it joins right after it
    (before, the overlap made it lose its place; gen b only fills the answer up to MIN_CHARS)."""
    plan = select(_scored({"它只保存": 1.0, "因此它很": 0.8, "生成器是": -5.0},
                          params={"floor": 2.0, "fill_chars": 0, "max_sections": 1}))
    assert _texts(plan)[0] == (("gen", "a"), ["生成器是", "它只保存", "因此它很"]), _texts(plan)
    text = "".join(p.text + "[[1]](a#a)" for p in plan.groups[0][1])
    assert dangling_references(text, [Section("a", "生成器", 2, ("T", "生成器"), A, 1)]) == []


def test_char_cost_makes_a_long_group_earn_its_room():
    """因此… scores 1.0 but brings its two predecessors (51 characters); 列表支持… scores 0.8 alone (14). Without
    a cost the long group takes the budget (70); at 2 logits per 100 characters the short sentence goes first and
    the long group no longer fits (the opening's article still fills with 它只保存…, which brings 生成器是…)."""
    rel = {"列表一次": 2.0, "因此它很": 1.0, "列表支持": 0.8}
    params = {"floor": 10, "close_same": 10, "fill_chars": 0, "max_sections": 3}
    plain = select(_scored(rel, params={**params, "char_cost": 0.0}), max_chars=70)
    assert _texts(plain) == [(("gen", "b"), ["列表一次"]), (("gen", "a"), ["生成器是", "它只保存", "因此它很"])]
    costed = select(_scored(rel, params={**params, "char_cost": 2.0}), max_chars=70)
    assert _texts(costed) == [(("gen", "b"), ["列表一次", "列表支持"]), (("gen", "a"), ["生成器是", "它只保存"])]
    assert (plain.prose_chars, costed.prose_chars) == (66, 64)


def test_a_subject_with_ze_contrasts_with_the_sentence_before():
    units = section_units("DP 是单进程多线程，受 GIL 限制。DDP 则在多进程之间只交换梯度。规则是每个进程一份模型。\n")
    assert [u.text[:4] for u in _group(units, 1)] == ["DP 是", "DDP "], "X 则… brings the sentence it contrasts with"
    assert [u.text[:4] for u in _group(units, 2)] == ["规则是每"], "规则 is a word, not a contrast"
    units = section_units("Heun 每步评估两次去噪器，NFE 为 2N−1。与之相比，纯 Euler 每步只评估一次，NFE 为 N。\n")
    assert [u.text[:4] for u in _group(units, 1)] == ["Heun", "与之相比"], "与之相比 compares with the sentence before"


def test_a_sentence_about_the_question_before_brings_the_question():
    """'Python 用 MRO 回答这个问题。' after the question the article asks (a question alone is never quoted)."""
    text = "Python 允许多重继承，这就带来一个问题：多个父类都定义了同名方法时，到底调用哪一个？Python 用方法解析顺序回答这个问题。它在类创建时计算好。\n"
    units = section_units(text)
    assert [u.kind for u in units] == ["skip", "prose", "prose"]
    group = _group(units, 1, heading="多重继承")
    assert [(u.kind, u.text[-6:]) for u in group] == [("prose", "调用哪一个？"), ("prose", "答这个问题。")]
    sections = [Section("mi", "多重继承", 2, ("T", "多重继承"), text, 1)]
    link = "[[1]](article/x#mi)"
    whole = f"Python 允许多重继承，这就带来一个问题：多个父类都定义了同名方法时，到底调用哪一个？{link}Python 用方法解析顺序回答这个问题。{link}"
    assert dangling_references(whole, sections) == []
    alone = f"Python 用方法解析顺序回答这个问题。{link}"
    assert dangling_references(alone, sections) == ["opens with a connective without its predecessor: Python 用方法解析顺序回答这个问题。"]
    later = section_units("引用计数处理不了循环引用。PEP 442 在 3.4 中解决了这个问题。\n")
    assert [u.text[:4] for u in _group(later, 1)] == ["引用计数", "PEP "], "这个问题 mid-section brings the sentence before"


@pytest.mark.parametrize("sentence, leans", [
    ("可以用 `__del__` 方法或 `weakref.finalize` 观察这一点。", True),
    ("Python 做不到这一点。", True),
    ("autograd 用版本计数器来发现这种情况：每个张量有一个 `_version`；", True),
    ("需要可修改的版本时用前者，需要可哈希的版本时用后者。", True),
    ("当 N 变大时，这个值趋近于 $2K$，几乎与进程数无关。", True),
    ("`estimator_export` 只在“导出到哪个 API”这一点上不同。", False),        # the point is named in the sentence
    ("`lst = lst + [3]` 与 `lst += [3]` 并不等价：前者创建新列表，后者原地修改。", False),
    ("当扩散系数只依赖时间（加性噪声，扩散模型正是这种情况）时，收敛阶提高到 1。", False),
    ("引用计数就存放在其中的 `ob_refcnt` 字段里。", True),                     # round 10
    ("前两个值已经被 `next()` 取走了，`list()` 只拿到剩下的两个。", True),
    ("每个对象都带有一个 `PyGC_Head`，其中的两个指针把对象串进双向链表。", False),  # its own clause comes first
    ("`torch.autograd.gradcheck` 把这个过程自动化了：它对每个输入做有限差分。", False),  # the colon says what it is
    ("斐波那契数列的每个数是前两个数之和。", False),
    ("在 `read` 里，它出现在 `co_names` 中，按全局名字查找。", True),       # 它 after an opening frame
    ("为了便于演示，它不解析命令行参数。", True),
    ("$r$ 因此是需要调的超参数。", True),
    ("对象释放后，它的块回到所在的池里。", False),                           # 它 is the clause's 对象
    ("由于名字只是引用，它本身没有类型。", False),
    ("理解它们的区别，是高效使用 pdb 的关键。", True),                       # 它 among the first words
    ("调用它不会执行函数体，而是立刻返回一个生成器对象。", True),
    ("再以 `run` 为参数调用这个实例，并把 `run` 原样返回。", True),          # 再: a step after the one before
    ("也可以直接在命令行用 `python -m timeit`。", True),                      # 也: besides the sentence before
    ("`gc.unfreeze()` 把它们放回最老的一代。", True),
])
def test_a_sentence_pointing_at_this_point_brings_the_sentence_before(sentence, leans):
    """这一点 / 这种情况 / 用前者…后者 / 这个值 inside a sentence point at the sentence before, like an opening 这 (round 9:
    'del 语句到底做了什么' opened with '可以用 `__del__` 方法或 `weakref.finalize` 观察这一点。' and the check let it pass)."""
    from kb.references import refers_back

    assert refers_back(sentence) is leans
    if leans:
        text = f"引用计数最大的优点是及时性。{sentence}\n"
        units = section_units(text)
        assert [u.text for u in _group(units, 1)] == ["引用计数最大的优点是及时性。", sentence]
        sections = [Section("rc", "计数归零", 2, ("T", "计数归零"), text, 1)]
        link = "[[1]](article/x#rc)"
        reasons = dangling_references(f"{sentence}{link}", sections)
        assert [r.split(":")[0] for r in reasons] == ["opens with a connective without its predecessor"], reasons
        assert dangling_references(f"引用计数最大的优点是及时性。{link}{sentence}{link}", sections) == []


def test_a_table_cell_with_a_semicolon_and_a_bold_sentence_cut_inside_stay_clean():
    table = "torchrun 为每个进程设置的环境变量如下：\n\n| 名字 | 含义 |\n|---|---|\n| `RANK` | 全局编号；弹性会合时由会合结果决定 |\n| `WORLD_SIZE` | 进程总数 |\n\n以上变量由 torchrun 设置。\n"
    units = section_units(table)
    assert [u.kind for u in units] == ["prose", "block", "prose"], [(u.kind, u.text) for u in units]
    assert units[1].text.splitlines()[2] == "| `RANK` | 全局编号；弹性会合时由会合结果决定 |"
    bold = section_units("两个有代表性的结论：\n\n- **DDIM 是概率流 ODE 的一阶解法。** 它的确定性更新正是 Euler 步。\n")
    assert [u.text for u in bold] == ["两个有代表性的结论：", "DDIM 是概率流 ODE 的一阶解法。", "它的确定性更新正是 Euler 步。"]


def test_a_sentence_linked_back_only_by_a_marker_is_quoted_without_it():
    """'可以看到…' after a program's output and '因此…' after a sentence that cannot stand state their fact on
    their own once the marker goes; pronouns and contrasts (它, 这, 但) still need what they point at."""
    text = ("下面的代码打印容量：\n\n```python\nprint(1)\n```\n\n可以看到容量按 0、4、8、16 的节奏增长。这样追加的均摊代价是常数。\n\n"
            "上面的例子很短。所以用 gradcheck 时请始终把输入转成 float64。因此它很省内存。但是这种写法在多线程下会失败。\n")
    units = section_units(text)
    assert [u.kind for u in units] == ["prose", "block", "prose", "prose", "prose", "prose", "prose", "prose"]
    texts = lambda g: None if g is None else [u.text for u in g]
    assert texts(_group(units, 2)) == ["容量按 0、4、8、16 的节奏增长。"], "可以看到 points at the output: dropped"
    assert texts(_group(units, 3)) == ["容量按 0、4、8、16 的节奏增长。", "这样追加的均摊代价是常数。"], "这样 brings it"
    assert texts(_group(units, 5)) == ["用 gradcheck 时请始终把输入转成 float64。"], "所以 without 上面…"
    assert texts(_group(units, 6)) == ["用 gradcheck 时请始终把输入转成 float64。", "因此它很省内存。"], "因此它… brings it"
    assert _group(section_units("因此它很省内存，也很快。\n"), 0) is None, "它 still needs what it points at"
    assert _group(section_units("但是这种写法在多线程下会失败。\n"), 0) is None, "但是这…: a contrast is no marker"
    assert _group(section_units("上面的代码打印了 3，可以看到它很快。\n"), 0) is None, "上面 points back mid-sentence"
    similar = section_units("最后一行展示了一个例外。类似地，`gradgradcheck` 可以检查二阶导数。\n")
    assert texts(_group(similar, 1)) == ["`gradgradcheck` 可以检查二阶导数。"], "类似地 after a sentence that cannot stand"
    last = section_units("```python\nprint(add.__name__)\n```\n\n另一个值得注意的现象是最后一行：`add.__name__` 变成了 `wrapper`。"
                         "最后一行说明生成器对象的大小与元素个数无关。以第一行为例：循环执行了 6 次。\n")
    assert texts(_group(last, 1)) == ["`add.__name__` 变成了 `wrapper`。"], "what the last line shows, after the colon"
    assert _group(last, 2) is None and _group(last, 3) is None, "a line of the output above, and no colon to cut at"
    example = section_units("```python\nf('3')\n```\n\n注意最后一例：类型注解 `y: int` 在运行时不做任何检查。\n")
    assert texts(_group(example, 1)) == ["类型注解 `y: int` 在运行时不做任何检查。"], "the last example, after the colon"
    taken = section_units("```text\n10 20\n[30, 40]\n```\n\n注意最后一行：前两个值已经被 `next()` 取走了，`list()` 只拿到剩下的两个。\n")
    assert _group(taken, 1) is None, "after the colon the fact still points at the output (round 10)"
    hazard = section_units("```python\nclass LoggingDict(dict): ...\n```\n\n不过上面的 `LoggingDict` 有一个隐患：内置的 `dict` "
                           "是用 C 实现的，`update()` 在内部直接写入，不会调用子类的 `__setitem__`。这个例子清楚地表明："
                           "“Python 3 使用广度优先”是错误的。本文先讲共同点，再讲后果：为什么空列表比空元组大。\n")
    assert [texts(_group(hazard, i)) for i in (1, 2)] == [
        ["内置的 `dict` 是用 C 实现的，`update()` 在内部直接写入，不会调用子类的 `__setitem__`。"],
        ["“Python 3 使用广度优先”是错误的。"]], "only the lead-in before the colon points at the example"
    assert _group(hazard, 3) is None, "本文…： announces the article's plan; what follows is a list of topics"
    assert [u.text for u in units][2:4] == ["可以看到容量按 0、4、8、16 的节奏增长。", "这样追加的均摊代价是常数。"], "units untouched"
    sections = [Section("s", "S", 2, ("T", "S"), text, 1)]
    link = "[[1]](article/x#s)"
    quoted = f"容量按 0、4、8、16 的节奏增长。{link}这样追加的均摊代价是常数。{link}用 gradcheck 时请始终把输入转成 float64。{link}因此它很省内存。{link}"
    assert dangling_references(quoted, sections) == []
    assert dangling_references(f"因此它很省内存。{link}", sections) == [
        "opens with a connective without its predecessor: 因此它很省内存。"]


def test_a_clause_after_a_semicolon_is_no_extra_link_of_a_chain():
    """Round 10: '需要它时，可以手动捕获 `StopIteration`' leans on '`for` 循环会忽略这个值；', a clause of the same sentence, which
    leans on '它不会…', which leans on the section's first sentence: two links of the chain, not three."""
    units = section_units("生成器函数里也可以写 `return value`。它不会把值直接交给调用者，而是附在 `StopIteration` 的 `value` 上。"
                          "`for` 循环会忽略这个值；需要它时，可以手动捕获 `StopIteration`。\n")
    assert [u.text[:6] for u in _group(units, 3)] == ["生成器函数里", "它不会把值直", "`for` ", "需要它时，可"]
    three = section_units("生成器函数里也可以写 `return value`。它不会把值直接交给调用者。这个值会被忽略。因此需要它时可以捕获。\n")
    assert _group(three, 3) is None, "three links of full sentences are still too many"


def test_a_short_step_of_a_series_of_clauses_comes_with_the_clauses_before_it():
    """Round 10: '引用计数有哪些缺点' opened with '一个引用失效，计数减 1；', one step of a series."""
    units = section_units("原理非常直观。新增一个引用，计数加 1；一个引用失效，计数减 1；计数变为 0，说明再也没有人能访问这个对象。\n")
    assert [u.text for u in _group(units, 2)] == ["新增一个引用，计数加 1；", "一个引用失效，计数减 1；"]
    assert [u.text for u in _group(units, 1)] == ["新增一个引用，计数加 1；"], "the first step opens the series"
    long = section_units("原理非常直观。先把每个对象的计数复制到临时字段里；集合内部的引用被一一减去，剩下的就是外部引用；\n")
    assert [u.text for u in _group(long, 2)] == [long[2].text], "a clause with a fact of its own stands"


def test_a_semicolon_inside_a_parenthesis_cuts_neither_the_sentence_nor_the_answer():
    """Round 10: '它们默认沿着继承关系判断（…中；类可以通过元类…定制这个判断…），第二个参数…' was quoted as two halves,
    each with an unmatched parenthesis ('类可以通过…属性），第二个参数…' opened an answer)."""
    text = ("`isinstance` 判断对象是否是某个类的实例。它们默认沿着继承关系判断（对普通类来说就是检查 MRO；"
            "类可以通过元类定制这个判断），第二个参数可以是元组。另一句（不带分号）。\n")
    units = section_units(text)
    assert [u.text for u in units] == ["`isinstance` 判断对象是否是某个类的实例。",
                                       "它们默认沿着继承关系判断（对普通类来说就是检查 MRO；类可以通过元类定制这个判断），第二个参数可以是元组。",
                                       "另一句（不带分号）。"]
    sections = [Section("s", "S", 2, ("T", "S"), text, 1)]
    link = "[[1]](article/x#s)"
    quoted = f"{units[0].text}{link}{units[1].text}{link}"
    assert answer_elements(quoted) == [("prose", units[0].text), ("prose", units[1].text)]
    assert dangling_references(f"{units[0].text}{link}{units[1].text}{link}", sections) == []
    assert dangling_references(f"{units[1].text}{link}", sections) == [
        "opens with a connective without its predecessor: " + units[1].text[:40]]


def test_a_gold_fragment_opening_with_a_marker_is_found_in_the_detached_quote():
    from kb.answer_eval import has_gold

    answer = "容量按 0、4、8、16 的节奏增长：追加第 1 个元素时一次分配 4 个槽位。"
    assert has_gold(answer, "可以看到容量按 0、4、8、16 的节奏增长"), "quoted without 可以看到"
    assert has_gold(answer, "一次分配 4 个槽位"), "a plain fragment"
    assert not has_gold(answer, "可以看到容量按 0、4、8、16、24 的节奏增长"), "other content"
    assert not has_gold("它不再增长。", "所以它不再增长"), "所以它…: 它 needs what it points at, no detached form"


SPLIT = ("EDM 的出发点是解耦。论文把模型拆成以下几个部件：\n\n1. 加噪过程：用两个函数刻画。\n2. 采样器：一阶还是二阶求解器。\n"
         "3. 训练配方：噪声水平的分布。\n\n这种拆分带来的好处是可以单独替换采样器。论文最终只用 35 次网络评估就得到最好的结果。\n")


def test_a_sentence_continuing_a_list_moves_with_the_list_that_opens_the_answer():
    """Two chosen items pull their list to the front; 这种拆分… continues the last item and must come along
    (before, it stayed behind the opening sentence, a connective without its predecessor)."""
    plan = _plan_of(SPLIT, "统一框架", {"论文最终": 8.0, "采样器：": 4.6, "训练配方": 4.5, "这种拆分": 4.4},
                    params={"floor": 6.0, "char_cost": 0.5})
    assert [p.text[:4] for p in plan.groups[0][1]] == ["论文把模", "加噪过程", "采样器：", "训练配方", "这种拆分", "论文最终"], \
        "and the list is whole (round 13): 加噪过程 comes with its lead-in"
    sections = [Section("p", "统一框架", 2, ("T", "统一框架"), SPLIT, 1)]
    from kb.answer_markdown import pieces_markdown
    text = "\n\n".join(pieces_markdown(plan.groups[0][1], "[[1]](a#p)"))
    assert dangling_references(text, sections) == []


def test_a_caller_that_can_see_a_change_points_back_at_nothing():
    """可以看到 points back at output only after it (从输出可以看到, 运行后可以看到) or opening a sentence;
    调用方可以看到 ("the caller can see") is a plain statement."""
    from kb.references import BACKWARD

    assert not BACKWARD.search("在函数内修改参数所引用的可变对象，调用方可以看到，因为双方共享同一个对象；")
    for s in ("从输出可以看到，每种情况下只有一个。", "运行后可以看到计数在增长。", "可以看到容量按 0、4、8 增长。", "结果可以看到两者相同。"):
        assert BACKWARD.search(s), s


def test_a_function_s_output_is_not_the_output_above():
    """输出是… after a program is its output; "它的输入是…，输出是…" says what a function returns and stands, with the
    formula it runs into."""
    from kb.references import BACKWARD, _group

    for s in ("输出是 `[1, 2, 3]`。", "运行这段程序，输出为 3。"):
        assert BACKWARD.search(s), s
    text = ("EDM 引入去噪器 $D(x;\\sigma)$：它的输入是带噪样本，输出是对干净数据的估计，训练目标就是最小化 L2 去噪误差\n\n"
            "$$\n\\|D(y+n;\\sigma)-y\\|^2\n$$\n")
    assert not BACKWARD.search(text.split("\n")[0])
    units = section_units(text)
    assert [u.kind for u in _group(units, 0)] == ["prose", "block"], "the definition stands and brings its formula"


def test_an_aside_pointing_back_is_dropped_and_the_sentence_quoted():
    """'（如上例中 …）' inside a sentence is an aside: without it the rule stands on its own; a back reference
    outside the parentheses still leaves the sentence out."""
    text = ("```python\nclass LoggingDict(LoggingDictMixin, dict): pass\n```\n\n"
            "使用 Mixin 的规则：Mixin 写在基类列表的左边，主基类写在最右边（如上例中 `LoggingDictMixin` 把调用转交给 `dict`）。"
            "上面的代码（见 `dict`）打印了两行。\n")
    units = section_units(text)
    texts = lambda g: None if g is None else [u.text for u in g]
    assert texts(_group(units, 1)) == ["使用 Mixin 的规则：Mixin 写在基类列表的左边，主基类写在最右边。"]
    assert _group(units, 2) is None, "上面的代码 is outside the parentheses"
    sections = [Section("m", "Mixin", 2, ("T", "Mixin"), text, 1)]
    assert dangling_references("使用 Mixin 的规则：Mixin 写在基类列表的左边，主基类写在最右边。[[1]](a#m)", sections) == []
    chain = "每个指针占 8 字节（上面 4 个元素正好多出 32 字节）。因此容器本身只多 8 字节。\n"
    units = section_units(chain)
    assert texts(_group(units, 1)) == ["每个指针占 8 字节。", "因此容器本身只多 8 字节。"]
    quoted = "每个指针占 8 字节。[[1]](a#c)因此容器本身只多 8 字节。[[1]](a#c)"
    assert dangling_references(quoted, [Section("c", "C", 2, ("T", "C"), chain, 1)]) == [], \
        "the quote without its aside is the predecessor of 因此…"


def test_a_list_whose_lead_in_cannot_stand_hangs_from_the_heading():
    """'这带来两种选择：' leans on a chain too long to quote: the section's heading introduces the list instead,
    and a later sentence of an item (这时…) still brings its item's first sentence."""
    text = ("八张卡一次处理 256 个样本。因此梯度是平均值。相应地，迭代次数变成 1/N。这带来两种选择：\n\n"
            "- 保持全局批大小不变：每个进程的批大小设为 1/N。这时学习率可以不变。\n"
            "- 保持每卡批大小不变：全局批大小变为 N 倍。\n")
    units = section_units(text)
    kinds = lambda g: None if g is None else [(u.kind, u.text[:6]) for u in g]
    assert _group(units, 3) is None, "the lead-in itself cannot stand"
    assert _group(units, 5) is None, "without a heading the items cannot either"
    assert kinds(_group(units, 5, heading="批大小语义与学习率缩放")) == [
        ("heading", "批大小语义与"), ("prose", "保持全局批大"), ("prose", "这时学习率可")]
    sections = [Section("b", "批大小语义与学习率缩放", 2, ("T", "批大小语义与学习率缩放"), text, 1)]
    answer = "**批大小语义与学习率缩放**：\n- 保持全局批大小不变：每个进程的批大小设为 1/N。这时学习率可以不变。[[1]](a#b)"
    assert dangling_references(answer, sections) == []


def test_a_short_lead_in_brings_the_sentence_before_it_or_the_heading():
    """Round 10: `DDP 保存模型应该保存 module.state_dict 吗` opened with '几个要点：' and its list; the sentence before says what
    the points are about. After a program's output ('逐条对照输出：') the heading introduces the list; a bold label stays."""
    kinds = lambda g: None if g is None else [(u.kind, u.text[:6]) for u in g]
    points = section_units("所有进程的参数完全一致，因此检查点只需要保存一份。几个要点：\n\n- 保存 `module` 的 `state_dict`。\n- 加载时指定 `map_location`。\n")
    assert kinds(_group(points, 2, heading="检查点保存与加载")) == [
        ("prose", "所有进程的参"), ("prose", "几个要点："), ("prose", "保存 `mo")]
    output = section_units("```text\nTrue\n```\n\n逐条对照输出：\n\n- `a is b` 为 `True`：说明是同一个对象。\n")
    assert kinds(_group(output, 2, heading="验证是同一个对象")) == [("heading", "验证是同一个"), ("prose", "`a is ")]
    label = section_units("**优点**：\n\n- 及时：计数归零立即回收。\n")
    assert kinds(_group(label, 1, heading="引用计数的优点与代价")) == [("prose", "**优点**"), ("prose", "及时：计数归")]


def test_an_ordinal_is_a_marker_unless_the_point_leans_on_the_step_before():
    """其二，… / 第二，… enumerate points that state their own fact; 第二，…这个对象 is a step of a sequence."""
    from kb.references import detach

    assert detach("其二，在相同 NFE 下比较更公平：Heun 的误差约为 0.042。") == "在相同 NFE 下比较更公平：Heun 的误差约为 0.042。"
    assert detach("第二，函数对象有自己的 `__dict__`，可以存储任意属性。") == "函数对象有自己的 `__dict__`，可以存储任意属性。"
    assert detach("第二，把名字 `a` 绑定到这个对象上。") is None
    assert detach("第一是环境限制，容器里没有终端。") is None, "第一是… is no ordinal marker"
    assert detach("其次，把结果写回磁盘上的文件。") is None, "其次 is a step, not an ordinal"


def test_a_later_sentence_of_a_list_item_brings_the_items_first_sentence_only():
    """后续的 DPM-Solver++… continues the item DPM-Solver 利用… but not the sentences between them, which it does not
    lean on: they stay out unless chosen, so a long item does not make its last sentence expensive."""
    text = ("两个代表性的结论：\n\n- DDIM 是概率流 ODE 的一阶解法。\n"
            "- DPM-Solver 利用 ODE 的半线性结构。Lu 等人把时间变量换成半对数信噪比，做泰勒展开。"
            "DPM-Solver 之所以少步数也能采样，是因为误差只来自非线性部分。后续的 DPM-Solver++ 改用数据预测参数化。\n")
    units = section_units(text)
    texts = lambda g: None if g is None else [u.text[:6] for u in g]
    assert texts(_group(units, 5)) == ["两个代表性的", "DPM-So", "后续的 DP"]
    sections = [Section("d", "DPM", 2, ("T", "DPM"), text, 1)]
    answer = "两个代表性的结论：\n- DPM-Solver 利用 ODE 的半线性结构。[[1]](a#d)后续的 DPM-Solver++ 改用数据预测参数化。[[1]](a#d)"
    assert dangling_references(answer, sections) == []


def test_a_question_asking_for_a_fix_marks_the_sentences_stating_one():
    units = section_units("训练卡死了，进程一直等待。解决办法是用 Join 上下文管理器包住训练循环。"
                          "先跑完的进程会陪着别人做空的 all-reduce。\n")
    cands = [Cand("ddp", "j", "不均匀的输入：Join", 0, units, 0.8)]
    prose = [(0, u) for u in units if u.kind == "prose"]
    col = lambda q: list(sentence_model.features(q, "how", cands, prose, [0.8, 0.7, 0.6])[
        :, sentence_model.FEATURES.index("remedy")])
    assert col("rank 0 只有 3 批数据，训练卡死了怎么办") == [0, 1, 0], "解决办法是… states the fix"
    assert col("how to fix a DDP job that 卡死") == [0, 1, 0]
    assert col("Join 是什么") == [0, 0, 0], "no fix asked for: the feature stays off"


@pytest.mark.parametrize("sentence, quoted", [
    ("此外它还是单调的（monotonic，下文详述）。", "此外它还是单调的（monotonic）。"),
    ("用 `append` 逐个追加出来的列表会有过度分配的空槽，差距会更大（见下文）。", "用 `append` 逐个追加出来的列表会有过度分配的空槽，差距会更大。"),
    ("下面用 Euler–Maruyama 模拟 VP SDE（下一节详细介绍）的前向过程：", "下面用 Euler–Maruyama 模拟 VP SDE 的前向过程："),
    ("想让统计量真正来自全局，应当用后文提到的 `SyncBatchNorm`；", "想让统计量真正来自全局，应当用 `SyncBatchNorm`；"),
    ("必须显式地把调用链串起来，后文的 `super()` 就是为此设计的。", "必须显式地把调用链串起来，`super()` 就是为此设计的。"),
    ("结合上一节“目标单位方差”的设计，损失都是同一个量级。", "结合“目标单位方差”的设计，损失都是同一个量级。"),
    ("函数内部的规则不同，下一节专门讲。", "函数内部的规则不同。"),
    ("这种装饰器会改变名字绑定的对象，而后面会看到，`tf_export` 属于另一类。", "这种装饰器会改变名字绑定的对象，而 `tf_export` 属于另一类。"),
    ("ImageNet-64 的最好结果（FID 1.36）用的是后文的随机采样器，走 256 步。", "ImageNet-64 的最好结果（FID 1.36）用的是随机采样器，走 256 步。"),
    ("前面已经说过，从 $\\sigma_{N-1}$ 用 Euler 一步走到 0 的结果恰好就是去噪器输出。", "从 $\\sigma_{N-1}$ 用 Euler 一步走到 0 的结果恰好就是去噪器输出。"),
    # What the pointer names stays; sentences without a pointer, and their spacing, are unchanged.
    ("再调用它们的终结器（`__del__`，见后文 PEP 442 一节），检查有没有复活；", "再调用它们的终结器（`__del__`，见后文 PEP 442 一节），检查有没有复活；"),
    ("`l .` 则重新以当前行为中心显示。", "`l .` 则重新以当前行为中心显示。"),
    ("在 `no_grad` 之外写 `w -= ...` 会报错；", "在 `no_grad` 之外写 `w -= ...` 会报错；"),
    ("块内的运算不记录计算图，在当前上下文中执行。", "块内的运算不记录计算图，在当前上下文中执行。"),
])
def test_a_quoted_sentence_drops_its_pointers_to_other_parts_of_the_article(sentence, quoted):
    """An answer quotes a section or three: 见后文, 下一节的 point at nothing the reader has."""
    from kb.references import unpoint

    assert unpoint(sentence) == quoted


def test_a_sentence_quoted_without_its_pointer_still_counts_as_gold_and_as_its_predecessors_follower():
    from kb.answer_eval import has_gold

    text = "生成器函数里也可以写 `return value`。需要它时，可以手动捕获 `StopIteration`，或者用 `yield from` 获取。"
    assert has_gold(text, "或者用下一节的 `yield from` 获取")
    assert not has_gold(text, "或者用 `send` 获取")
    section_text = "生成器结束时把返回值附在 `value` 属性上，要手动取出（见下文）。因此需要它时，可以用下一节的 `yield from` 获取。"
    sections = [Section("s", "返回值", 2, ("T", "返回值"), section_text, 1)]
    answer = ("生成器结束时把返回值附在 `value` 属性上，要手动取出。[[1]](a#s)"
              "因此需要它时，可以用 `yield from` 获取。[[1]](a#s)")
    assert dangling_references(answer, sections) == []
    assert dangling_references("因此需要它时，可以用 `yield from` 获取。[[1]](a#s)", sections) != []


def test_the_questions_identifiers_in_the_section_and_the_article_are_features():
    """`为什么每次迭代都要 zero_grad` opened with the generators article's iterator protocol (round 9): an article
    that never names zero_grad now scores lower through `article_identifier`."""
    clear = section_units("梯度默认累加，需要手动清零。每次迭代前调用 `optimizer.zero_grad()` 清空梯度。\n")
    accumulate = section_units("`backward()` 不会覆盖 `.grad`，而是把新算出的梯度累加上去。\n")
    iterator = section_units("迭代器实现 `__next__()`，每次返回下一个值，没有值时抛出 `StopIteration`。\n")
    cands = [Cand("autograd", "z", "梯度清零", 0, clear, 0.8), Cand("autograd", "a", "梯度累加", None, accumulate, 0.0),
             Cand("generators", "i", "迭代器协议", 1, iterator, 0.7)]
    prose = [(c, u) for c, cand in enumerate(cands) for u in cand.units if u.kind == "prose"]
    assert [c for c, _ in prose] == [0, 0, 1, 2]
    X = sentence_model.features("为什么每次迭代都要 zero_grad", "why", cands, prose, [0.7, 0.7, 0.7, 0.75])
    col = lambda name: list(X[:, sentence_model.FEATURES.index(name)])
    assert sentence_model.question_grams("为什么每次迭代都要 zero_grad")[1] == ["zero", "grad"], "jieba's cut"
    assert col("section_identifier") == [1, 1, 0.5, 0], "zero and grad in the first section, grad (.grad) in the second"
    assert col("article_identifier") == [1, 1, 1, 0], "both in the autograd article, neither in the generators one"
    assert col("identifier") == [0, 1, 0.5, 0], "the sentence itself"
    none = sentence_model.features("为什么每次迭代都要清零", "why", cands, prose, [0.7, 0.7, 0.7, 0.75])
    assert not none[:, sentence_model.FEATURES.index("article_identifier")].any(), "no identifier asked: off"


def test_one_letter_names_and_operators_count_as_words_of_the_question():
    """`pdb 里 c 和 r 是什么` counted only `pdb`, which every sentence of the article holds, and opened with the
    pipe section (round 13); `x += y 是怎么执行的` counted only 执行 and opened with the MRO article."""
    assert sentence_model.question_terms("pdb 里 c 和 r 是什么") == ["pdb", "c", "r"]
    assert sentence_model.question_terms("x += y 是怎么执行的") == ["执行", "x", "y", "+="]
    assert sentence_model.question_terms("is 和 == 的区别") == ["is", "区别", "=="]
    assert sentence_model.question_terms("**kwargs 怎么用") == ["kwargs", "**"]
    control = section_units("这一组命令决定程序在 pdb 里往前走多少。\n")
    cont = section_units("`c`（continue）让程序一直运行。`r`（return）运行到当前函数即将返回。\n")
    pipe = section_units("pdb 从标准输入读取命令，例如 `printf 'c\\nq\\n' | python -m pdb demo.py`。\n")
    cands = [Cand("pdb", "x", "控制执行：n、s、c、r", 0, control, 0.8), Cand("pdb", "c", "c 与 r：继续运行", 1, cont, 0.7),
             Cand("pdb", "p", "用管道驱动 pdb", None, pipe, 0.0)]
    prose = [(c, u) for c, cand in enumerate(cands) for u in cand.units if u.kind == "prose"]
    X = sentence_model.features("pdb 里 c 和 r 是什么", "what", cands, prose, [0.7, 0.7, 0.7, 0.7])
    col = lambda name: list(X[:, sentence_model.FEATURES.index(name)])
    assert col("lexical") == pytest.approx([1 / 3] * 4), "pdb; `c`, `r` as inline code; pdb (printf's c is no name)"
    assert col("idf_lexical")[1] > col("idf_lexical")[3] > 0, "c and r are rarer among the candidates than pdb"
    assert col("heading") == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1 / 3]), "a heading names c and r as whole words"
    assert sentence_model._term_in("+=", "增强赋值 `x += y` 先调用 `__iadd__`")
    assert not sentence_model._term_in("c", "class c3: pass") and not sentence_model._term_in("c", "c3 线性化", heading=True)


VERSIONS = """各版本的差别可以归结为几条：

1. 3.11 有三代，阈值是 700、10、10。回收在分配容器对象时触发。
2. 3.12 的阈值不变，回收改到字节码循环的检查点上执行。
3. 3.13 把第一个阈值提高到了 2000。这是为了减少年轻代回收的次数。
4. 3.14 只分年轻和年老两代，每次只扫描年老代的一部分。

每个版本的细节见官方文档。
"""


def test_an_item_quoted_with_its_lead_in_brings_the_first_sentences_of_the_other_items():
    """Round 13: `gc 3.13 的阈值是多少` quoted `各版本的差别可以归结为几条：` and the one item it needed, so the answer
    promised several and showed one, numbered 1 though the article numbers it 3. The lead-in now brings the other
    items' first sentences (its own group's), numbered as the article numbers them, when they fit in the budget."""
    from kb.answer_markdown import pieces_markdown as _markdown

    plan = _plan_of(VERSIONS, "分代回收的版本差别", {"3.13": 1.0, "这是为了": 0.9})
    pieces = plan.groups[0][1]
    assert [p.text[:4] for p in pieces] == ["各版本的", "3.11", "3.12", "3.13", "这是为了", "3.14"], \
        "the lead-in, every item's first sentence, and the chosen item's second sentence only"
    md = _markdown(pieces, "")
    assert [line[:6] for line in md[0].split("\n")] == ["各版本的差别", "1. 3.1", "2. 3.1", "3. 3.1", "4. 3.1"], md
    assert plan.prose_chars == sum(len(p.text) for p in pieces)
    sections = [Section("s", "分代回收的版本差别", 3, ("T", "分代回收的版本差别"), VERSIONS, 1)]
    assert dangling_references("\n\n".join(_markdown(pieces, "[[1]](a#s)")), sections) == []
    tight = select(_scored_of(VERSIONS, "分代回收的版本差别", {"3.13": 1.0, "这是为了": 0.9}), max_chars=10)
    assert [p.text[:4] for p in tight.groups[0][1]] == ["各版本的", "3.13"], \
        "no room (the budget plus LIST_SLACK): the item stays alone under its lead-in"
