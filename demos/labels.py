"""Chinese names for the demos' check and metric ids, and numbers formatted with units.

The demos name their checks and metrics with stable ids (`heun_second_order`, `sw2_heun`, `VP_ode_s`):
those stay the ids in result.json, the API and the tests. Readers see `label(id)`; the UI keeps the id as
a tooltip. A name already in Chinese is returned as is; an unknown id is translated word by word, and a
word without a translation is kept (an identifier such as `ob_item` stays readable).
"""
from __future__ import annotations

import math
import re

# Whole ids whose word-by-word reading would be clumsy.
NAMES = {
    "schedule_matches_eq5": "噪声调度与论文式 (5) 一致",
    "schedule_decreasing_endpoints": "噪声调度递减且端点正确",
    "heun_nfe": "Heun 采样的网络调用次数",
    "euler_nfe": "Euler 采样的网络调用次数",
    "denoiser_sigmas_on_schedule": "去噪器只在调度的噪声水平上调用",
    "samples_finite": "样本都是有限值",
    "heun_sw2_vs_data": "Heun 样本与数据的切片 W2 距离",
    "heun_mode_weights": "Heun 样本的各峰权重",
    "heun_second_order": "Heun 法为二阶收敛",
    "euler_first_order": "Euler 法为一阶收敛",
    "learned_loss_near_optimum": "学习到的去噪器损失接近最优",
    "learned_loss_below_trivial": "学习到的去噪器优于平凡解",
    "workers_exit_cleanly": "所有工作进程正常退出",
    "step_count": "训练步数正确",
    "params_bit_identical_every_step": "每一步各进程参数逐位相同",
    "matches_single_process_full_batch": "与单进程全批量训练结果一致",
    "loss_decreases": "损失下降",
    "frame_order": "调用栈帧顺序正确",
    "no_pdb_errors": "pdb 没有报错",
    "table_matches_plain_run": "表格与直接运行的输出一致",
    "duration_s": "演示耗时",
    "peak_ratio": "峰值内存之比",
    "threshold": "阈值",
    "backend": "通信后端",
    "world_size": "进程数",
    "python": "Python 版本",
}
WORDS = {
    "schedule": "噪声调度", "heun": "Heun", "euler": "Euler", "nfe": "网络调用次数", "sw2": "切片 W2 距离",
    "vs": "对", "data": "数据", "mode": "峰", "modes": "峰", "weights": "权重", "error": "误差", "err": "误差",
    "threshold": "阈值", "learned": "学习到的", "loss": "损失", "initial": "初始", "final": "最终",
    "ode": "ODE", "sde": "SDE", "deterministic": "是确定性的", "invertible": "可逆", "stochastic": "是随机的",
    "values": "变量取值", "pair": "样本对", "dist": "距离", "distance": "距离", "roundtrip": "往返",
    "max": "最大", "mean": "均值", "std": "标准差", "latent": "隐变量", "ratio": "比值", "ratios": "比值",
    "halving": "步长减半", "sigma": "σ", "first": "第一个", "last": "最后一个", "nonzero": "非零",
    "sampling": "采样", "convergence": "收敛", "abs": "绝对", "autograd": "autograd",
    "finite": "有限", "diff": "差分", "gradient": "梯度", "capacities": "列表容量", "collected": "回收的对象数",
    "commands": "命令", "exported": "导出的", "paths": "路径", "generations": "各代", "generator": "生成器",
    "list": "列表", "tuple": "元组", "literal": "字面量", "peak": "峰值", "bytes": "字节", "time": "时间",
    "full": "全批量", "param": "参数", "across": "跨", "ranks": "进程", "single": "单", "process": "进程",
    "random": "随机", "classes": "类", "consistent": "一致", "rejected": "被拒绝", "disagreements": "不一致",
    "sessions": "会话", "sizeof": "大小", "empty": "空", "torchrun": "torchrun", "train": "训练",
    "steps": "步", "per": "每", "checked": "已检查", "vp": "VP", "ve": "VE", "data_pair": "数据样本对",
}
UNITS = {"s": "s", "ns": "ns", "ms": "ms", "bytes": "B"}
_LONG_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{5,}(?:e[-+]?\d+)?(?![\w.])")


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def label(name: str) -> str:
    """The reader's name for a check or metric id."""
    if has_cjk(name):
        return name
    if name in NAMES:
        return NAMES[name]
    words = name.split("_")
    unit = words[-1] if len(words) > 1 and words[-1] in UNITS else None
    if unit:
        words = words[:-1]
    out = [WORDS.get(w.lower(), w) for w in words]
    text = " ".join(out)
    text = re.sub(r"(?<=[\u4e00-\u9fff]) (?=[\u4e00-\u9fff])", "", text)   # no spaces between Chinese words
    if unit in ("s", "ms", "ns"):
        text += "（耗时）"
    return text


def unit_of(name: str) -> str:
    last = name.rsplit("_", 1)[-1]
    return UNITS.get(last, "") if "_" in name else ""


def number(value: float) -> str:
    """A float to 4 significant digits, without noise such as 0.002000000000000003."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    if 1e-4 <= abs(value) < 1e6:
        return f"{value:.4g}"
    mantissa, exp = f"{value:.3e}".split("e")
    return f"{float(mantissa):g}×10^{int(exp)}"


def _bytes(value: float) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:g} B"


def value(name: str, v) -> str:
    """A metric's value with its unit: `duration_s` 0.12345 → 0.1235 s, `list_peak_bytes` → KiB."""
    unit = unit_of(name)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(name, x) for x in v[:12]) + ("…" if len(v) > 12 else "") + "]"
    if isinstance(v, dict):
        return "；".join(f"{k} = {value(name, x)}" for k, x in list(v.items())[:8])
    if unit == "B" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return _bytes(v)
    if isinstance(v, bool):
        return "是" if v else "否"
    text = number(v)
    return f"{text} {unit}" if unit and isinstance(v, (int, float)) else text


_DETAIL_WORDS = [(re.compile(r"\(expected\b\s*"), "（期望 "), (re.compile(r"\bexpected\b"), "期望"),
                 (re.compile(r"\bgot\b"), "实际"), (re.compile(r"\s+vs\.?\s+"), " 对比 "),
                 (re.compile(r"\bthreshold\b"), "阈值"), (re.compile(r"<never answered>"), "（没有回应）")]


def tidy_numbers(text: str) -> str:
    """A check's detail for readers: long floats to 4 significant digits, the harness's few English words
    (expected, got, vs, threshold) in Chinese."""
    text = _LONG_FLOAT.sub(lambda m: number(float(m.group(0))), text)
    for pattern, zh in _DETAIL_WORDS:
        text = pattern.sub(zh, text)
    return text
