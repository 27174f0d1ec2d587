"""The first screen: the product title, the articles as a compact list, and starter questions.

Starter questions are written by hand per article (each one answered from that article when the list was
made); an article without its own (an uploaded one) gets one made from its title. With ?article=<slug>
the starters are that article's, then the general ones.
"""
from __future__ import annotations

import html

TITLE = "技术博客知识库"
TAGLINE = "用中文提问，回答摘自博客文章并标明出处；相关的可运行演示一键运行。"
STARTERS = 6

QUESTIONS: dict[str, tuple[str, ...]] = {
    "python-list-tuple": ("列表和元组有什么区别？", "列表的过度分配是怎么回事？"),
    "python-generators": ("生成器为什么能节省内存？", "send() 怎么向生成器发送数据？"),
    "python-inheritance-mro": ("C3 线性化算法是怎么计算 MRO 的？", "super() 在多重继承里调用的是谁？"),
    "python-gc": ("Python 的垃圾回收是怎么处理循环引用的？", "分代回收的阈值是多少？"),
    "python-mutable-immutable": ("可变对象和不可变对象有什么区别？", "浅拷贝和深拷贝有什么不同？"),
    "python-object-reference": ("is 和 == 有什么区别？", "Python 的参数传递是传值还是传引用？"),
    "python-pdb": ("pdb 怎么设置条件断点？", "程序崩溃后怎么用 pdb 事后调试？"),
    "pytorch-autograd": ("PyTorch 的 autograd 是怎么记录计算图的？", "为什么梯度会累加，怎么清零？"),
    "pytorch-ddp": ("DDP 的 Ring All-Reduce 是怎么交换梯度的？", "DistributedSampler 怎么切分数据？"),
    "tensorflow-tf-export": ("@tf_export 装饰器做了什么？", "functools.partial 偏函数是什么？"),
    "edm-diffusion-framework": ("EDM 的 Heun 采样器是怎么工作的？", "EDM 的网络预条件是什么？"),
    "diffusion-sde": ("前向 SDE 的公式是什么？", "概率流 ODE 和逆向 SDE 有什么关系？"),
}
GENERAL = ("列表和元组有什么区别？", "生成器为什么能节省内存？", "C3 线性化算法是怎么计算 MRO 的？",
           "PyTorch 的 autograd 是怎么记录计算图的？", "EDM 的 Heun 采样器是怎么工作的？", "is 和 == 有什么区别？")


def starter_questions(articles: dict, slug: str | None = None, n: int = STARTERS) -> list[str]:
    """n starter questions: the article's own first when `slug` is given, then general ones."""
    picked: list[str] = []
    if slug and slug in articles:
        own = QUESTIONS.get(slug) or (f"《{articles[slug].title}》主要讲了什么？",)
        picked.extend(own)
    for q in GENERAL:
        if q not in picked:
            picked.append(q)
    return picked[:n]


def examples(questions: list[str]) -> list[dict]:
    """gr.Chatbot's example messages."""
    return [{"text": q} for q in questions]


def welcome_markdown(articles: dict, slug: str | None = None) -> str:
    """The chat's placeholder: title, what the knowledge base covers, the articles with one-line summaries."""
    reading = ""
    if slug and slug in articles:
        reading = f"<p>正在阅读《{html.escape(articles[slug].title)}》：回答会优先参考这篇文章。</p>"
    items = []
    for a in articles.values():
        summary = a.summary.split("。")[0].strip()
        items.append(f'<li title="{html.escape(a.summary, quote=True)}"><a href="article/{html.escape(a.slug, quote=True)}"'
                     f' target="_blank">{html.escape(_short_title(a.title))}</a>'
                     f'<span class="kb-sum">：{html.escape(summary)}</span></li>')
    return (f'<div class="kb-welcome"><h2>{TITLE}</h2><p>{TAGLINE}</p>{reading}'
            f"<p><strong>收录的 {len(articles)} 篇文章</strong>（点击标题阅读）：</p><ul>{''.join(items)}</ul>"
            "<p>试试下面的问题，或直接输入你的问题，回车发送。</p></div>")


def _short_title(title: str) -> str:
    """The title before its colon: “生成器：用 yield …” → “生成器”."""
    for sep in ("：", ":"):
        if sep in title:
            head = title.split(sep, 1)[0].strip()
            if len(head) >= 2:
                return head
    return title
