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
