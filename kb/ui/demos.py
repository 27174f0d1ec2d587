"""The 演示 tab: one form per demo (bounded inputs from its spec), the run panel and the run history.

DemoHandlers (mixed into ChatApp) submit runs to the demos.runner.Runner and stream their view; the demo
buttons under an answer (chat.py) use them too.
"""
from __future__ import annotations

import html

import gradio as gr

from demos import present, registry
from demos.spec import DemoParamError, DemoSpec
from kb.ui.runs import RunPanel, stream_view


class DemoHandlers:
    """Demo handlers; `self` is the ChatApp (runner)."""

    def start_demo(self, demo_id: str, params: dict | None = None):
        """Submit a run: RunHandle, or gr.Error for an unknown demo or a bad parameter."""
        try:
            return self.runner.submit(demo_id, params or {})
        except registry.UnknownDemo as exc:
            raise gr.Error(str(exc)) from None
        except (DemoParamError, ValueError) as exc:
            raise gr.Error(f"参数有误：{exc}") from None

    def run_linked_demo(self, index: int, demo_ids: list[str]):
        """A demo button under an answer: run the index-th linked demo and stream its view."""
        if not demo_ids or index >= len(demo_ids):
            raise gr.Error("这个回答没有对应的演示。")
        yield from stream_view(self.start_demo(demo_ids[index]), self.runner.max_concurrent)

    def run_demo_form(self, demo_id: str, *values):
        """The Demos tab: parameters in the spec's order (advanced ones included)."""
        spec = registry.get(demo_id)
        params = {p.name: v for p, v in zip(spec.params, values) if v is not None and v != ""}
        yield from stream_view(self.start_demo(demo_id, params), self.runner.max_concurrent)

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
                label = f"{p.name}：{p.help}" if p.help else p.name
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
            with gr.Accordion(f"{spec.title}（{spec.id}）", open=False):
                gr.Markdown(html.escape(spec.summary) + f"\n\n设备：{spec.device} · 进程数：{spec.processes} · "
                            f"超时：{spec.timeout_s:g} s · 文章：{', '.join(spec.articles)}")
                inputs = param_inputs(spec)
                run_btn = gr.Button("运行", variant="primary", elem_id=f"run-{spec.id}")
                forms.append((spec.id, inputs, run_btn))
        ui["demo_forms"] = forms
        ui["demos_panel"] = RunPanel("demos")
        ui["run_history"] = gr.Dataframe(headers=present.HISTORY_HEADERS, label="运行历史", interactive=False)
        ui["refresh_history"] = gr.Button("刷新运行历史", size="sm")


def create_event_handlers(state, ui: dict, demo: gr.Blocks) -> None:
    panel, history = ui["demos_panel"], ui["run_history"]
    for demo_id, inputs, run_btn in ui["demo_forms"]:
        run_btn.click(lambda *v, d=demo_id: (yield from state.run_demo_form(d, *v)), inputs, panel.outputs,
                      api_visibility="private").then(state.history_rows, None, history, api_visibility="private")
    panel.stop.click(state.cancel_run, [panel.run_id], [panel.status], api_visibility="private")
    ui["refresh_history"].click(state.history_rows, None, history, api_visibility="private")
    demo.load(state.history_rows, None, history, api_visibility="private")
