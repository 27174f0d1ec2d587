"""The blog owner's admin side without a browser: delete with a backup (gone from answers at once), rejected
uploads naming the missing fields, and the app refusing to listen beyond loopback without a password."""
from pathlib import Path

import pytest

from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.security import is_inside, is_loopback_host
from kb.upload import UploadError, delete_article, validate_upload
from tests.test_index import TERMS, write_corpus

ROOT = Path(__file__).resolve().parent.parent


def test_delete_article_backs_up_and_leaves_the_answers_at_once(tmp_path):
    arts = write_corpus(tmp_path / "articles")
    kb = KnowledgeBase(Config(articles_dir=arts, home=tmp_path / "home"), embedder=FakeEmbedder(TERMS))
    kb.index()
    assert kb.search("元组").hits[0].chunk.slug == "lists"
    original = (arts / "lists.md").read_bytes()
    backup = delete_article(kb.article("lists"), arts, tmp_path / "home" / "backups")
    assert not (arts / "lists.md").exists() and backup.read_bytes() == original
    assert backup.parent == tmp_path / "home" / "backups" and backup.name.startswith("lists.")
    summary = kb.index()
    assert summary.deleted == ["lists"] and "lists" not in kb.articles
    assert all(h.chunk.slug != "lists" for h in kb.search("元组").hits), "deleted article still answers"
    with pytest.raises(UploadError, match="已经不存在"):
        delete_article(type(kb.article("refs"))(**{**kb.article("refs").__dict__, "path": str(arts / "gone.md")}),
                       arts, tmp_path / "b")


def test_delete_refuses_files_outside_the_articles_folder(tmp_path):
    arts = write_corpus(tmp_path / "articles")
    outside = tmp_path / "secret.md"
    outside.write_text("x", encoding="utf-8")
    kb = KnowledgeBase(Config(articles_dir=arts, home=tmp_path / "home"), embedder=FakeEmbedder(TERMS))
    fake = type(kb.article("refs"))(**{**kb.article("refs").__dict__, "path": str(arts / ".." / "secret.md")})
    with pytest.raises(UploadError, match="不在文章目录里"):
        delete_article(fake, arts, tmp_path / "b")
    assert outside.exists() and not (tmp_path / "b").exists()
    assert is_inside(arts / "lists.md", arts) and not is_inside(arts / ".." / "secret.md", arts)


def test_rejected_upload_names_the_missing_fields():
    with pytest.raises(UploadError) as exc:
        validate_upload("note.md", "---\ntitle: 笔记\nslug: note\n---\n正文\n".encode())
    assert str(exc.value) == "front matter 缺少字段：date、tags、summary、demos（必须有 title、slug、date、tags、summary、demos）"
    with pytest.raises(UploadError, match="缺少字段：title、slug、date、tags、summary、demos"):
        validate_upload("note.md", "没有 front matter 的正文\n".encode())


def test_loopback_hosts():
    assert [is_loopback_host(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "0.0.0.0", "::",
                                          "192.168.1.5", "example.com")] == [True] * 5 + [False] * 4


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_app_refuses_public_host_without_password(host, monkeypatch, capsys):
    """app.main (the `python app.py` entry) exits with status 2 and one message before loading anything."""
    import app

    monkeypatch.delenv("KB_ADMIN_PASSWORD", raising=False)
    monkeypatch.setattr(app, "build_state", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    with pytest.raises(SystemExit) as exc:
        app.main(["--host", host, "--port", "9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"错误：--host {host} 会让其他机器访问本应用") and "KB_ADMIN_PASSWORD" in err
    assert err.count("\n") == 1, "one line"
    app.refuse_open_admin("127.0.0.1", None)            # loopback without a password: fine
    app.refuse_open_admin(host, "s3cret-password")       # public with a password: fine
