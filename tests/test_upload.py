"""kb.upload: an uploaded article is validated completely before anything is written; replacing is atomic."""
from pathlib import Path

import pytest

from kb.upload import MAX_UPLOAD_BYTES, UploadError, check_name, save_article, validate_upload

ARTICLES = Path(__file__).resolve().parent.parent / "articles"


def article_bytes(slug="my-note", body="## 第一节\n\n正文。\n", title="笔记"):
    return (f"---\ntitle: {title}\nslug: {slug}\ndate: 2025-01-02\ntags: [Python]\nsummary: 一句话。\n"
            f"demos: [mro]\n---\n\n{body}").encode("utf-8")


@pytest.fixture
def folders(tmp_path):
    arts, backups = tmp_path / "articles", tmp_path / "backups"
    arts.mkdir()
    (arts / "my-note.md").write_bytes(article_bytes(body="## 旧\n\n旧内容。\n"))
    return arts, backups


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.mark.parametrize("name, why", [
    ("../x.md", "不含目录"), ("a/b.md", "不含目录"), ("..\\x.md", "不含目录"), ("", "不含目录"),
    ("notes.txt", "只接受 Markdown"), ("My Note.md", "小写字母"), ("x.MD", "小写字母"), ("-x.md", "小写字母"),
])
def test_bad_names_are_refused(name, why):
    with pytest.raises(UploadError, match=why):
        check_name(name)


@pytest.mark.parametrize("name, data, why", [
    ("my-note.md", b"x" * (MAX_UPLOAD_BYTES + 1), "文件过大"),
    ("my-note.md", b"\x89PNG\r\n\x1a\n\x00\x00", "不是文本文件"),
    ("my-note.md", "---\ntitle: 笔记\n".encode("gbk") + b"\xff\xfe", "不是 UTF-8"),
    ("my-note.md", b"   \n", "空的"),
    ("my-note.md", b"# just markdown, no front matter\n", "front matter"),
    ("other.md", article_bytes(), "differs from the file name"),
    ("my-note.md", article_bytes().replace(b"[mro]", b"[no-such-demo]"), "unknown demo"),
])
def test_rejected_upload_changes_nothing(folders, name, data, why):
    arts, backups = folders
    before = snapshot(arts)
    with pytest.raises(UploadError, match=why):
        save_article(arts, name, data, backups)
    assert snapshot(arts) == before, "a rejected upload must not touch the articles folder"
    assert not backups.exists()


def test_new_article_is_written(folders):
    arts, backups = folders
    saved = save_article(arts, "new-note.md", article_bytes(slug="new-note"), backups)
    assert (saved.replaced, saved.backup, saved.article.slug) == (False, None, "new-note")
    assert (arts / "new-note.md").read_bytes() == article_bytes(slug="new-note")
    assert sorted(p.name for p in arts.iterdir()) == ["my-note.md", "new-note.md"], "no temp file left"


def test_replacing_keeps_a_backup_of_the_old_version(folders):
    arts, backups = folders
    old = (arts / "my-note.md").read_bytes()
    saved = save_article(arts, "my-note.md", article_bytes(body="## 新\n\n新内容。\n"), backups)
    assert saved.replaced and saved.backup.read_bytes() == old
    assert saved.backup.parent == backups, "backups live outside the articles folder (never indexed)"
    assert [s.heading for s in saved.article.sections] == ["新"]


def test_html_in_an_article_is_accepted_as_text():
    art = validate_upload("my-note.md", article_bytes(body="## 节\n\n<script>alert(1)</script>\n"))
    assert "<script>alert(1)</script>" in art.sections[0].text


def test_every_real_article_passes_validation():
    for path in ARTICLES.glob("*.md"):
        assert validate_upload(path.name, path.read_bytes()).slug == path.stem
