"""The chunks' BM25 tokens are stored in the data folder: a restart reads them instead of running jieba over
the corpus, and the cache never changes what retrieval returns."""
import json
import logging

from kb import token_cache
from kb.config import Config
from kb.embedding import FakeEmbedder
from kb.engine import KnowledgeBase
from kb.text import tokenize
from tests.test_index import TERMS, write_corpus

TEXTS = ["Python 的垃圾回收用引用计数，循环引用交给分代回收。", "生成器只保存帧的状态，所以省内存。",
         "DistributedDataParallel 在反向传播时同步梯度。"]


def no_jieba(monkeypatch):
    def fail(text):
        raise AssertionError(f"jieba ran although the cache holds the text: {text[:20]}")
    monkeypatch.setattr(token_cache, "tokenize", fail)


def stored(home):
    return json.loads((home / token_cache.FILE).read_text(encoding="utf-8"))


def test_tokens_equal_tokenize_and_the_next_call_reads_them(tmp_path, monkeypatch):
    first = token_cache.corpus_tokens(TEXTS, tmp_path)
    assert first == [tokenize(t) for t in TEXTS]
    data = stored(tmp_path)
    assert data["tokenizer"] == token_cache.tokenizer_id() and len(data["tokens"]) == 3
    no_jieba(monkeypatch)
    assert token_cache.corpus_tokens(TEXTS, tmp_path) == first


def test_only_the_current_corpus_is_kept(tmp_path, monkeypatch):
    first = token_cache.corpus_tokens(TEXTS, tmp_path)
    added = "新加的一段：pdb 的 display 命令。"
    token_cache.corpus_tokens(TEXTS[:1] + [added], tmp_path)
    assert set(stored(tmp_path)["tokens"]) == {token_cache._key(TEXTS[0]), token_cache._key(added)}
    no_jieba(monkeypatch)
    assert token_cache.corpus_tokens(TEXTS[:1], tmp_path) == first[:1]


def test_another_tokenizer_or_a_broken_file_is_cut_again(tmp_path, monkeypatch, caplog):
    path = tmp_path / token_cache.FILE
    path.write_text(json.dumps({"tokenizer": "old", "tokens": {token_cache._key(TEXTS[0]): ["错"]}}), encoding="utf-8")
    assert token_cache.corpus_tokens(TEXTS, tmp_path)[0] == tokenize(TEXTS[0]), "stale tokens were served"
    assert stored(tmp_path)["tokenizer"] == token_cache.tokenizer_id()

    for broken in ("{not json", json.dumps({"tokenizer": token_cache.tokenizer_id(), "tokens": [1, 2]}),
                   json.dumps([1])):
        path.write_text(broken, encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kb"):
            assert token_cache.corpus_tokens(TEXTS, tmp_path) == [tokenize(t) for t in TEXTS]
        lines = [r for r in caplog.records if "unreadable" in r.getMessage()]
        assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in caplog.records]
        assert stored(tmp_path)["tokenizer"] == token_cache.tokenizer_id(), "the broken file was not replaced"


def test_an_unwritable_data_folder_still_answers(tmp_path, caplog):
    home = tmp_path / "not-a-folder"
    home.write_text("a file where the data folder should be", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="kb"):
        assert token_cache.corpus_tokens(TEXTS, home) == [tokenize(t) for t in TEXTS]
    lines = [r.getMessage() for r in caplog.records if "cannot write the BM25 token cache" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"], "a temporary file was left behind"


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch, caplog):
    import errno

    token_cache.corpus_tokens(TEXTS[:1], tmp_path)
    before = (tmp_path / token_cache.FILE).read_bytes()

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("kb.index.os.replace", disk_full)
    with caplog.at_level(logging.WARNING, logger="kb"):
        assert token_cache.corpus_tokens(TEXTS, tmp_path) == [tokenize(t) for t in TEXTS]
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot write the BM25 token cache {tmp_path / token_cache.FILE}: [Errno 28] No space left on device"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [token_cache.FILE], "a temporary file was left behind"
    assert (tmp_path / token_cache.FILE).read_bytes() == before, "the old cache is kept whole"


def test_a_restart_searches_the_same_without_jieba_over_the_corpus(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "articles")
    config = Config(articles_dir=corpus, home=tmp_path / "home")
    kb = KnowledgeBase(config, embedder=FakeEmbedder(TERMS))
    kb.index()
    before = kb.search("循环引用 gc")
    assert (config.home / token_cache.FILE).is_file()

    restarted = KnowledgeBase(config, embedder=FakeEmbedder(TERMS))
    no_jieba(monkeypatch)               # the question is still cut by kb.text.tokenize in kb.retrieval
    after = restarted.search("循环引用 gc")
    assert [(h.chunk.id, round(h.score, 9), round(h.bm25_score, 9)) for h in after.hits] == \
           [(h.chunk.id, round(h.score, 9), round(h.bm25_score, 9)) for h in before.hits]
    assert after.hits[0].chunk.slug == "refs"


def test_no_home_means_no_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert token_cache.corpus_tokens(TEXTS, None) == [tokenize(t) for t in TEXTS]
    assert list(tmp_path.iterdir()) == []
