"""The 演示 tab: one form per demo (bounded inputs from its spec), the run cards and the run history, whose
rows reopen a past run (its checks, log and plots).

DemoHandlers (mixed into ChatApp) submit runs to the demos.runner.Runner and stream a card's view; the demo
buttons under an answer (chat.py) use them too.
"""
from __future__ import annotations

import html

import gradio as gr

from demos import present, registry
from demos.spec import DemoParamError, DemoSpec
from kb.ui.messages import info, user_error
from kb.ui.runs import RunCards, session_key, stream_view


class DemoHandlers:
    """Demo handlers; `self` is the ChatApp (runner)."""

    def start_demo(self, demo_id: str, params: dict | None = None):
        """Submit a run: RunHandle, or a Chinese error for an unknown demo or a bad parameter."""
        try:
            return self.runner.submit(demo_id, params or {})
        except registry.UnknownDemo:
            raise user_error(f"没有这个演示：{demo_id}") from None
        except (DemoParamError, ValueError) as exc:
            raise user_error(f"参数有误：{exc}") from None

    def find_run(self, run_id: str):
        """The live handle of a run of this process, else the one loaded from the runs folder, else None."""
        for handle in self.runner.history():
            if handle.id == run_id:
                return handle
        for handle in self.runner.load_history():
            if handle.id == run_id:
                return handle
        return None

    def stream_run(self, run_id: str):
        """A card's view of run `run_id` until it ends (at once for a past run)."""
        if not run_id:
            return
        handle = self.find_run(run_id)
        if handle is None:
            raise user_error(f"没有编号为 {run_id} 的运行。")
        expected = present.expected_checks(self.runner.load_history(), handle.demo)
        was_done = handle.done
        yield from stream_view(handle, self.runner.max_concurrent, expected)
        if not was_done:   # the question log records how the run ended (same run id: one row)
            self._log_demo(None, handle.demo, handle.id, handle.status == "passed")

    def launch_demo_form(self, demo_id: str, *values, request: gr.Request = None):
        """The Demos tab: parameters in the spec's order (advanced ones included). -> the card boxes."""
        spec = registry.get(demo_id)
        params = {p.name: v for p, v in zip(spec.params, values) if v is not None and v != ""}
        handle = self.start_demo(demo_id, params)
        if handle.status == "queued":
            info(f"“{spec.title}”已加入队列：前面还有演示在运行，轮到时自动开始。")
        self._log_demo(None, handle.demo, handle.id, None)
        return self.card_slots.place(self.runner, handle, session_key(request, "demos"))

    def reopen_run(self, rows, evt: gr.SelectData, request: gr.Request = None):
        """A click on a history row shows that run (checks, log, plots) in a card."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            run_id = (rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0])
        except (IndexError, KeyError, TypeError):
            raise user_error("请点击运行历史中的一行。") from None
        handle = self.find_run(str(run_id))
        if handle is None:
            raise user_error(f"没有编号为 {run_id} 的运行。")
        return self.card_slots.place(self.runner, handle, session_key(request, "demos"))

    def cancel_run(self, run_id: str):
        for handle in self.runner.history():
            if handle.id == run_id:
                handle.cancel()
                return f"已请求停止 {run_id}。"
        return "没有正在运行的演示。"

    def history_rows(self) -> list[list]:
        return present.history_rows(self.runner.load_history())


def param_inputs(spec: DemoSpec) -> list:
    """One bounded input per parameter, advanced ones in a closed accordion; spec order kept."""
    made = {}
    for group in (False, True):
        params = [p for p in spec.params if p.advanced == group]
        if not params:
            continue
        ctx = gr.Accordion("高级参数（植入错误等）", open=False) if group else gr.Group()
        with ctx:
            for p in params:
                label = f"{p.help}（{p.name}）" if p.help else p.name
                if p.choices:
                    made[p.name] = gr.Dropdown(choices=list(p.choices), value=p.default, label=label)
                elif p.kind is bool:
                    made[p.name] = gr.Checkbox(value=p.default, label=label)
                elif p.kind in (int, float):
                    made[p.name] = gr.Number(value=p.default, label=label, minimum=p.min, maximum=p.max,
                                             precision=0 if p.kind is int else None,
                                             step=1 if p.kind is int else 0.01)
                else:
                    made[p.name] = gr.Textbox(value=str(p.default), label=label)
    return [made[p.name] for p in spec.params]


def create_ui(ui: dict) -> None:
    """The 演示 tab's blocks, added to `ui`."""
    with gr.Tab("演示", id="demos"):
        forms = []
        for spec in present.loadable_specs():
            with gr.Accordion(spec.title, open=False, elem_id=f"demo-form-{spec.id}"):
                device = present.DEVICE_LABEL.get(spec.device, spec.device)
                gr.Markdown(html.escape(spec.summary) + f"\n\n设备：{device} · 进程数：{spec.processes} · "
                            f"时间上限：{spec.timeout_s:g} s · 相关文章：{len(spec.articles)} 篇")
                inputs = param_inputs(spec)
                run_btn = gr.Button("运行", variant="primary", elem_id=f"run-{spec.id}")
                forms.append((spec.id, inputs, run_btn))
        ui["demo_forms"] = forms
        ui["demos_cards"] = RunCards("demos")
        ui["run_history"] = gr.Dataframe(headers=present.HISTORY_HEADERS, label="运行历史（点击一行重新打开）",
                                         interactive=False, elem_id="run-history", wrap=True)
        ui["refresh_history"] = gr.Button("刷新运行历史", size="sm")


def create_event_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    cards, history = ui["demos_cards"], ui["run_history"]
    def launcher(demo_id: str):
        def launch(*values, request: gr.Request):
            return state.launch_demo_form(demo_id, *values, request=request)
        return launch

    for demo_id, inputs, run_btn in ui["demo_forms"]:
        run_btn.click(launcher(demo_id), inputs, cards.boxes, api_visibility="private", concurrency_limit=None,
                      trigger_mode="multiple")
    cards.wire(state, history)   # the history shows a run once it has ended
    history.select(state.reopen_run, [history], cards.boxes, api_visibility="private")
    ui["refresh_history"].click(state.history_rows, None, history, api_visibility="private")
    demo.load(state.history_rows, None, history, api_visibility="private")
