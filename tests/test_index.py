"""The persisted index: incremental updates (add, change, delete), rebuild on model or chunker change,
recovery from corrupted and half-written indexes, bad articles skipped without losing the rest."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from kb import index as store
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.errors import ArticleError, IndexError_, IndexMissing

TERMS = ("列表", "元组", "引用", "生成器", "gc")


def write_article(folder: Path, slug: str, body: str, title: str | None = None) -> Path:
    path = folder / f"{slug}.md"
    path.write_text(f"---\ntitle: {title or slug}\nslug: {slug}\ndate: 2025-01-01\ntags: [t]\n"
                    f"summary: 关于{slug}。\ndemos: [gc-cycles]\n---\n{body}", encoding="utf-8")
    return path


def write_corpus(folder: Path) -> Path:
    """Three tiny articles whose words the fake embedder counts."""
    folder.mkdir()
    write_article(folder, "lists", "列表是可变的。\n\n## 元组\n\n元组不可变，元组可以做键。\n")
    write_article(folder, "refs", "引用计数。\n\n## 循环\n\n循环引用要靠 gc 回收。gc 会分代。\n")
    write_article(folder, "gens", "生成器一边循环一边计算。\n\n## 惰性\n\n生成器是惰性的。\n")
    return folder


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "articles")


def make_kb(folder: Path, tmp_path: Path, **changes) -> KnowledgeBase:
    config = Config(articles_dir=folder, home=tmp_path / "home", **changes)
    return KnowledgeBase(config, embedder=FakeEmbedder(TERMS))


def n_chunks(kb, slug):
    return len(kb.chunks(slug))


def test_save_and_load_round_trip(corpus, tmp_path):
    kb = make_kb(corpus, tmp_path)
    summary = kb.index()
    assert summary.added == ["gens", "lists", "refs"] and summary.rebuilt and summary.reason == "no index yet"
    loaded = store.load(tmp_path / "home")
    assert loaded.chunks == kb.loaded_index().chunks
    np.testing.assert_array_equal(loaded.vectors, kb.loaded_index().vectors)
    m = loaded.manifest
    assert (m.model, m.dimension, m.chunker["size"]) == ("fake:列表|元组|引用|生成器|gc", 5, 400)
    assert m.articles["lists"].chunk_ids == ("lists:0", "lists:1")
    assert m.articles["lists"].hash == kb.articles["lists"].content_hash
    # Row i of the vectors is the fake embedding of chunk i's embed_text.
    expected = FakeEmbedder(TERMS).embed_documents([c.embed_text for c in loaded.chunks])
    np.testing.assert_allclose(loaded.vectors, expected, rtol=1e-6)


def test_incremental_add_change_delete(corpus, tmp_path):
    kb = make_kb(corpus, tmp_path)
    kb.index()
    total = sum(kb.embedder.calls)
    assert total == 6, "three articles of two chunks each"

    summary = kb.index()
    assert (summary.unchanged, summary.chunks_embedded, summary.changed_anything) == (["gens", "lists", "refs"], 0, False)
    assert sum(kb.embedder.calls) == total, "nothing re-embedded when nothing changed"

    write_article(corpus, "more", "新的文章讲列表。\n")
    (corpus / "gens.md").write_text((corpus / "gens.md").read_text(encoding="utf-8") + "\n## 新节\n\n生成器补充。\n",
                                    encoding="utf-8")
    (corpus / "refs.md").unlink()
    vectors_before = {c.id: v for c, v in zip(kb.loaded_index().chunks, kb.loaded_index().vectors)}
    summary = kb.index()
    assert (summary.added, summary.changed, summary.deleted, summary.unchanged) == (["more"], ["gens"], ["refs"], ["lists"])
    assert summary.chunks_embedded == 1 + 3 and sum(kb.embedder.calls) == total + 4, "only new and changed chunks"
    assert summary.chunks_total == 2 + 3 + 1
    assert n_chunks(kb, "refs") == 0 and n_chunks(kb, "gens") == 3
    # The unchanged article keeps its exact vectors; everything survives a reload from disk.
    after = {c.id: v for c, v in zip(kb.loaded_index().chunks, kb.loaded_index().vectors)}
    np.testing.assert_array_equal(after["lists:0"], vectors_before["lists:0"])
    reloaded = store.load(tmp_path / "home")
    assert [c.id for c in reloaded.chunks] == ["gens:0", "gens:1", "gens:2", "lists:0", "lists:1", "more:0"]
    assert sorted(reloaded.manifest.articles) == ["gens", "lists", "more"]


def test_model_or_chunker_change_rebuilds_everything(corpus, tmp_path):
    make_kb(corpus, tmp_path).index()
    kb = make_kb(corpus, tmp_path, chunk_size=300, chunk_overlap=50)
    summary = kb.index()
    assert summary.rebuilt and "chunker settings changed" in summary.reason and summary.chunks_embedded == 6
    assert store.load(tmp_path / "home").manifest.chunker["size"] == 300
    kb = KnowledgeBase(Config(articles_dir=corpus, home=tmp_path / "home", chunk_size=300, chunk_overlap=50),
                       embedder=FakeEmbedder(("列表",)))
    summary = kb.index()
    assert summary.rebuilt and summary.reason == "model changed from fake:列表|元组|引用|生成器|gc to fake:列表"
    assert summary.chunks_embedded == 6


def test_search_on_an_index_of_another_model_rebuilds_with_a_notice(corpus, tmp_path):
    make_kb(corpus, tmp_path).index()
    kb = KnowledgeBase(Config(articles_dir=corpus, home=tmp_path / "home"), embedder=FakeEmbedder(("列表", "元组")))
    result = kb.search("元组")
    assert result.hits[0].chunk.id == "lists:1"
    assert len(kb.notices) == 1 and "was built with model" in kb.notices[0]
    assert store.load(tmp_path / "home").manifest.model == "fake:列表|元组"


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip":
        path.write_bytes(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


@pytest.mark.parametrize("name", [store.CHUNKS, store.VECTORS, store.MANIFEST])
@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_corrupted_index_is_detected_reported_and_rebuilt(corpus, tmp_path, name, how):
    make_kb(corpus, tmp_path).index()
    home = tmp_path / "home"
    generation = store.read_manifest(home).generation
    corrupt(home / name if name == store.MANIFEST else home / generation / name, how)
    expected = IndexMissing if (name, how) == (store.MANIFEST, "delete") else IndexError_
    with pytest.raises(expected):
        store.load(home)

    kb = make_kb(corpus, tmp_path)
    result = kb.search("循环引用 gc")
    assert result.hits[0].chunk.slug == "refs", "served from the rebuilt index"
    if expected is IndexError_:
        assert len(kb.notices) == 1 and "rebuilding" in kb.notices[0], kb.notices
    assert sum(kb.embedder.calls) == 6, "everything re-embedded"
    assert len(store.load(home)) == 6


def test_crash_while_saving_leaves_the_previous_index(corpus, tmp_path, monkeypatch):
    kb = make_kb(corpus, tmp_path)
    kb.index()
    home = tmp_path / "home"
    before = store.load(home)
    write_article(corpus, "more", "新的文章讲列表。\n")

    # The process dies after the new generation's files are written, before the manifest is swapped.
    def crash(*args):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        kb.index()
    monkeypatch.undo()
    after = store.load(home)
    assert [c.id for c in after.chunks] == [c.id for c in before.chunks], "the previous index is intact"
    assert sorted(p.name for p in home.glob("gen-*")) == [before.manifest.generation], "the half-written generation is gone"

    # A build killed harder leaves a partial folder and a partial manifest: both ignored, then cleaned.
    (home / "gen-partial").mkdir()
    (home / "gen-partial" / store.CHUNKS).write_text("[{\"id\":", encoding="utf-8")
    (home / f".{store.MANIFEST}.tmp").write_text("{\"format\": 1, \"mod", encoding="utf-8")
    assert [c.id for c in store.load(home).chunks] == [c.id for c in before.chunks]
    summary = make_kb(corpus, tmp_path).index()
    assert summary.added == ["more"] and summary.chunks_embedded == 1
    names = sorted(p.name for p in home.glob("gen-*"))
    assert "gen-partial" not in names and len(names) == 2, f"current and previous generation only: {names}"
    assert not (home / f".{store.MANIFEST}.tmp").exists()


def test_unreadable_articles_are_skipped_and_the_rest_indexed(corpus, tmp_path):
    (corpus / "latin1.md").write_bytes("---\ntitle: x\n---\ncaf\xe9".encode("latin-1") + "列表".encode())
    (corpus / "badyaml.md").write_text("---\ntitle: [unclosed\nslug: badyaml\n---\n正文\n", encoding="utf-8")
    kb = make_kb(corpus, tmp_path)
    summary = kb.index()
    assert summary.added == ["gens", "lists", "refs"]
    skipped = dict(summary.skipped)
    assert set(Path(p).name for p in skipped) == {"latin1.md", "badyaml.md"}
    latin = next(m for p, m in skipped.items() if p.endswith("latin1.md"))
    assert "latin1.md:4" in latin and "not valid UTF-8" in latin, latin
    bad = next(m for p, m in skipped.items() if p.endswith("badyaml.md"))
    assert "badyaml.md:3" in bad and "not valid YAML" in bad, bad


def test_an_indexed_article_that_becomes_unreadable_is_kept(corpus, tmp_path):
    kb = make_kb(corpus, tmp_path)
    kb.index()
    (corpus / "gens.md").write_bytes(b"---\ntitle: \xff\n---\n")
    summary = kb.index()
    assert summary.kept_unreadable == ["gens"] and summary.deleted == [] and n_chunks(kb, "gens") == 2
    states = {(s.slug, s.state) for s in kb.status()}
    assert states == {("gens", "unreadable"), ("lists", "indexed"), ("refs", "indexed")}


def test_status_reports_each_article(corpus, tmp_path):
    kb = make_kb(corpus, tmp_path)
    assert {s.state for s in kb.status()} == {"new"}
    kb.index()
    write_article(corpus, "lists", "列表变了。\n")
    write_article(corpus, "added", "新文章。\n")
    (corpus / "refs.md").unlink()
    status = {s.slug: (s.state, s.chunks) for s in kb.status()}
    assert status == {"added": ("new", 0), "gens": ("indexed", 2), "lists": ("changed", 2), "refs": ("deleted", 2)}


def test_missing_articles_folder_is_a_clear_error(tmp_path):
    kb = make_kb(tmp_path / "no-such-folder", tmp_path)
    with pytest.raises(ArticleError, match="no-such-folder: the articles folder does not exist"):
        kb.index()


def test_empty_folder_gives_an_empty_index_that_refuses(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    kb = make_kb(folder, tmp_path)
    assert kb.index().chunks_total == 0
    result = kb.search("列表")
    assert (result.hits, result.answerable) == ([], False) and "空" in result.notice


def test_manifest_is_plain_json_and_nothing_is_pickled(corpus, tmp_path):
    make_kb(corpus, tmp_path).index()
    home = tmp_path / "home"
    manifest = json.loads((home / store.MANIFEST).read_text(encoding="utf-8"))
    assert set(manifest["files"]) == {store.CHUNKS, store.VECTORS}
    folder = home / manifest["generation"]
    assert sorted(os.listdir(folder)) == sorted([store.CHUNKS, store.VECTORS])
    assert json.loads((folder / store.CHUNKS).read_text(encoding="utf-8"))[0]["id"] == "gens:0"
