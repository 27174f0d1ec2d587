"""`kb ask`: one question and JSONL batches on the real model and index (the session's shared knowledge base).

The CLI is called in-process with the shared knowledge base in place of a freshly loaded one, so the model
loads once for the whole session; everything else (argument parsing, batch reading, output) is the CLI's.
"""
import json
import re

import pytest

from kb import cli
from shared_app import real_kb

STABLE = ["id", "question", "answerable", "text", "citations", "demos"]
URL = re.compile(r"^article/[a-z0-9-]+#\S+$")


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    return real_kb(tmp_path_factory)


@pytest.fixture
def run(kb, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_kb", lambda args: kb)

    def call(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return call


def _check_record(rec: dict, kb) -> None:
    assert list(rec)[:6] == STABLE, f"stable field order: {list(rec)}"
    for c in rec["citations"]:
        assert set(c) == {"n", "slug", "anchor", "url"}, c
        assert c["slug"] in kb.articles and kb.articles[c["slug"]].section(c["anchor"]) is not None, c
        assert URL.match(c["url"]) and c["url"].startswith(f"article/{c['slug']}#"), c["url"]
        assert f"[[{c['n']}]](" in rec["text"], f"citation {c['n']} is not in the text"


@pytest.mark.slow
def test_batch_answers_good_lines_and_reports_bad_ones(run, kb, tmp_path, caplog):
    lines = [
        json.dumps({"id": "gen", "question": "生成器为什么省内存？", "extra": "ignored"}, ensure_ascii=False),
        "{not json",
        json.dumps({"id": "empty", "question": "   "}),
        json.dumps({"id": "noq", "text": "no question field"}),
        "",
        json.dumps({"id": "long", "question": ("列表和元组有什么区别？" * 2000)[:20_000]}, ensure_ascii=False),
        json.dumps({"id": "oos", "question": "红烧肉怎么做才好吃"}, ensure_ascii=False),
        json.dumps({"id": "follow", "question": "它和迭代器有什么区别？",
                    "history": [["生成器是什么？", "生成器是惰性的。"]]}, ensure_ascii=False),
        json.dumps({"id": "page", "question": "默认参数的可变陷阱", "article": "python-object-reference"},
                   ensure_ascii=False),
        json.dumps({"id": "badart", "question": "默认参数的可变陷阱", "article": "../etc/passwd"}),
        json.dumps({"id": "badhist", "question": "它是什么", "history": "not a list"}),
    ]
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run("ask", "--batch", path, "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == ["gen", None, "empty", "noq", "long", "oos", "follow", "page", "badart",
                                          "badhist"], "one line per non-blank input line, in order"
    assert code == 1, "a batch with bad lines exits 1 after answering the rest"
    errors = {r["id"] or r["line"]: r for r in records if "error" in r}
    assert set(errors) == {2, "empty", "noq", "badart", "badhist"}
    assert errors[2]["line"] == 2 and errors[2]["error"].startswith("第 2 行不是 JSON"), errors[2]
    assert "问题为空" in errors["empty"]["error"] and "question" in errors["noq"]["error"]
    assert "article" in errors["badart"]["error"] and "history" in errors["badhist"]["error"]
    logged = [r.getMessage() for r in caplog.records if r.name == "kb"]
    assert len(logged) == 5 and all(m.startswith("kb ask: 第 ") for m in logged), f"one log line per bad line: {logged}"
    assert "Traceback" not in err
    answers = {r["id"]: r for r in records if "error" not in r}
    for rec in answers.values():
        _check_record(rec, kb)
    assert answers["gen"]["answerable"] and answers["gen"]["citations"][0]["slug"] == "python-generators"
    assert answers["gen"]["demos"] and answers["gen"]["demos"][0] == "generator"
    assert answers["long"]["answerable"] and "问题过长" in answers["long"]["notice"]
    assert answers["long"]["citations"][0]["slug"] == "python-list-tuple"
    assert not answers["oos"]["answerable"] and answers["oos"]["citations"] == []
    assert answers["oos"]["text"].startswith("知识库中没有相关内容")
    assert answers["follow"]["answerable"] and answers["follow"]["citations"][0]["slug"] == "python-generators"
    assert answers["page"]["citations"][0]["slug"] == "python-object-reference"


@pytest.mark.slow
def test_single_question_text_and_json(run, kb):
    code, out, err = run("ask", "pdb 怎么设置条件断点？")
    assert code == 0, err
    assert "**来源**" in out and "python-pdb" in out and "可运行的演示：pdb-transcript" in out, out
    code, out, err = run("ask", "pdb 怎么设置条件断点？", "--json")
    rec = json.loads(out)
    _check_record(rec, kb)
    assert rec["answerable"] and rec["citations"][0]["slug"] == "python-pdb"
    code, out, err = run("ask", "默认参数的可变陷阱", "--article", "python-object-reference", "--json")
    assert code == 0 and json.loads(out)["citations"][0]["slug"] == "python-object-reference"


def test_bad_single_questions_are_one_line_errors(run):
    code, out, err = run("ask", "  ")
    assert (code, out) == (2, "") and err.startswith("kb: error: 问题为空"), err
    code, out, err = run("ask")
    assert code == 2 and "either a question or --batch" in err
    code, out, err = run("ask", "问题", "--article", "no-such-article")
    assert code == 1 and "no article with slug 'no-such-article'" in err
    code, out, err = run("ask", "--batch", "/nonexistent/questions.jsonl", "--json")
    assert code == 1 and "no such file" in err and out == ""
