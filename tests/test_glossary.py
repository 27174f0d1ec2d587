"""kb.glossary: the sentence scorer reads English terms as the Chinese the articles use, never a term written as code."""
import pytest

from kb import glossary
from kb.compose import question_type
from kb.sentence_model import scoring_question


@pytest.mark.parametrize("question, scored", [
    ("what is the difference between a list and a tuple", "what is the 区别 between a 列表 and a 元组"),
    ("how do I set a breakpoint", "how do I 设置 a 断点"),
    ("DDP 保存 checkpoint 要注意啥", "DDP 保存 检查点 要注意啥"),
    # The longest term wins; case does not matter.
    ("How does Shallow Copy differ from deep copy?", "How does 浅拷贝 不同 from 深拷贝?"),
    ("Post-Mortem debugging 怎么做", "事后调试 怎么做"),
    # Written as code: left alone.
    ("为什么函数里 count += 1 会报 UnboundLocalError", "为什么函数里 count += 1 会报 UnboundLocalError"),
    ("breakpoint() 和 pdb.set_trace() 有啥区别", "breakpoint() 和 pdb.set_trace() 有啥区别"),
    ("list.sort() vs sorted()", "list.sort() 区别 sorted()"),
    ("`list` 的 append", "`list` 的 append"),
    ("sub-VP SDE 为什么叫 sub", "sub-VP SDE 为什么叫 sub"),
    ("zero_grad 和 set_to_none", "zero_grad 和 set_to_none"),
    # Round 8: terms the articles gloss themselves (永生对象（immortal objects，PEP 683）, “单步跳过”（step over）).
    ("what are immortal objects in Python 3.12", "what are 永生对象 in Python 3.12"),
    ("pdb step into vs step over", "pdb 单步进入 区别 单步跳过"),
    ("torchrun 报 Address already in use", "torchrun 报 地址已被使用"),
    # No term, or no Latin letter at all: the same string.
    ("生成器为什么省内存？", "生成器为什么省内存？"),
    ("namedtuple 怎么用", "namedtuple 怎么用"),
])
def test_translate_replaces_terms_not_written_as_code(question, scored):
    assert glossary.translate(question) == scored
    assert scoring_question(question) == scored


def test_the_question_type_reads_the_question_as_typed():
    # "difference" would be 区别 either way; the type is decided before the glossary is applied.
    assert question_type("what is the difference between a list and a tuple") == "diff"
    assert question_type("how do I set a breakpoint") == "how"


def test_every_line_of_the_shipped_glossary_is_a_term_pair():
    terms, pattern = glossary.load()
    assert len(terms) >= 200 and pattern is not None
    assert terms["mutability"] == "可变性" and terms["denoiser"] == "去噪器"
    assert all(not (c.isascii() and c.isalpha()) for chinese in terms.values() for c in chinese)


def test_a_malformed_line_names_its_file_and_line(tmp_path):
    bad = tmp_path / "glossary.tsv"
    bad.write_text("# comment\nlist\t列表\ntuple 元组\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"glossary\.tsv:3: expected 'english<TAB>chinese'"):
        glossary.load(bad)
    good = tmp_path / "small.tsv"
    good.write_text("list\t列表\n", encoding="utf-8")
    assert glossary.translate("list and tuple", good) == "列表 and tuple"


@pytest.mark.parametrize("question, searched", [
    ("what is the ideal denoiser in EDM", "理想 去噪器 EDM"),
    ("what is ZeroRedundancyOptimizer", "ZeroRedundancyOptimizer"),        # `is` would match the is operator
    ("why is True + 1 == 2 in Python", "True + 1 == 2 Python"),
    ("how does `in` work on a generator", "`in` work 生成器"),               # code stays
    ("how to fix the MRO TypeError for class W(A, X) when X subclasses A", "fix MRO TypeError 类 W(A, X) X 子类 A"),
    ("what is", "what is"),                                               # nothing left: as typed
    ("DDP 保存 checkpoint 要注意啥", "DDP 保存 checkpoint 要注意啥"),       # mixed: as typed
    ("生成器为什么省内存", "生成器为什么省内存"),
])
def test_retrieval_reads_a_wholly_english_question_in_chinese_without_its_frame(question, searched):
    assert glossary.retrieval_question(question) == searched


def test_the_articles_own_terms_are_written_as_the_articles_write_them():
    """The glossary's first block holds the articles' own glosses (可变性（mutability）): each Chinese term occurs in
    the articles, so a translated question meets the articles' words. Two older entries name a concept the
    articles write differently, and are listed."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    text = "".join(p.read_text(encoding="utf-8") for p in (root / "articles").glob("*.md"))
    own = glossary.GLOSSARY_PATH.read_text(encoding="utf-8").split("# everyday vocabulary of a programming question")[0]
    pairs = [line.split("\t") for line in own.splitlines() if line.strip() and not line.startswith("#")]
    assert len(pairs) > 150
    assert sorted(e for e, z in pairs if z not in text) == ["lazy evaluation", "noise schedule"]
