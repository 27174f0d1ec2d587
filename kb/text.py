"""Tokens for BM25 and evidence: jieba's search-mode cut, lower-cased, without stopwords and punctuation.

jieba keeps runs of Latin letters and digits as tokens, so mixed questions such as "pdb 怎么设置断点" or
"DDP all_reduce 是什么" yield both the English words and the Chinese words. The stopword list is our own:
jieba ships none for Chinese. It holds function words, question words and filler a reader types around
the content ("请问", "一下", "怎么"), and common English stopwords; it deliberately keeps words that carry
the question's subject, such as 区别, 原理, 性能. English words that are Python keywords or builtins (is,
in, not, and, or, for, with, as, from, if, all, any) are not stopwords here: "is 和 == 的区别" is about `is`.
"""
from __future__ import annotations

import functools
import logging
import re

_ZH = """
的 地 得 了 着 过 吗 呢 吧 啊 呀 哦 嘛 么 啦 哈 嗯 呗 之 其 及 与 和 跟 同 或 或者 而 而且 并 并且 且 但 但是
然而 可是 不过 因为 所以 因此 如果 假如 要是 那么 那 这 这个 那个 这些 那些 这样 那样 这么 那么 这种 那种
哪 哪个 哪些 哪里 哪儿 什么 啥 怎么 怎样 怎么样 如何 为什么 为何 为啥 咋 咋办 怎么办 多少 几 几个 是否 是不是
有没有 能不能 可不可以 会不会 要不要 我 我们 你 你们 您 他 她 它 他们 她们 它们 自己 咱 咱们 人家 大家
是 在 有 就 都 也 还 又 再 才 只 很 太 最 更 非常 比较 一 一个 一些 一下 一点 一种 一般 个 些 把 被 给 让 对 对于
向 从 到 于 以 为 为了 由 由于 关于 按照 通过 用 使用 上 下 中 里 内 外 时 时候 之后 之前 以后 以前 后 前
会 能 能够 可以 可 要 想 应该 应当 需要 得 必须 请 请问 问 一下子 下面 上面 以下 以上 等 等等 吧 呢 啊
还是 就是 也是 都是 不是 没有 没 不 别 另外 此外 其他 其它 各 各种 每 每个 所有 任何 某 某些 某个
呢 吗 么 嘛 呀 哇 吧 噢 诶 欸 喔 哎 唉 好 好的 谢谢 感谢 知道 告诉 说 讲讲 讲 介绍 解释 一样 这里 那里
干 干嘛 干啥 干什么 下子 谁 来 啥样 咋样 到底 究竟 具体 意思 一直 总是 老是 为什么会 怎么会
回事 怎么回事 咋回事 啥意思 什么意思 是啥 有啥 用来 干什么用
"""
_EN = """
a an the of to on at by about what which who whom whose when where why how does did done i you he she we
they me my your our their them us can could should would will shall may might must also very just too
please vs via than then there here this that these those it its be been being am are was were do have has had
"""
STOPWORDS = frozenset(_ZH.split()) | frozenset(_EN.split())
_CONTENT = re.compile(r"[0-9a-z\u3400-\u9fff]")


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def tokenize(text: str) -> list[str]:
    """Content tokens of `text`, in order, repeats kept (BM25 counts them)."""
    return list(_tokenize(text))


@functools.lru_cache(maxsize=8192)
def _tokenize(text: str) -> tuple[str, ...]:
    # Cached: the BM25 model is built over the same chunk texts more than once (BM25-only serving while the
    # index builds, then the hybrid retriever), and jieba costs seconds for a whole corpus.
    tokens = _jieba().lcut_for_search(text.lower())
    return tuple(t for t in (tok.strip() for tok in tokens) if t and t not in STOPWORDS and _CONTENT.search(t))
