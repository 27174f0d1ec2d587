"""The optional LLM: any OpenAI-compatible chat endpoint (vLLM, Ollama, DeepSeek, Qwen…) via langchain-openai.

This module knows how to configure the endpoint (`LLMConfig.from_env`, read once at the edge), how to build
the grounded prompt (numbered context passages, `[n]` citations asked for), how to stream the reply token by
token, and how to drop citations to numbers that were not in the context even when a citation arrives split
over several streamed tokens (`CitationFilter`). It knows nothing about retrieval, articles or the UI: callers
pass the passages as plain strings, already numbered by their position (passage i is cited as `[i+1]`).

The API key is never logged or shown: it is excluded from `LLMConfig`'s repr and scrubbed from error
messages.

    KB_LLM_BASE_URL=http://127.0.0.1:8000/v1 KB_LLM_MODEL=Qwen2.5-7B-Instruct KB_LLM_API_KEY=... make run
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from kb.errors import KBError

ENV_BASE_URL, ENV_MODEL, ENV_API_KEY = "KB_LLM_BASE_URL", "KB_LLM_MODEL", "KB_LLM_API_KEY"

SYSTEM_PROMPT = (
    "你是一个技术博客的知识库助手。只根据下面编号的资料用中文回答问题，不要编造资料之外的内容。"
    "每句话后用 [编号] 标出它依据的资料，例如 [1] 或 [2][3]；只能引用给出的编号。"
    "如果资料不足以回答，就直接说“知识库中没有相关内容”。代码请放在 ``` 代码块中。"
)
REWRITE_PROMPT = (
    "根据对话历史，把用户的最后一个问题改写成一个不依赖上下文、可以单独检索的中文问题。"
    "补全其中的代词（它、这个、两者等）所指的主题。只输出改写后的问题，不要解释。"
)


class LLMError(KBError):
    """The LLM endpoint cannot be reached or answered with an error."""


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str = field(default="EMPTY", repr=False)   # local servers (vLLM, Ollama) accept any key
    temperature: float = 0.2
    timeout_s: float = 60.0
    max_tokens: int = 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LLMConfig | None:
        """The endpoint named by KB_LLM_BASE_URL and KB_LLM_MODEL, or None (extractive answers) when unset."""
        env = os.environ if env is None else env
        base_url, model = env.get(ENV_BASE_URL, "").strip(), env.get(ENV_MODEL, "").strip()
        if not base_url and not model:
            return None
        if not (base_url and model):
            missing = ENV_MODEL if base_url else ENV_BASE_URL
            raise LLMError(f"{missing} is not set: set both {ENV_BASE_URL} and {ENV_MODEL} to use an LLM, "
                           "or neither for extractive answers")
        return cls(base_url=base_url.rstrip("/"), model=model, api_key=env.get(ENV_API_KEY, "").strip() or "EMPTY")

    def describe(self) -> str:
        """What the UI may show about the endpoint: never the key."""
        return f"{self.model} @ {self.base_url}"

    def scrub(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key and self.api_key != "EMPTY" else text


def build_messages(question: str, passages: Sequence[str],
                   history: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """OpenAI-style messages: system rules, the last turns of history, then numbered context plus the question."""
    context = "\n\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1))
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for user, assistant in list(history)[-3:]:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": f"资料：\n{context}\n\n问题：{question}"})
    return messages


def rewrite_messages(question: str, history: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    turns = "\n".join(f"用户：{u}\n助手：{a[:300]}" for u, a in list(history)[-3:])
    return [{"role": "system", "content": REWRITE_PROMPT},
            {"role": "user", "content": f"对话历史：\n{turns}\n\n最后一个问题：{question}"}]


# A citation group: "[1]", "[1][2]" is two groups, "[1, 2]" / "[1，2]" / "【1】" are accepted too. Code such
# as `xs[0]` is told apart by its backticks, not by what precedes the bracket: "MRO[1]" is a citation.
_CITATION = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")
_CODE_MARK = re.compile(r"(```|`)")
# What a citation can look like before its closing bracket has arrived.
_PARTIAL = re.compile(r"[\[【]\s*(?:\d{1,3}(?:\s*[,，、]\s*\d{0,3})*)?\s*$")
_MAX_HOLD = 24   # never hold back more than this many characters waiting for a bracket to close


class CitationFilter:
    """Streaming filter: keeps `[n]` only for n in `valid`, normalises groups to `[a][b]`, drops the rest.

    `feed(token)` returns the text that is safe to show now; a possible citation cut by a token boundary
    (`"[1"` then `"2]"`) is held back until it is complete. `flush()` returns whatever is left at the end.
    `fmt` writes a kept citation (default `[n]`). `cited` lists the valid numbers in the order they were
    first cited. Text inside inline code or a fenced code block passes unchanged (`matrix[i][5]` is code,
    not a citation).
    """

    def __init__(self, valid: Iterable[int], fmt: Callable[[int], str] | None = None, escape_html: bool = False):
        self.valid = set(valid)
        self.fmt = fmt or (lambda n: f"[{n}]")   # e.g. a Markdown link to the cited section
        self.escape_html = escape_html          # '<' outside code becomes '&lt;': model output is shown as text
        self.cited: list[int] = []
        self.dropped: list[int] = []
        self._buf = ""
        self._fence = self._inline = False

    def _rewrite(self, m: re.Match) -> str:
        nums = [int(n) for n in re.split(r"\s*[,，、]\s*", m.group(1))]
        kept = [n for n in nums if n in self.valid]
        self.dropped += [n for n in nums if n not in self.valid]
        for n in kept:
            if n not in self.cited:
                self.cited.append(n)
        return "".join(self.fmt(n) for n in dict.fromkeys(kept))

    def feed(self, token: str) -> str:
        self._buf += token
        hold_from = len(self._buf)
        opener = max(self._buf.rfind("["), self._buf.rfind("【"))
        if opener >= 0 and len(self._buf) - opener <= _MAX_HOLD and _PARTIAL.fullmatch(self._buf, opener):
            hold_from = opener
        tail_ticks = len(self._buf[:hold_from]) - len(self._buf[:hold_from].rstrip("`"))
        if 0 < tail_ticks < 3:   # may be the start of a ``` fence still arriving
            hold_from -= tail_ticks
        ready, self._buf = self._buf[:hold_from], self._buf[hold_from:]
        return self._filter(ready)

    def flush(self) -> str:
        ready, self._buf = self._buf, ""
        return self._filter(ready)

    def _filter(self, text: str) -> str:
        out = []
        for part in _CODE_MARK.split(text):
            if part == "```" and not self._inline:
                self._fence = not self._fence
            elif part == "`" and not self._fence:
                self._inline = not self._inline
            elif part not in ("```", "`") and not (self._fence or self._inline):
                part = _CITATION.sub(self._rewrite, part)
                if self.escape_html:
                    part = part.replace("<", "&lt;")
            out.append(part)
        return "".join(out)


def filter_citations(text: str, valid: Iterable[int]) -> str:
    """The whole-text form of CitationFilter."""
    f = CitationFilter(valid)
    return f.feed(text) + f.flush()


def _chat_model(config: LLMConfig, streaming: bool):
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise LLMError("langchain-openai is not installed: pip install langchain-openai") from exc
    return ChatOpenAI(base_url=config.base_url, model=config.model, api_key=config.api_key,
                      temperature=config.temperature, timeout=config.timeout_s, max_tokens=config.max_tokens,
                      max_retries=1, streaming=streaming)


def _llm_error(config: LLMConfig, exc: Exception) -> LLMError:
    return LLMError(config.scrub(f"the LLM at {config.base_url} failed: {type(exc).__name__}: {exc}"))


def stream_chat(config: LLMConfig, messages: list[dict[str, str]]) -> Iterator[str]:
    """The reply's text, token by token as the endpoint streams it."""
    model = _chat_model(config, streaming=True)
    try:
        for chunk in model.stream(messages):
            text = chunk.content if isinstance(chunk.content, str) else "".join(
                part.get("text", "") for part in chunk.content if isinstance(part, dict))
            if text:
                yield text
    except LLMError:
        raise
    except Exception as exc:  # openai/httpx errors of every kind: one domain error with the key scrubbed
        raise _llm_error(config, exc) from None


def complete(config: LLMConfig, messages: list[dict[str, str]]) -> str:
    """The whole reply at once (used to rewrite follow-up questions)."""
    return "".join(stream_chat(config, messages)).strip()


def stream_grounded(config: LLMConfig, question: str, passages: Sequence[str],
                    history: Sequence[tuple[str, str]] = (), citations: CitationFilter | None = None
                    ) -> Iterator[str]:
    """The grounded answer streamed with invalid citations removed; pass `citations` to read `.cited` after."""
    citations = citations or CitationFilter(range(1, len(passages) + 1))
    for token in stream_chat(config, build_messages(question, passages, history)):
        out = citations.feed(token)
        if out:
            yield out
    tail = citations.flush()
    if tail:
        yield tail
