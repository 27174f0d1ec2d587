"""What `QuestionLog.report` returns, and its plain-text form for the terminal (`kb report`).

Plain dataclasses, shared by both stores of the question log (kb/analytics.py: SQLite; kb/pg_analytics.py:
PostgreSQL); `kb report --json` prints them with dataclasses.asdict.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QuestionStat:
    question: str                     # the latest wording of the group
    count: int
    last_asked: str                   # ISO 8601 UTC
    answerable: int                   # how many of `count` were answered
    articles: list[str] = field(default_factory=list)   # cited (answered) or read (refused) article slugs


@dataclass
class FeedbackItem:
    question_id: int
    time: str
    question: str
    rating: int
    comment: str


@dataclass
class DemoStat:
    demo_id: str
    launched: int
    passed: int
    failed: int
    unfinished: int


@dataclass
class Report:
    since: str | None                 # ISO time of the window start, None = everything kept
    questions: int
    answered: int
    refused: int
    refusal_rate: float
    feedback_up: int
    feedback_down: int
    top_questions: list[QuestionStat]
    refused_questions: list[QuestionStat]   # what readers ask that the blog does not cover yet
    cited_articles: list[tuple[str, int]]
    feedback: list[FeedbackItem]            # newest first, the thumbs-down first among equals
    demos: list[DemoStat]


def format_report(r: Report) -> str:
    """The report as plain text for the terminal (`kb report`)."""
    window = f"自 {r.since} 起" if r.since else "全部记录"
    lines = [f"问答统计（{window}）：{r.questions} 个问题，回答 {r.answered}，未能回答 {r.refused}"
             f"（{r.refusal_rate:.0%}），👍 {r.feedback_up} 👎 {r.feedback_down}"]

    def table(title: str, stats: list[QuestionStat], empty: str) -> None:
        lines.extend(["", title])
        if not stats:
            lines.append(f"  {empty}")
        for s in stats:
            arts = f"  [{', '.join(s.articles)}]" if s.articles else ""
            lines.append(f"  {s.count:>4}×  {s.question}  (最近 {s.last_asked}){arts}")

    table("热门问题：", r.top_questions, "（还没有问题）")
    table("未能回答的问题（博客还没有写到的内容）：", r.refused_questions, "（没有）")
    lines.extend(["", "被引用的文章："] + [f"  {n:>4}×  {slug}" for slug, n in r.cited_articles]
                 + ([] if r.cited_articles else ["  （没有）"]))
    lines.extend(["", "读者反馈："] + [f"  {'👍' if f.rating > 0 else '👎'} #{f.question_id} {f.time}  {f.question}"
                                     + (f"  —— {f.comment}" if f.comment else "") for f in r.feedback]
                 + ([] if r.feedback else ["  （没有）"]))
    lines.extend(["", "演示运行："] + [f"  {d.demo_id:<16} 启动 {d.launched}，通过 {d.passed}，失败 {d.failed}，"
                                     f"未结束 {d.unfinished}" for d in r.demos] + ([] if r.demos else ["  （没有）"]))
    return "\n".join(lines)
