/* The one-tag chat widget for a blog page (served by the app at /widget.js; no CDN, no dependencies).

   <script src="http://127.0.0.1:7860/widget.js" data-article="python-generators" defer></script>

   data-article   the post's slug; else <meta name="kb-article" content="SLUG">; else the page's path is
                  looked up in the app's /widget/pages.json (the posts' permalinks, kb/sources.py)
   data-title     the panel's title (default 博客问答)
   data-color     button and header colour (any CSS colour, default #2563eb)
   data-position  right (default) or left
   data-label     the button's text (default 问答)
   data-open      "1": open the panel at once

   Everything lives in a Shadow DOM under one fixed, zero-size host element, so the page's CSS and the
   widget's never mix and nothing of the page's own layout moves; the chat itself is the app's embed view
   (/?embed=1) in an iframe. On screens narrower than 640 px the panel fills the screen.
*/
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__kbWidget) { return; }
  window.__kbWidget = true;
  var base = script.src.replace(/\/widget\.js(\?.*)?$/, "");
  var data = script.dataset;
  var title = data.title || "博客问答";
  var label = data.label || "问答";
  var left = (data.position || "right").toLowerCase() === "left";
  var color = safeColor(data.color) || "#2563eb";

  function safeColor(value) {
    // Only a colour, never CSS that could escape the declaration.
    if (!value || !/^[#a-zA-Z0-9(),.%\s-]{1,40}$/.test(value)) { return null; }
    return window.CSS && CSS.supports && !CSS.supports("color", value) ? null : value.trim();
  }

  function metaSlug() {
    var meta = document.querySelector('meta[name="kb-article"]');
    return meta ? (meta.getAttribute("content") || "").trim() : "";
  }

  function normalPath(path) {
    try { path = decodeURIComponent(path); } catch (e) { /* keep it as it is */ }
    path = path.replace(/\/index\.html?$/, "/").replace(/\.html?$/, "");
    return path.length > 1 ? path.replace(/\/+$/, "") : path;
  }

  function findSlug(done) {
    var slug = (data.article || "").trim() || metaSlug();
    if (slug) { done(slug); return; }
    var xhr = new XMLHttpRequest();
    xhr.open("GET", base + "/widget/pages.json");
    xhr.onload = function () {
      var found = "";
      try {
        var pages = JSON.parse(xhr.responseText).pages || {};
        var here = normalPath(location.pathname);
        Object.keys(pages).forEach(function (page) { if (normalPath(page) === here) { found = pages[page]; } });
      } catch (e) { /* no mapping: the chat works without an article */ }
      done(found);
    };
    xhr.onerror = function () { done(""); };
    xhr.send();
  }

  var host = document.createElement("div");
  host.id = "kb-widget";
  host.setAttribute("style", "all:initial;position:fixed;width:0;height:0;bottom:0;" + (left ? "left:0;" : "right:0;")
    + "z-index:2147483000;");
  var root = host.attachShadow({ mode: "open" });
  var side = left ? "left" : "right";
  root.innerHTML =
    "<style>" +
    ":host{all:initial}" +
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'PingFang SC','Noto Sans CJK SC','Microsoft YaHei',sans-serif}" +
    ".btn{position:fixed;bottom:20px;" + side + ":20px;height:52px;min-width:52px;padding:0 18px;border:0;" +
    "border-radius:26px;background:var(--kb-color);color:#fff;font-size:16px;line-height:52px;cursor:pointer;" +
    "box-shadow:0 4px 14px rgba(0,0,0,.25)}" +
    ".btn:focus-visible,.close:focus-visible{outline:3px solid #111;outline-offset:2px}" +
    ".panel{position:fixed;bottom:84px;" + side + ":20px;width:400px;height:640px;max-height:calc(100vh - 104px);" +
    "display:none;flex-direction:column;background:#fff;border-radius:12px;overflow:hidden;" +
    "box-shadow:0 8px 30px rgba(0,0,0,.3)}" +
    ".panel.open{display:flex}" +
    ".head{display:flex;align-items:center;justify-content:space-between;height:48px;padding:0 8px 0 16px;" +
    "background:var(--kb-color);color:#fff;font-size:16px;font-weight:600}" +
    ".close{width:40px;height:40px;border:0;background:transparent;color:#fff;font-size:24px;cursor:pointer}" +
    "iframe{flex:1;width:100%;border:0;background:#fff}" +
    "@media (max-width:640px){.panel{top:0;left:0;right:0;bottom:0;width:100vw;height:100vh;height:100dvh;" +
    "max-height:none;border-radius:0}}" +
    "</style>" +
    "<button class='btn' part='button' type='button' aria-haspopup='dialog' aria-expanded='false'></button>" +
    "<div class='panel' part='panel' role='dialog' aria-modal='false'>" +
    "<div class='head'><span class='title'></span><button class='close' type='button' aria-label='关闭'>×</button></div>" +
    "</div>";
  root.host.style.setProperty("--kb-color", color);
  var button = root.querySelector(".btn");
  var panel = root.querySelector(".panel");
  button.textContent = label;
  button.setAttribute("aria-label", title);
  root.querySelector(".title").textContent = title;
  panel.setAttribute("aria-label", title);
  var frame = null;

  function open() {
    panel.classList.add("open");
    button.setAttribute("aria-expanded", "true");
    if (!frame) {
      frame = document.createElement("iframe");
      frame.title = title;
      frame.setAttribute("allow", "clipboard-write");
      panel.appendChild(frame);
      findSlug(function (slug) {
        frame.src = base + "/?embed=1" + (slug ? "&article=" + encodeURIComponent(slug) : "");
        host.setAttribute("data-article", slug);
      });
    }
  }

  function close() {
    panel.classList.remove("open");
    button.setAttribute("aria-expanded", "false");
    button.focus();
  }

  button.addEventListener("click", function () { panel.classList.contains("open") ? close() : open(); });
  root.querySelector(".close").addEventListener("click", close);
  root.addEventListener("keydown", function (e) { if (e.key === "Escape") { close(); } });

  function mount() {
    document.body.appendChild(host);
    if (data.open === "1") { open(); }
  }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
})();
