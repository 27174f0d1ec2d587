"""Generators: peak memory against a list, the next/send protocol, StopIteration's value, exhaustion.

    python -m demos.generator [--param n=200000]

Measured with `tracemalloc` (article `python-generators`): summing `n` squares through a list
comprehension keeps every square alive at once; a generator expression keeps one. Then the protocol,
each step checked exactly and written to `transcript.txt`: a running-average coroutine driven by
`send()`, the TypeError for a first non-None send, `return value` arriving as `StopIteration.value`,
and an exhausted generator that keeps raising StopIteration. Typical duration: about 1 s.
"""
from __future__ import annotations

import tracemalloc

from demos.harness import Report, main_for
from demos.spec import DemoSpec, Param

SPEC = DemoSpec(
    id="generator",
    title="生成器：惰性求值的内存与 send 协议",
    summary="用 tracemalloc 比较列表推导式与生成器表达式的峰值内存，并逐步验证 next/send、StopIteration.value 与耗尽行为。",
    articles=("python-generators",),
    module="demos.generator",
    params=(Param("n", int, 200_000, "求和的平方数个数", min=10_000, max=3_000_000),),
    timeout_s=60,
)

MIN_RATIO = 50
AVERAGE_INPUTS = (10, 20, 60)
AVERAGE_EXPECTED = (10.0, 15.0, 30.0)


def running_average():
    """The article's coroutine: each value sent in returns the average so far."""
    total = 0.0
    count = 0
    average = None
    while True:
        value = yield average
        total += value
        count += 1
        average = total / count


def summarize(items):
    """Yields the items, then returns a summary: the return value travels in StopIteration.value."""
    total = 0
    for item in items:
        total += item
        yield item
    return f"共 {len(items)} 项，合计 {total}"


def averager():
    """The article's sub-generator: averages what is sent until None arrives, then returns the average."""
    total, count = 0, 0
    while True:
        value = yield
        if value is None:
            break
        total += value
        count += 1
    return total / count


def delegator(results, name):
    """`yield from` forwards send() to averager and receives its return value."""
    result = yield from averager()
    results[name] = result


def flatten(items):
    for item in items:
        if isinstance(item, list):
            yield from flatten(item)
        else:
            yield item


def delegate_scores(scores) -> dict:
    """Drive delegator as the article does: prime, send each score, send None."""
    results = {}
    gen = delegator(results, "math")
    next(gen)
    for score in scores:
        gen.send(score)
    try:
        gen.send(None)
    except StopIteration:
        pass
    return results


def sum_list(n: int) -> int:
    return sum([x * x for x in range(n)])


def sum_generator(n: int) -> int:
    return sum(x * x for x in range(n))


def traced_peak(fn, n: int) -> tuple[int, int]:
    """(result, peak bytes allocated while fn(n) ran)."""
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:  # someone else traces: measure from a reset peak without stopping them
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        result = fn(n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, peak - base


def run(report: Report, n: int = 200_000) -> None:
    report.device = "cpu"
    transcript: list[str] = []

    def say(line: str) -> None:
        transcript.append(line)
        report.log(line)

    # Memory: the list holds n squares at once; the generator one at a time.
    total_list, list_peak = traced_peak(sum_list, n)
    total_gen, gen_peak = traced_peak(sum_generator, n)
    ratio = list_peak / max(gen_peak, 1)
    report.metric("list_peak_bytes", list_peak)
    report.metric("generator_peak_bytes", gen_peak)
    report.metric("peak_ratio", round(ratio, 1))
    say(f"sum([x*x for x in range({n})]) peak = {list_peak} bytes")
    say(f"sum(x*x for x in range({n}))   peak = {gen_peak} bytes  (ratio {ratio:.0f}×)")

    # send(): prime with None, then every send returns the running average.
    avg = running_average()
    primed = avg.send(None)
    averages = tuple(avg.send(x) for x in AVERAGE_INPUTS)
    say(f"avg.send(None) -> {primed!r}")
    for x, a in zip(AVERAGE_INPUTS, averages):
        say(f"avg.send({x}) -> {a!r}")

    # A just-created generator has no paused yield to receive a value.
    fresh = running_average()
    try:
        fresh.send(10)
        first_send_error = None
    except TypeError as exc:
        first_send_error = str(exc)
    say(f"running_average().send(10) -> TypeError: {first_send_error}")

    # return value -> StopIteration.value
    gen = summarize([3, 4, 5])
    produced, returned = [], None
    while True:
        try:
            produced.append(next(gen))
        except StopIteration as stop:
            returned = stop.value
            break
    say(f"summarize([3, 4, 5]) yields {produced}, StopIteration.value = {returned!r}")

    # Exhausted: every further next() raises StopIteration again, now without a value.
    again = []
    for _ in range(2):
        try:
            next(gen)
            again.append("value")
        except StopIteration as stop:
            again.append(("StopIteration", stop.value))
    leftovers = list(gen)
    say(f"next() on the exhausted generator, twice -> {again}; list(gen) -> {leftovers}")

    # yield from: send() reaches the sub-generator, its return value becomes the expression's value.
    delegated = delegate_scores((90, 80, 100))
    flat = list(flatten([1, [2, [3, 4], 5], [[6]], 7]))
    say(f"delegator via yield from averager(): {delegated}; flatten -> {flat}")

    path = report.artifact("transcript.txt")
    path.write_text("\n".join(transcript) + "\n", encoding="utf-8")

    report.check("两种写法的和相同", total_list == total_gen == (n - 1) * n * (2 * n - 1) // 6,
                 f"{total_list} vs {total_gen} (oracle: closed form (n−1)n(2n−1)/6)")
    report.check(f"生成器峰值内存至少小 {MIN_RATIO} 倍", ratio >= MIN_RATIO,
                 f"list {list_peak} B / generator {gen_peak} B = {ratio:.0f}× (oracle: tracemalloc peaks; a list of n ints "
                 f"costs ≥ 8n bytes, a generator O(1))")
    report.check("send(None) 预激后返回 None", primed is None, f"{primed!r} (oracle: the article: no yield has produced a value yet)")
    report.check("send 返回精确的累计平均值", averages == AVERAGE_EXPECTED,
                 f"{averages} (oracle: the averages of {AVERAGE_INPUTS} by hand, {AVERAGE_EXPECTED})")
    report.check("首次 send 非 None 值抛出 TypeError",
                 first_send_error == "can't send non-None value to a just-started generator",
                 f"{first_send_error!r} (oracle: CPython's message, quoted in the article)")
    report.check("return 的值在 StopIteration.value 中",
                 produced == [3, 4, 5] and returned == "共 3 项，合计 12",
                 f"{produced}, {returned!r} (oracle: the article's output)")
    report.check("耗尽的生成器再次 next 仍抛出 StopIteration",
                 again == [("StopIteration", None)] * 2 and leftovers == [],
                 f"{again}, {leftovers} (oracle: the iterator protocol: exhausted stays exhausted)")
    report.check("yield from 把 send 转发给子生成器，并取得其返回值",
                 delegated == {"math": 90.0} and flat == [1, 2, 3, 4, 5, 6, 7],
                 f"{delegated}, {flat} (oracle: the article's printed output {{'math': '90.0'}}, [1, ..., 7])")


def main(argv=None):
    raise SystemExit(main_for(SPEC, run, argv))


if __name__ == "__main__":
    main()
