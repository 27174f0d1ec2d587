"""The `kb` command (also `python -m kb`): index, search, status, eval, bench.

    kb index [--rebuild]                         incremental by default; prints what changed
    kb search "列表和元组的区别" [-k 5] [--json]   hits with article, heading path, anchor and scores
    kb status [--json]                           per article: indexed, changed, new, deleted, unreadable
    kb eval tests/data/devset.jsonl [--compare]  hit@k, MRR, keyword recall, refusal; baselines side by side
    kb ask "生成器为什么省内存？" [--article SLUG] [--json]   the chat's answer; --batch FILE.jsonl for many
    kb bench [--scale 100000,1000000] [--backends torch,onnx,onnx-int8] [--build-rounds N]
                                                 backends side by side, build/incremental/query timings, ANN scale run
    kb report [--days 30] [--json] [--csv FILE]  readers' questions: top, refused (not covered yet), feedback, demos

Global options: --articles DIR, --home DIR (default: KB_HOME, else .kb/ in the project), --model,
--query-prompt/--passage-prompt for e5/bge-style models, and --embed-backend torch|onnx|onnx-int8.
Errors are one line on stderr: exit status 2 for a bad question or bad usage, 1 for every other knowledge-base error. No tracebacks for expected failures.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from kb.config import EMBED_BACKENDS, Config
from kb.errors import KBError, QueryError


def _progress_bar():
    """A terminal progress callback (tqdm on stderr), or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm
    bar = tqdm(total=0, unit="chunk", desc="indexing", file=sys.stderr, leave=False)

    def progress(done: int, total: int, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message[-40:], refresh=True)
    return progress, bar.close


def _kb(args):
    from kb.engine import KnowledgeBase
    config = Config.from_env(articles_dir=args.articles, home=args.home, model=args.model,
                             query_prompt=args.query_prompt, passage_prompt=args.passage_prompt,
                             embed_backend=args.embed_backend)
    return KnowledgeBase(config)


def _print_notices(kb) -> None:
    for notice in kb.notices:
        print(f"kb: {notice}", file=sys.stderr)


def cmd_index(args) -> int:
    kb = _kb(args)
    progress, close = _progress_bar()
    if progress is not None:
        kb.embedder.show_progress = False      # one bar: ours, over all chunks, not one per batch
    try:
        summary = kb.index(rebuild=args.rebuild, progress=progress)
        sentences = kb.index_sentences(progress=progress)     # answers then embed nothing at run time
    finally:
        close()
    _print_notices(kb)
    if args.json:
        print(json.dumps({**dataclasses.asdict(summary), "sentences_embedded": sentences.embedded,
                          "sentences_total": sentences.total}, ensure_ascii=False, indent=1))
    else:
        print("\n".join(summary.lines()))
        print(f"answer sentences: embedded {sentences.embedded}; {sentences.total} stored; {sentences.seconds:.1f} s")
    return 0


def cmd_status(args) -> int:
    rows = _kb(args).status()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], ensure_ascii=False, indent=1))
        return 0
    for r in rows:
        detail = r.error or f"{r.chunks} chunk(s)"
        print(f"{r.state:<10} {r.slug or r.path:<28} {detail}")
    return 0


def cmd_search(args) -> int:
    kb = _kb(args)
    result = kb.search(args.question, k=args.k, prefer_slug=args.prefer, mode=args.mode)
    _print_notices(kb)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), ensure_ascii=False, indent=1))
        return 0
    verdict = "yes" if result.answerable else "no"
    print(f"answerable: {verdict} (confidence {result.confidence:.2f})")
    if result.notice:
        print(result.notice)
    for i, h in enumerate(result.hits, start=1):
        c = h.chunk
        print(f"\n{i}. {' › '.join(c.heading_path)}  [{c.slug}#{c.anchor}]")
        print(f"   score {h.score:.4f} | dense {h.dense_score:.3f} (rank {h.dense_rank or '-'}) | "
              f"bm25 {h.bm25_score:.2f} (rank {h.bm25_rank or '-'})")
        preview = " ".join(c.text.split())
        print(f"   {preview[:150]}{'…' if len(preview) > 150 else ''}")
    print("\nnearest articles: " + ", ".join(f"{a.slug} ({a.title})" for a in result.nearest_articles))
    return 0


def cmd_eval(args) -> int:
    from kb.evaluate import format_table, load_devset, run_eval
    questions = load_devset(args.file)
    kb = _kb(args)
    kb.loaded_index()
    _print_notices(kb)
    results = run_eval(kb, questions, k=args.k, compare=args.compare)
    answers = []
    if args.answers:
        from kb.answer_eval import evaluate_answers, format_answer_table
        answers = [evaluate_answers(kb, questions, c.strip(), args.split) for c in args.composer.split(",")]
    if args.json:
        out = [dataclasses.asdict(m) for m in results]
        doc = out[0] if len(out) == 1 else {m["name"]: m for m in out}
        if answers:
            doc["answers"] = {m.name: dataclasses.asdict(m) for m in answers}
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        if answers:
            print(format_answer_table(answers) + "\n")
            for m in answers:
                print(f"{m.name}: gold recall by type {m.gold_recall_by_type}; dangling {m.dangling_ids}; "
                      f"unrelated {m.unrelated}; wrong refusal decisions {m.wrong_decisions}\n")
        print(format_table(results))
        first = results[0]
        if first.misses:
            print(f"not in the top 5: {', '.join(first.misses)}")
        if first.wrong_decisions:
            print(f"wrong refusal decisions: {', '.join(first.wrong_decisions)}")
    return 0


def cmd_ask(args) -> int:
    from kb.answer import answer
    from kb.ask import answer_batch, format_text, record
    from kb.llm import LLMConfig
    if (args.question is None) == (args.batch is None):
        print("kb: error: give either a question or --batch FILE", file=sys.stderr)
        return 2
    kb = _kb(args)
    llm = LLMConfig.from_env()
    if args.batch is None:
        if args.article is not None and args.article not in kb.articles:
            raise KBError(f"no article with slug '{args.article}'")
        a = answer(kb, args.question, prefer_slug=args.article, llm=llm)
        _print_notices(kb)
        print(json.dumps(record(a), ensure_ascii=False) if args.json else format_text(a))
        return 0
    if args.batch != "-" and not os.path.isfile(args.batch):
        raise KBError(f"{args.batch}: no such file")
    failed = 0
    with (sys.stdin if args.batch == "-" else open(args.batch, encoding="utf-8", errors="replace")) as lines:
        for rec in answer_batch(kb, lines, llm):
            failed += "error" in rec
            if args.json:
                print(json.dumps(rec, ensure_ascii=False), flush=True)
            elif "error" in rec:
                print(f"[{rec['id']}] 错误：{rec['error']}\n", flush=True)
            else:
                print(f"[{rec['id']}] {rec['question']}\n\n{rec['text'].strip()}\n", flush=True)
    _print_notices(kb)
    return 1 if failed else 0


def cmd_bench(args) -> int:
    from kb.bench import format_report, run_bench
    config = Config.from_env(articles_dir=args.articles, model=args.model,
                             query_prompt=args.query_prompt, passage_prompt=args.passage_prompt,
                             embed_backend=args.embed_backend)
    scales = [int(s) for s in args.scale.split(",") if s.strip()] if args.scale else []
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else []
    unknown = [b for b in backends if b not in EMBED_BACKENDS]
    if unknown:
        raise QueryError(f"--backends: unknown backend {', '.join(unknown)} (one of {', '.join(EMBED_BACKENDS)})")
    if not 1 <= args.build_rounds <= 20:
        raise QueryError("--build-rounds must be a whole number from 1 to 20")
    report = run_bench(config, scales=scales, queries=args.queries, devset=args.devset, backends=backends,
                       log=lambda m: print(m, file=sys.stderr, flush=True), build_rounds=args.build_rounds)
    print(json.dumps(dataclasses.asdict(report), indent=1) if args.json else format_report(report))
    return 0


def cmd_report(args) -> int:
    from kb.analytics import format_report, open_log
    if args.days is not None and not args.days > 0:
        raise QueryError("--days must be a positive number of days")
    if args.limit < 1:
        raise QueryError("--limit must be at least 1")
    log = open_log(Config.from_env(home=args.home))
    if args.csv:
        n = log.export_csv(args.csv, days=args.days)
        print(f"kb: wrote {n} question(s) to {args.csv}", file=sys.stderr)
    report = log.report(days=args.days, limit=args.limit)
    if args.json:
        print(json.dumps(dataclasses.asdict(report), ensure_ascii=False, indent=1))
    elif not args.csv:
        print(format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kb", description="Chinese knowledge base: index, search, evaluate.")
    p.add_argument("--articles", help="articles folder (default: articles/ in the project)")
    p.add_argument("--home", help="index data folder (default: $KB_HOME, else .kb/ in the project)")
    p.add_argument("--model", help="sentence-transformers model folder or name (default: m3e-small)")
    p.add_argument("--query-prompt", help="prefix for questions (e5/bge-style models)")
    p.add_argument("--passage-prompt", help="prefix for passages (e5/bge-style models)")
    p.add_argument("--embed-backend", choices=("torch", "onnx", "onnx-int8"),
                   help="how the model runs (default: $KB_EMBED_BACKEND, else onnx-int8)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="bring the index up to date with the articles")
    s.add_argument("--rebuild", action="store_true", help="re-embed every article")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("status", help="index state of each article")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("search", help="search the knowledge base")
    s.add_argument("question")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--prefer", metavar="SLUG", help="favour this article (the page the reader is on)")
    s.add_argument("--mode", choices=("hybrid", "dense", "bm25"), default="hybrid")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("eval", help="retrieval metrics on a JSONL dev set")
    s.add_argument("file")
    s.add_argument("--k", type=int, default=5, help="depth for keyword recall (default 5)")
    s.add_argument("--compare", action="store_true", help="also run dense-only, BM25-only and the LangChain recipe")
    s.add_argument("--answers", action="store_true",
                   help="also evaluate the answers (gold sentences, key terms, citations, dangling references)")
    s.add_argument("--split", default="test", help="dev-set split for --answers: test (held out, default), dev or all")
    s.add_argument("--composer", default="default,baseline",
                   help="comma-separated composers for --answers: default, baseline (the composer it replaced)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("ask", help="answer a question as the chat does (or a JSONL batch)")
    s.add_argument("question", nargs="?")
    s.add_argument("--article", metavar="SLUG", help="the article the reader is on (favoured, like the embed)")
    s.add_argument("--batch", metavar="FILE", help="JSONL with question (id, article, history optional); - = stdin")
    s.add_argument("--json", action="store_true", help="one JSON object per answer")
    s.set_defaults(func=cmd_ask)

    s = sub.add_parser("bench", help="timings on a temporary copy (never the user's index)")
    s.add_argument("--scale", default="100000,1000000",
                   help="comma-separated synthetic index sizes for the ANN run ('' to skip)")
    s.add_argument("--queries", type=int, default=200, help="queries for the ANN scale run")
    s.add_argument("--backends", default="torch,onnx,onnx-int8",
                   help="embedding backends compared side by side ('' to skip)")
    s.add_argument("--build-rounds", type=int, default=1,
                   help="build each backend's index this many times, round-robin, and report the median")
    s.add_argument("--devset", default=None, help="questions for the latency run (default: tests/data/devset.jsonl)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("report", help="what readers asked (the question log of the app)")
    s.add_argument("--days", type=float, help="only the last N days (default: everything kept)")
    s.add_argument("--limit", type=int, default=20, help="rows per table (default 20)")
    s.add_argument("--csv", metavar="FILE", help="also write every question as CSV (UTF-8) to FILE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "k", 1) is not None and getattr(args, "k", 1) < 1:
        print("kb: error: -k must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except QueryError as exc:
        print(f"kb: error: {exc}", file=sys.stderr)
        return 2
    except KBError as exc:
        print(f"kb: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kb: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
