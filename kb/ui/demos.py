"""The 演示 tab: one form per demo (bounded inputs from its spec), the run panel and the run history.

DemoHandlers (mixed into ChatApp) submit runs to the demos.runner.Runner (or the Celery pool's
RemoteRunner, same API) and stream their view; the demo
buttons under an answer (chat.py) use them too.
"""
from __future__ import annotations

import html

import gradio as gr

from demos import present, registry
from demos.runner import QueueFull, RunnerUnavailable
from demos.spec import DemoParamError, DemoSpec
from kb import security
from kb.security import UnsafeInput
from kb.ui.guard import client_key, refuse
from kb.ui.owner import track_demo
from kb.ui.runs import RunPanel, stream_view


class DemoHandlers:
    """Demo handlers; `self` is the ChatApp (runner)."""

    def start_demo(self, demo_id: str, params: dict | None = None, request: gr.Request = None,
                   question_id: int | None = None):
        """Submit a run for this client (its session): RunHandle, or gr.Error for an unknown demo, a bad
        parameter or a full queue. The launch and its pass/fail go to the question log (linked to the
        question that offered the demo, when known)."""
        try:
            demo_id = security.text_field(demo_id, "demo_id", self.limits, required=True)
            handle = self.runner.submit(demo_id, params or {}, client=client_key(request))
        except UnsafeInput as exc:
            raise refuse(str(exc), request, "demo") from None
        except registry.UnknownDemo as exc:
            raise refuse(f"没有这个演示：{html.escape(str(exc)[:300], quote=False)}", request, "demo") from None
        except QueueFull as exc:
            raise refuse(str(exc), request, "demo") from None
        except RunnerUnavailable as exc:   # the Celery pool's broker is down: demos wait, answers go on
            raise refuse(str(exc), request, "demo") from None
        except (DemoParamError, ValueError, TypeError) as exc:
            raise refuse(f"参数有误：{html.escape(str(exc)[:300], quote=False)}", request, "demo") from None
        track_demo(getattr(self, "question_log", None), question_id, handle)
        return handle

    def run_linked_demo(self, index: int, demo_ids: list[str], request: gr.Request = None):
        """A demo button under an answer: run the index-th linked demo and stream its view."""
        if not isinstance(demo_ids, list) or index >= len(demo_ids):
            raise refuse("这个回答没有对应的演示。", request, "demo")
        yield from stream_view(self.start_demo(demo_ids[index], request=request), self.runner.max_concurrent)

    def run_demo_form(self, demo_id: str, *values, request: gr.Request = None):
        """The Demos tab: parameters in the spec's order (advanced ones included)."""
        spec = registry.get(demo_id)
        params = {p.name: v for p, v in zip(spec.params, values) if v is not None and v != ""}
        yield from stream_view(self.start_demo(demo_id, params, request), self.runner.max_concurrent)

    def own_run(self, run_id, request: gr.Request = None):
        """The run with this id when this client started it, else None (runs are private to a session)."""
        handle = self.runner.get(run_id) if isinstance(run_id, str) else None
        return handle if handle is not None and handle.client == client_key(request) else None

    def cancel_run(self, run_id: str, request: gr.Request = None):
        handle = self.own_run(run_id, request)
        if handle is None or handle.done:
            return "没有正在运行的演示。"
        handle.cancel()
        return f"已请求停止 {run_id}。"

    def history_rows(self, request: gr.Request = None) -> list[list]:
        """This client's runs only: another visitor's runs (and logs) are not shown."""
        me = client_key(request)
        return present.history_rows(h for h in self.runner.load_history() if h.client == me)


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
        run_btn.click(demo_form_handler(state, demo_id), inputs, panel.outputs,
                      api_visibility="private").then(state.history_rows, None, history, api_visibility="private")
    panel.stop.click(state.cancel_run, [panel.run_id], [panel.status], api_visibility="private")
    ui["refresh_history"].click(state.history_rows, None, history, api_visibility="private")
    demo.load(state.history_rows, None, history, api_visibility="private")


def demo_form_handler(state, demo_id: str):
    """A demo's Run button: the request first (gradio inserts it), then the form's values."""
    def run(request: gr.Request, *values):
        yield from state.run_demo_form(demo_id, *values, request=request)
    return run
