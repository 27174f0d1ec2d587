"""The blog's own Markdown (kb/sources.py): Hexo, Hugo (YAML and TOML) and Jekyll trees built here,
indexed with the fake embedder, answered with citations to the blog's pages; bad files reported one by one."""
import json
import textwrap
from pathlib import Path

import pytest

from kb import cli
from kb.answer import answer
from kb.articles import load_articles
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.errors import KBError
from kb.sources import clean_body, expand_permalink, find_posts, first_paragraph
from kb.security import check_site_url, is_safe_slug

TERMS = ("列表", "元组", "生成器", "引用", "gc")


def write(root: Path, rel: str, text: str, encoding="utf-8") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(textwrap.dedent(text).lstrip("\n").encode(encoding))
    return path


def hexo_tree(root: Path) -> Path:
    write(root, "_config.yml", "title: 博客\n")
    write(root, "source/_posts/列表与元组.md", """
        ---
        title: 列表与元组
        date: 2024-03-05 10:20:00
        tags: [python, 容器]
        categories: [编程]
        ---
        列表是可变的序列，元组是不可变的序列。
        <!-- more -->
        ## 元组做键

        元组可以做字典的键，列表不行。{% asset_img tuple.png 元组示意 %}

        {% codeblock lang:python %}
        d = {(1, 2): "元组"}
        {% endcodeblock %}

        {% note info %}
        列表会过度分配。
        {% endnote %}
        """)
    write(root, "source/_posts/generators.md", """
        ---
        title: 生成器
        date: 2024-04-01
        tags: 生成器
        description: 生成器一边循环一边计算。
        ---
        ## 惰性求值

        生成器是惰性的，生成器只在需要时计算下一个值。[官方文档](https://docs.python.org/3/)
        """)
    write(root, "source/_posts/no-title.md", "---\ndate: 2024-01-01\n---\n没有标题的文章。\n")
    write(root, "source/_posts/gbk.md", "---\ntitle: 编码\n---\n这是 GBK 编码的文章。\n", encoding="gbk")
    write(root, "source/_posts/draft.md", "---\ntitle: 草稿\npublished: false\n---\n列表草稿。\n")
    return root


def hugo_tree(root: Path) -> Path:
    write(root, "hugo.toml", "baseURL = 'https://blog.example.com/'\n")
    write(root, "content/posts/refs.md", """
        +++
        title = "对象引用"
        date = 2024-05-01T08:00:00+08:00
        tags = ["python"]
        slug = "object-refs"
        +++
        Python 变量是对象的引用。

        ## 引用计数与 gc

        引用计数归零时对象被回收，循环引用由 gc 处理。{{< figure src="/img/gc.png" caption="gc 示意" >}}

        {{< highlight python >}}
        import gc
        gc.collect()
        {{< /highlight >}}
        """)
    write(root, "content/posts/yaml-post/index.md", """
        ---
        title: "元组的哈希"
        date: 2024-06-01
        categories: ["python"]
        ---
        {{% notice tip %}}
        元组可哈希，所以元组能做集合元素。
        {{% /notice %}}

        ## 哈希

        元组的哈希由元素决定。{{< ref "refs.md" >}}
        """)
    write(root, "content/posts/broken.md", '+++\ntitle = "坏的\ndate = 2024-01-01\n+++\n正文\n')
    write(root, "content/posts/broken-yaml.md", "---\ntitle: [未闭合\n---\n正文\n")
    write(root, "content/posts/_index.md", "---\ntitle: 文章\n---\n")
    return root


def jekyll_tree(root: Path) -> Path:
    write(root, "_config.yml", "permalink: pretty\n")
    write(root, "_posts/2023-09-10-gc-basics.md", """
        ---
        layout: post
        title: "gc 入门"
        categories: Python 内存
        ---
        gc 负责回收循环引用。访问 {{ site.url }} 查看更多。

        ## 分代回收

        {% highlight python %}
        import gc
        print(gc.get_count())
        {% endhighlight %}

        gc 把对象分成三代，新对象在第 0 代。{% include note.html %}
        {% raw %}{{ 这不是变量 }}{% endraw %}
        """)
    write(root, "_posts/2023-10-01-lists.md", "---\ntitle: 列表\ndate: 2023-10-01\n---\n列表是可变的，列表会过度分配。\n")
    write(root, "_posts/2023-09-11-dup.md", "---\ntitle: 一\nslug: same\n---\n列表。\n")
    write(root, "_posts/2023-09-12-dup2.md", "---\ntitle: 二\nslug: same\n---\n元组。\n")
    return root


def make_kb(folder, tmp_path, **config):
    return KnowledgeBase(Config(articles_dir=folder, home=tmp_path / "home", **config), embedder=FakeEmbedder(TERMS))


def errors_by_file(errors):
    return {Path(e.path).name: str(e).split(": ", 1)[1] for e in errors}


def test_hexo_tree(tmp_path):
    root = hexo_tree(tmp_path / "hexo")
    layout, files = find_posts(root)
    assert layout.kind == "hexo" and layout.posts == root / "source" / "_posts"
    articles, errors = load_articles(root)
    assert [a.slug for a in articles] == ["generators", "列表与元组"], "drafts and bad files left out"
    assert str(errors[0]).endswith("gbk.md:2: not valid UTF-8 (byte 11); save it as UTF-8")
    assert errors_by_file(errors) == {
        "gbk.md": "not valid UTF-8 (byte 11); save it as UTF-8",
        "no-title.md": "no title: the front matter has no 'title' and the text does not start with a '# heading'"}
    lt = next(a for a in articles if a.slug == "列表与元组")
    assert (lt.title, lt.date, lt.tags, lt.summary) == ("列表与元组", "2024-03-05", ("python", "容器", "编程"),
                                                      "列表是可变的序列，元组是不可变的序列。")
    assert lt.page == "/2024/03/05/列表与元组/", "Hexo's default permalink :year/:month/:day/:title/"
    body = lt.body
    assert "<!-- more -->" not in body and "{%" not in body and "%}" not in body
    assert "![元组示意](tuple.png)" in body, "asset_img becomes a Markdown image"
    assert "```python\nd = {(1, 2): \"元组\"}\n```" in body, "codeblock becomes a fenced block"
    assert "列表会过度分配。" in body, "the inner text of a paired tag is kept"
    gen = next(a for a in articles if a.slug == "generators")
    assert gen.summary == "生成器一边循环一边计算。" and gen.tags == ("生成器",)
    assert "[官方文档](https://docs.python.org/3/)" in gen.body, "links stay as Markdown text"


def test_hugo_tree_yaml_and_toml(tmp_path):
    root = hugo_tree(tmp_path / "hugo")
    articles, errors = load_articles(root)
    assert [a.slug for a in articles] == ["object-refs", "yaml-post"], "_index.md is a section page, not a post"
    errs = errors_by_file(errors)
    assert set(errs) == {"broken.md", "broken-yaml.md"}
    assert errs["broken.md"].startswith("front matter is not valid TOML: ") and str(
        next(e for e in errors if e.path.endswith("broken.md"))).split(": ")[0].endswith("broken.md:2")
    assert errs["broken-yaml.md"].startswith("front matter is not valid YAML: ")
    refs, bundle = articles
    assert (refs.title, refs.date, refs.page) == ("对象引用", "2024-05-01", "/posts/object-refs/")
    assert refs.summary == "Python 变量是对象的引用。", "first paragraph when there is no summary"
    assert "```python\nimport gc\ngc.collect()\n```" in refs.body and "{{<" not in refs.body
    assert "![gc 示意](/img/gc.png)" in refs.body
    assert (bundle.title, bundle.page, bundle.tags) == ("元组的哈希", "/posts/yaml-post/", ("python",))
    assert "元组可哈希，所以元组能做集合元素。" in bundle.body and "{{%" not in bundle.body
    assert bundle.summary == "元组可哈希，所以元组能做集合元素。"
    assert [s.anchor for s in refs.sections] == ["intro", "引用计数与-gc"]


def test_jekyll_tree(tmp_path):
    root = jekyll_tree(tmp_path / "jekyll")
    articles, errors = load_articles(root)
    assert [a.slug for a in articles] == ["gc-basics", "lists"]
    assert sorted(errors_by_file(errors).items()) == [("2023-09-11-dup.md", "duplicate slug 'same'"),
                                                      ("2023-09-12-dup2.md", "duplicate slug 'same'")]
    gc = articles[0]
    assert (gc.title, gc.date, gc.tags) == ("gc 入门", "2023-09-10", ("Python", "内存"))
    assert gc.page == "/python/内存/2023/09/10/gc-basics.html", "Jekyll's default 'date' permalink"
    assert gc.summary == "gc 负责回收循环引用。访问 查看更多。"
    assert "{{ site.url }}" not in gc.body and "{%" not in gc.body and "{{ 这不是变量 }}" in gc.body.replace("{% raw %}", "")
    assert "```python\nimport gc\nprint(gc.get_count())\n```" in gc.body


def test_clean_body_leaves_code_fences_alone():
    body = "文字 {{< ref x >}}\n```python\nprint('{% raw %}', '{{< x >}}', f'{{ a }}')\n```\n<!--more-->结束"
    assert clean_body(body, liquid=True) == "文字 \n```python\nprint('{% raw %}', '{{< x >}}', f'{{ a }}')\n```\n结束"
    assert clean_body("$\\frac{{a}}{{b}}$", liquid=True) == "$\\frac{{a}}{{b}}$", "LaTeX braces are not Liquid"


def test_helpers():
    assert expand_permalink(":year/:month/:day/:title/", "x", "2024-03-05", []) == "/2024/03/05/x/"
    assert expand_permalink("/blog/:category/:slug.html", "x", "", ["Py Thon"]) == "/blog/py-thon/x.html"
    assert first_paragraph("# 标题\n\n![图](a.png)\n\n**加粗**和[链接](u)。\n第二行\n\n下一段") == "加粗和链接。 第二行"
    assert [is_safe_slug(s) for s in ("列表与元组", "a-b_c.1", "../x", "a/b", "", " a", ".x")] == [
        True, True, False, False, False, False, False]
    assert check_site_url("https://blog.example.com/") == "https://blog.example.com"
    for bad in ("javascript:alert(1)", "blog.example.com", "https://x.com/?a=1", "https://x.com/\"><script>"):
        with pytest.raises(KBError, match="KB_SITE_URL must be"):
            check_site_url(bad)


@pytest.mark.parametrize("tree,question,slug,url", [
    (hexo_tree, "元组 列表", "列表与元组",
     "https://blog.example.com/2024/03/05/%E5%88%97%E8%A1%A8%E4%B8%8E%E5%85%83%E7%BB%84/#"),
    (hugo_tree, "引用 gc", "object-refs", "https://blog.example.com/posts/object-refs/#"),
    (jekyll_tree, "gc 分代", "gc-basics",
     "https://blog.example.com/python/%E5%86%85%E5%AD%98/2023/09/10/gc-basics.html#"),
])
def test_indexed_and_answered_with_links_to_the_blog(tmp_path, tree, question, slug, url):
    root = tree(tmp_path / "blog")
    kb = make_kb(root, tmp_path, site_url="https://blog.example.com")
    summary = kb.index()
    assert summary.added and len(summary.skipped) == len(kb.skipped) >= 1, "bad files skipped, the rest indexed"
    a = answer(kb, question)
    assert a.answerable, f"{question!r} answered from the {tree.__name__}"
    assert a.citations and a.citations[0].slug == slug
    assert all(c.url.startswith(url) for c in a.citations if c.slug == slug), [c.url for c in a.citations]
    assert url in a.text, "the answer's own links point to the blog"


def test_kb_index_cli_reports_bad_files_one_by_one(tmp_path, monkeypatch, capsys):
    root = hugo_tree(tmp_path / "hugo")
    monkeypatch.setattr("kb.engine.make_embedder", lambda config: FakeEmbedder(TERMS))
    assert cli.main(["--articles", str(root), "--home", str(tmp_path / "home"), "index"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "added: object-refs, yaml-post"
    skipped = [line for line in out if line.startswith("skipped ")]
    assert len(skipped) == 2 and any("broken.md:2: front matter is not valid TOML" in s for s in skipped) \
        and any("broken-yaml.md:2: front matter is not valid YAML" in s for s in skipped), skipped
    assert cli.main(["--articles", str(root), "--home", str(tmp_path / "home"), "search", "元组 哈希", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["chunk"]["slug"] == "yaml-post"


def test_project_articles_unchanged(tmp_path):
    from tests.conftest import ARTICLES
    articles, errors = load_articles(ARTICLES)
    assert errors == [] and len(articles) == 12 and all(a.page == "" for a in articles)
    articles, _ = load_articles(ARTICLES, permalink="/posts/:slug/")
    assert articles[0].page == f"/posts/{articles[0].slug}/"


def test_kb_ask_batch_answers_from_a_blog_tree(tmp_path, monkeypatch, capsys):
    """`kb ask --batch --json` over a Hugo tree: citations link to the blog's own pages; a bad line is its own error."""
    root = hugo_tree(tmp_path / "hugo")
    monkeypatch.setattr("kb.engine.make_embedder", lambda config: FakeEmbedder(TERMS))
    monkeypatch.setenv("KB_SITE_URL", "https://blog.example.com")
    home = str(tmp_path / "home")
    assert cli.main(["--articles", str(root), "--home", home, "index"]) == 0
    capsys.readouterr()
    batch = tmp_path / "q.jsonl"
    batch.write_text('{"id": "q1", "question": "引用 gc"}\nnot json\n', encoding="utf-8")
    assert cli.main(["--articles", str(root), "--home", home, "ask", "--batch", str(batch), "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[0]["id"] == "q1" and lines[0]["answerable"] is True, lines
    assert lines[0]["citations"][0]["slug"] == "object-refs"
    assert lines[0]["citations"][0]["url"].startswith("https://blog.example.com/posts/object-refs/#"), lines[0]
    assert lines[1]["line"] == 2 and lines[1]["error"].startswith("第 2 行不是 JSON"), lines[1]
