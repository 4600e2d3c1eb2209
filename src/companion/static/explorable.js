/* Interactive figures of the companion package (companion.interactive.Explorable).
 *
 * Plain JavaScript, no libraries, nothing fetched. The Python side inlines this file in a
 * classic script element and calls companionExplorable(root, data, attentionView), where
 *
 *   data.controls: [{kind: "slider"|"select"|"buttons"|"checkbox"|"text", name, label,
 *                    labels: [shown values], value: index shown first}]
 *   data.parts:    distinct things a frame shows: {t: "png", src, w, h} | {t: "text", s} |
 *                  {t: "html", s} | {t: "view", d: attention view data}
 *   data.frames:   for each combination of control indices, in row-major order (the last
 *                  control varies fastest), the list of parts it shows
 *   attentionView: companionAttentionView, passed only when some part is a view.
 *
 * Every element it touches is created under `root`, so several explorables share a page.
 */
function companionExplorable(root, data, attentionView) {
  "use strict";
  var CSS =
    ".cex{font:13px/1.35 system-ui,-apple-system,'Segoe UI',sans-serif;color:inherit;margin:.4em 0;}" +
    ".cex-title{font-weight:600;margin-bottom:.3em;}" +
    ".cex-bar{display:flex;flex-wrap:wrap;align-items:center;gap:.4em 1.2em;margin-bottom:.5em;}" +
    ".cex-bar label,.cex-ctl{display:inline-flex;align-items:center;gap:.4em;}" +
    ".cex-bar select{font:inherit;padding:1px 4px;max-width:32em;}" +
    ".cex-bar input[type=range]{width:14em;}" +
    ".cex-out{font-variant-numeric:tabular-nums;min-width:3.5em;}" +
    ".cex-seg{display:inline-flex;border:1px solid #8a8a8a;border-radius:4px;overflow:hidden;}" +
    ".cex-seg button{font:inherit;border:0;padding:2px 10px;background:transparent;color:inherit;cursor:pointer;}" +
    ".cex-seg button+button{border-left:1px solid #8a8a8a;}" +
    ".cex-seg button[aria-pressed=true]{background:#3b528b;color:#fff;}" +
    ".cex button:focus-visible,.cex select:focus-visible,.cex input:focus-visible{outline:2px solid #e9a03b;outline-offset:1px;}" +
    ".cex-frame img{display:block;max-width:100%;height:auto;}" +
    ".cex-frame pre{margin:.2em 0 .4em;padding:.3em .5em;white-space:pre-wrap;font-size:12.5px;background:rgba(127,127,127,.08);border-radius:3px;}";

  var idx = data.controls.map(function (c) { return c.value; });
  var views = [];

  function el(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    for (var a in attrs) e.setAttribute(a, attrs[a]);
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  // A caption whose $...$ pieces become \(...\) for the page's MathJax.
  function caption(parent, text) {
    var pieces = String(text).split("$");
    for (var i = 0; i < pieces.length; i++) {
      if (!pieces[i]) continue;
      if (i % 2 === 1 && i < pieces.length - 1) {
        el("span", { "class": "math notranslate nohighlight" }, parent, "\\(" + pieces[i] + "\\)");
      } else {
        parent.appendChild(document.createTextNode(i % 2 === 1 ? "$" + pieces[i] : pieces[i]));
      }
    }
    return parent;
  }
  function plain(text) { return String(text).replace(/\$/g, ""); }

  function frameIndex() {
    var flat = 0;
    for (var i = 0; i < data.controls.length; i++) flat = flat * data.controls[i].labels.length + idx[i];
    return flat;
  }

  // An attention view keeps the reader's choices (layer, head, lines or heatmap) from one
  // frame to the next, when the new frame's view has that layer and head.
  function keep(d, s) {
    if (!s) return d;
    var out = {}, k;
    for (k in d) out[k] = d[k];
    if (s.layer < d.shape[0]) out.layer = s.layer;
    if (s.head < d.shape[1] && (s.head >= 0 || d.shape[1] > 1)) out.head = s.head;
    out.mode = s.mode;
    return out;
  }

  function show() {
    var kept = views.map(function (v) { return v && v.state ? v.state() : null; });
    views.forEach(function (v) { if (v && v.destroy) v.destroy(); });
    views = [];
    stage.textContent = "";
    data.frames[frameIndex()].forEach(function (p) {
      var part = data.parts[p];
      if (part.t === "png") {
        el("img", { src: part.src, width: part.w, height: part.h, alt: describe() }, stage);
      } else if (part.t === "text") {
        el("pre", {}, stage, part.s);
      } else if (part.t === "html") {
        var box = el("div", { "class": "cex-html" }, stage);
        box.innerHTML = part.s;
      } else if (part.t === "view" && attentionView) {
        views.push(attentionView(el("div", { "class": "companion-attention-view" }, stage),
                                 keep(part.d, kept[views.length])));
      }
    });
    root.setAttribute("data-frame", String(frameIndex()));
  }

  function describe() {
    return data.controls.map(function (c, i) { return plain(c.label) + " = " + c.labels[idx[i]]; }).join(", ");
  }

  function choose(i, k) {
    idx[i] = k;
    show();
  }

  // ---- the controls ------------------------------------------------------------------
  function slider(bar, c, i) {
    var lab = caption(el("label", { "class": "cex-ctl" }, bar), c.label);
    var input = el("input", { type: "range", min: 0, max: c.labels.length - 1, step: 1,
                              value: c.value, "data-control": c.name, "aria-label": plain(c.label),
                              "aria-valuetext": c.labels[c.value] }, lab);
    var out = el("output", { "class": "cex-out" }, lab, c.labels[c.value]);
    input.addEventListener("input", function () {
      out.textContent = c.labels[+input.value];
      input.setAttribute("aria-valuetext", c.labels[+input.value]);
      choose(i, +input.value);
    });
  }
  function select(bar, c, i) {
    var lab = caption(el("label", { "class": "cex-ctl" }, bar), c.label);
    var sel = el("select", { "data-control": c.name, "aria-label": plain(c.label) }, lab);
    c.labels.forEach(function (name, k) { el("option", { value: k }, sel, name); });
    sel.value = String(c.value);
    sel.addEventListener("change", function () { choose(i, +sel.value); });
  }
  function buttons(bar, c, i) {
    var wrap = el("span", { "class": "cex-ctl" }, bar);
    if (c.label) caption(el("span", {}, wrap), c.label);
    var seg = el("span", { "class": "cex-seg", role: "group", "aria-label": plain(c.label),
                           "data-control": c.name }, wrap);
    c.labels.forEach(function (name, k) {
      var b = el("button", { type: "button", "aria-pressed": String(k === c.value) }, seg, name);
      b.addEventListener("click", function () {
        Array.prototype.forEach.call(seg.children, function (x, n) {
          x.setAttribute("aria-pressed", String(n === k));
        });
        choose(i, k);
      });
    });
  }
  function checkbox(bar, c, i) {
    var lab = el("label", { "class": "cex-ctl" }, bar);
    var box = el("input", { type: "checkbox", "data-control": c.name }, lab);
    box.checked = c.value === 1;
    caption(lab, c.label);
    box.addEventListener("change", function () { choose(i, box.checked ? 1 : 0); });
  }

  root.textContent = "";
  var body = el("div", { "class": "cex" }, root);
  el("style", {}, body, CSS);
  if (data.title) caption(el("div", { "class": "cex-title" }, body), data.title);
  var bar = el("div", { "class": "cex-bar" }, body);
  data.controls.forEach(function (c, i) {
    if (c.kind === "slider") slider(bar, c, i);
    else if (c.kind === "buttons") buttons(bar, c, i);
    else if (c.kind === "checkbox") checkbox(bar, c, i);
    else select(bar, c, i);  // "select" and "text" (a menu of precomputed examples)
  });
  var stage = el("div", { "class": "cex-frame", "aria-live": "polite" }, body);
  show();

  // Labels with TeX: the book's MathJax typesets them at start-up; if it has already
  // started (a page that adds this later), ask it to typeset them now.
  var MJ = window.MathJax;
  if (body.querySelector(".math") && MJ && MJ.typesetPromise && MJ.startup && MJ.startup.document) {
    MJ.startup.promise.then(function () { return MJ.typesetPromise([body]); });
  }
  return { show: show, destroy: function () { root.textContent = ""; } };
}
