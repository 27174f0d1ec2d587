"""The app's CSS and <head>: readable contrast (≥ 4.5:1 for text), no horizontal scroll at phone width, the answer's
label, sources and previews, demo cards with ✓/✗ in colour, and the embed mode."""

CSS = """
:root, .gradio-container { --body-text-color-subdued: #4b5563; --input-placeholder-color: #5b6472;
  --block-info-text-color: #4b5563; --block-label-text-color: #374151;
  /* gradio's orange (#f97316) under white or on white text is 2.8:1; this darker orange is 5.2:1 */
  --color-accent: #c2410c !important; --button-primary-background-fill: #c2410c !important;
  --button-primary-background-fill-hover: #9a3412 !important; --button-primary-text-color: #ffffff !important;
  --button-primary-border-color: #c2410c !important; }
.gradio-container { max-width: 1100px !important; margin: 0 auto; }
textarea::placeholder, input::placeholder { color: #5b6472 !important; opacity: 1; }
footer, footer a, footer button { color: #4b5563 !important; }
html, body { overflow-x: hidden; }
.kb-banner { padding: .4em .8em; background: #eef5ff; border-radius: 6px; color: #1f2937; }
#evidence table { font-size: .85em; }
.kb-mode { display: inline-block; font-size: .78em; padding: 0 .5em; border-radius: 4px; background: #e8eefc;
  color: #1e3a8a; }
.kb-sources { border-top: 1px solid #d1d5db; margin-top: .6em; padding-top: .3em; font-size: .92em; }
.kb-sources-head { font-weight: 600; margin: .2em 0; }
.kb-source-title { margin: .3em 0 .1em; font-weight: 600; }
.kb-cite summary { cursor: pointer; }
.kb-cite blockquote { margin: .3em 0 .3em .6em; padding-left: .6em; border-left: 3px solid #cbd5e1; color: #374151; }
.kb-pass { color: #166534; font-weight: 700; } .kb-fail { color: #b91c1c; font-weight: 700; }
.kb-run-checks li { list-style: none; }
.kb-run-card { border: 1px solid #d1d5db; border-radius: 8px; padding: .5em .8em; }
.kb-run-cards { gap: .8em; }
.kb-run-images img { object-fit: contain !important; }
.kb-welcome ul { columns: 2 22em; column-gap: 1.5em; padding-left: 1.1em; margin: .3em 0; }
.kb-welcome li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; break-inside: avoid; }
.kb-welcome .kb-sum { color: #4b5563; }
.kb-followup { white-space: normal !important; text-align: left; }
#chat .message-wrap, #chat .message { overflow-wrap: anywhere; }
#chat pre, #chat table, .kb-run-card pre { max-width: 100%; overflow-x: auto; }
@media (max-width: 480px) {
  .gradio-container { padding: 0 6px !important; }
  #ask-row, #conv-bar, #answer-tools, #demo-buttons { flex-wrap: wrap; }
  #send, #stop { min-width: 60px !important; }
  .tab-wrapper { overflow-x: auto; }
}
body.kb-embed .tab-wrapper, body.kb-embed footer { display: none !important; }
"""

# gradio picks its built-in strings ("Error", "Copy message", "Use via API", ...) by the browser's language;
# this app is Chinese whatever the browser says, so the page reports zh-CN before gradio reads it. It must
# run before gradio's scripts: gradio's own `head=` is inserted too late, so `add_head` puts it first.
# A few strings gradio's zh-CN translation lacks are replaced where they appear (tooltips, labels, text).
HEAD = """<script>(function () {
  try {
    Object.defineProperty(Navigator.prototype, "language", {get: function () { return "zh-CN"; }, configurable: true});
    Object.defineProperty(Navigator.prototype, "languages", {get: function () { return ["zh-CN", "zh"]; }, configurable: true});
  } catch (e) {}
  var zh = {"Copy message": "复制", "Copy": "复制", "Copied!": "已复制", "Copied": "已复制", "Error": "出错了",
            "Warning": "提示", "Info": "提示", "Like": "赞", "Dislike": "踩", "Retry": "重试", "Undo": "撤销",
            "Clear": "清空", "Loading...": "加载中…", "common.complete": "完成", "Close": "关闭",
            "More tabs": "更多标签页", "Copy table data": "复制表格数据", "Fullscreen": "全屏",
            "Exit fullscreen": "退出全屏", "Open cell menu": "打开单元格菜单", "File upload": "上传文件",
            "Click to upload or drop files": "点击上传或拖入文件", "Download": "下载", "Share": "分享",
            "Sort ascending": "升序", "Sort descending": "降序", "Clear sort": "取消排序"};
  var attrs = ["title", "aria-label", "placeholder"];
  function fix(root) {
    if (!root || root.nodeType !== 1) return;
    var all = [root].concat(Array.prototype.slice.call(root.querySelectorAll("*")));
    all.forEach(function (el) {
      attrs.forEach(function (a) { var v = el.getAttribute(a); if (v && zh[v.trim()]) el.setAttribute(a, zh[v.trim()]); });
      Array.prototype.forEach.call(el.childNodes, function (n) {
        if (n.nodeType === 3 && zh[n.nodeValue.trim()]) n.nodeValue = zh[n.nodeValue.trim()];
      });
    });
  }
  new MutationObserver(function (records) {
    records.forEach(function (r) {
      if (r.type === "characterData") { var t = r.target; if (zh[t.nodeValue.trim()]) t.nodeValue = zh[t.nodeValue.trim()]; }
      else if (r.type === "attributes") fix(r.target);
      else r.addedNodes.forEach(function (n) { if (n.nodeType === 3) { if (zh[n.nodeValue.trim()]) n.nodeValue = zh[n.nodeValue.trim()]; } else fix(n); });
    });
  }).observe(document.documentElement, {subtree: true, childList: true, characterData: true, attributes: true,
                                          attributeFilter: attrs});
})();</script>"""


def add_head(server, path: str = "/") -> None:
    """Insert HEAD at the top of the <head> of the app's page (`path`) served by FastAPI app `server`."""
    from starlette.responses import Response

    marker = b"<head>"

    @server.middleware("http")
    async def chinese_first(request, call_next):
        response = await call_next(request)
        if request.method != "GET" or request.url.path != path or \
                not response.headers.get("content-type", "").startswith("text/html"):
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        body = body.replace(marker, marker + HEAD.encode(), 1)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(body, status_code=response.status_code, headers=headers)
