"""kb.compose without a model: question types, sentence/block units, reference resolution, and the dangling-
reference check a finished answer is held to. The composer on the real model is tested in tests/test_answer.py."""
import pytest

from kb.articles import Section
from kb.compose import _group, answer_elements, dangling_references, question_type, section_units

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
    assert texts(_group(units, 2)) == ["下面的代码演", "```pyt"], "a pointer brings its block"
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


def test_select_respects_the_budget_and_the_section_limit():
    rel = {"生成器是": 1.0, "列表一次": 0.9, "列表支持": 0.9, "垃圾回收": 0.95}
    plan = select(_scored(rel, params={"floor": 10, "close_same": 10, "close_other": 10, "max_sections": 2,
                                       "fill_chars": 0}), max_chars=60)
    assert plan.prose_chars <= 60, plan.prose_chars
    assert _texts(plan) == [(("gen", "a"), ["生成器是"]), (("gc", "c"), ["垃圾回收"]), (("gen", "b"), ["列表一次"])], \
        "by score: gen a, gc c (max_sections 2 reached, 列表… skipped), then the fill up to MIN_CHARS within 60 chars"


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
