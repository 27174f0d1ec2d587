"""The `kb` command on a small corpus with the fake embedder: outputs, JSON, and one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kb import cli
from kb.embedding import FakeEmbedder
from tests.test_index import TERMS, write_article

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def articles(tmp_path, monkeypatch):
    folder = tmp_path / "articles"
    folder.mkdir()
    write_article(folder, "lists", "列表是可变的。\n\n## 元组\n\n元组不可变，元组可以做键。\n")
    write_article(folder, "refs", "引用计数。\n\n## 循环\n\n循环引用要靠 gc 回收。gc 会分代。\n")
    write_article(folder, "gens", "生成器一边循环一边计算。\n\n## 惰性\n\n生成器是惰性的。\n")
    monkeypatch.setattr("kb.engine.make_embedder", lambda config: FakeEmbedder(TERMS))
    return folder


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_index_then_incremental(articles, capsys):
    code, out, err = run(capsys, "--articles", articles, "index")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[:2] == ["rebuilt the whole index (no index yet)", "added: gens, lists, refs"] and len(lines) == 4, lines
    assert lines[2].startswith("0 article(s) unchanged; embedded 6 chunk(s); 6 chunk(s) in the index;")
    stored = int(lines[3].split("; ")[1].split()[0])
    assert stored > 0 and lines[3].startswith(f"answer sentences: embedded {stored}; {stored} stored;"), lines[3]
    code, out, _ = run(capsys, "--articles", articles, "index")
    assert code == 0 and out.startswith("3 article(s) unchanged; embedded 0 chunk(s); 6 chunk(s) in the index;")
    assert out.splitlines()[1].startswith(f"answer sentences: embedded 0; {stored} stored;"), "stored, not redone"
    code, out, _ = run(capsys, "--articles", articles, "index", "--rebuild", "--json")
    summary = json.loads(out)
    assert summary["rebuilt"] and summary["reason"] == "--rebuild requested" and summary["chunks_embedded"] == 6


def test_search_text_and_json(articles, capsys):
    code, out, err = run(capsys, "--articles", articles, "search", "元组", "-k", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("answerable: yes")
    assert "1. lists › 元组  [lists#元组]" in lines
    assert "dense 1.000 (rank 1)" in out and "rank 1)" in out
    code, out, _ = run(capsys, "--articles", articles, "search", "循环引用 gc", "--json")
    data = json.loads(out)
    assert data["answerable"] is True and data["question"] == "循环引用 gc"
    top = data["hits"][0]
    assert top["chunk"]["id"] == "refs:1" and top["chunk"]["heading_path"] == ["refs", "循环"]
    assert set(top) == {"chunk", "score", "dense_score", "bm25_score", "dense_rank", "bm25_rank"}
    assert data["nearest_articles"][0]["slug"] == "refs"


def test_status(articles, capsys):
    run(capsys, "--articles", articles, "index")
    write_article(articles, "new", "新文章。\n")
    code, out, _ = run(capsys, "--articles", articles, "status")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["indexed", "gens"], ["indexed", "lists"], ["new", "new"], ["indexed", "refs"]]


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_is_one_line_exit_2(articles, capsys, question):
    code, out, err = run(capsys, "--articles", articles, "search", question)
    assert (code, out) == (2, "")
    assert err.splitlines() == ["kb: error: 问题为空：请输入要检索的问题 (the question is empty)"]


def test_missing_articles_folder_is_one_line_exit_1(tmp_path, capsys):
    code, out, err = run(capsys, "--articles", tmp_path / "nope", "index")
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"kb: error: {tmp_path / 'nope'}: the articles folder does not exist"]


def test_eval_json_and_table(articles, tmp_path, capsys):
    devset = tmp_path / "dev.jsonl"
    rows = [
        {"id": "a", "question": "元组", "articles": ["lists"], "keywords": ["做键"]},
        {"id": "b", "question": "循环引用 gc", "articles": ["refs"], "keywords": ["不存在的词"]},
        {"id": "c", "question": "红烧肉怎么做", "articles": [], "keywords": []},
    ]
    devset.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "--articles", articles, "eval", devset, "--json")
    m = json.loads(out)
    assert code == 0
    assert (m["hit1"], m["hit5"], m["mrr10"], m["keyword_recall"]) == (1.0, 1.0, 1.0, 0.5)
    assert (m["refusal_rate"], m["false_refusal_rate"], m["answerable"], m["unanswerable"]) == (1.0, 0.0, 2, 1)
    code, out, _ = run(capsys, "--articles", articles, "eval", devset)
    assert out.splitlines()[0] == "2 answerable and 1 unanswerable questions"
    assert out.splitlines()[3].startswith("| hybrid (engine) | 1.000 | 1.000 | 1.000 | 1.000  | 0.500")


def test_eval_bad_file_names_the_line(articles, tmp_path, capsys):
    devset = tmp_path / "dev.jsonl"
    devset.write_text('{"id": "a", "question": "元组", "articles": []}\n{"id": "b", "question":\n', encoding="utf-8")
    code, out, err = run(capsys, "--articles", articles, "eval", devset)
    assert code == 1 and err.startswith(f"kb: error: {devset}:2: not a dev-set line")
    assert len(err.splitlines()) == 1


def test_python_dash_m_kb_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kb", "--articles", str(tmp_path / "nope"), "index"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"kb: error: {tmp_path / 'nope'}: the articles folder does not exist"
