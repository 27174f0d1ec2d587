"""The 演示 tab: one form per demo (bounded inputs from its spec), the run cards and the run history, whose
rows reopen a past run (its checks, log and plots).

DemoHandlers (mixed into ChatApp) submit runs to the demos.runner.Runner (or the Celery pool's
RemoteRunner, same API) and stream a card's view; the demo
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
from kb.ui.messages import info
from kb.ui.owner import track_demo
from kb.ui.runs import RunCards, session_key, stream_view


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
        except registry.UnknownDemo:
            raise refuse(f"没有这个演示：{html.escape(demo_id[:100], quote=False)}", request, "demo") from None
        except QueueFull as exc:
            raise refuse(str(exc), request, "demo") from None
        except RunnerUnavailable as exc:   # the Celery pool's broker is down: demos wait, answers go on
            raise refuse(str(exc), request, "demo") from None
        except (DemoParamError, ValueError, TypeError) as exc:
            raise refuse(f"参数有误：{html.escape(str(exc)[:300], quote=False)}", request, "demo") from None
        track_demo(getattr(self, "question_log", None), question_id, handle)
        return handle

    def stream_run(self, run_id: str, request: gr.Request = None):
        """A card's view of run `run_id` (this client's own) until it ends; at once for a past run."""
        if not run_id:
            return
        handle = self.own_run(run_id, request)
        if handle is None:
            raise refuse("没有这个运行（只能查看自己启动的运行）。", request, "demo")
        expected = present.expected_checks(self.runner.load_history(), handle.demo)
        yield from stream_view(handle, self.runner.max_concurrent, expected)

    def launch_demo_form(self, demo_id: str, *values, request: gr.Request = None):
        """The Demos tab: parameters in the spec's order (advanced ones included). -> the card boxes."""
        spec = registry.get(demo_id)
        params = {p.name: v for p, v in zip(spec.params, values) if v is not None and v != ""}
        handle = self.start_demo(demo_id, params, request)
        if handle.status == "queued":
            info(f"“{spec.title}”已加入队列：前面还有演示在运行，轮到时自动开始。")
        return self.card_slots.place(self.runner, handle, session_key(request, "demos"))

    def reopen_run(self, rows, evt: gr.SelectData, request: gr.Request = None):
        """A click on a history row shows that run (checks, log, plots) in a card."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            run_id = (rows.iloc[row, 0] if hasattr(rows, "iloc") else rows[row][0])
        except (IndexError, KeyError, TypeError):
            raise refuse("请点击运行历史中的一行。", request, "demo") from None
        handle = self.own_run(str(run_id), request)
        if handle is None:
            raise refuse("没有这个运行（只能查看自己启动的运行）。", request, "demo")
        return self.card_slots.place(self.runner, handle, session_key(request, "demos"))

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
        def launch(request: gr.Request, *values):   # the request first (gradio inserts it), then the values
            return state.launch_demo_form(demo_id, *values, request=request)
        return launch

    for demo_id, inputs, run_btn in ui["demo_forms"]:
        run_btn.click(launcher(demo_id), inputs, cards.boxes, api_visibility="private", concurrency_limit=None,
                      trigger_mode="multiple")
    cards.wire(state, history)   # the history shows a run once it has ended
    history.select(state.reopen_run, [history], cards.boxes, api_visibility="private")
    ui["refresh_history"].click(state.history_rows, None, history, api_visibility="private")
    demo.load(state.history_rows, None, history, api_visibility="private")
