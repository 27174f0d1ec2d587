// Article pages (kb/render.py): typeset the formulas with KaTeX's auto-render, whose URL the page gives in
// data-autorender. A file, not an inline script, so the page's CSP can allow same-origin scripts only.
const tag = document.querySelector("script[data-autorender]");
const { default: render } = await import(new URL(tag.dataset.autorender, document.baseURI).href);
for (const el of document.querySelectorAll(".math")) {
  render(el, {delimiters: [{left: "$$", right: "$$", display: true}, {left: "$", right: "$", display: false}],
              throwOnError: false});
}
// Formulas change the layout: land on the cited section again once they are typeset.
if (location.hash) { document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView(); }
document.body.dataset.math = "rendered";
