/* Attention viewer of the companion package (companion.attention_view.AttentionView).
 *
 * Plain JavaScript, no libraries, nothing fetched. The Python side inlines this file in a
 * classic script element (static HTML, Jupyter, Colab, VS Code) and in an anywidget ES module
 * (live kernel); both call companionAttentionView(root, data).
 *
 * data (built by attention_view.py):
 *   shape [L, H, Q, K]; w: flat integers, weight = w / scale, index ((l*H + h)*Q + i)*K + j;
 *   q, k: token strings; vmax: top of the colour scale; cmap: colours from 0 to vmax;
 *   layers, heads: names; mode: "lines" | "heatmap"; layer: int; head: int or -1 (all heads);
 *   title, qlabel, klabel, llabel, hlabel: strings or null (captions).
 *
 * Every element it touches is created under `root`, so several viewers share a page.
 * Returns {update(data), destroy()}.
 */
function companionAttentionView(root, data) {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var ROW = 22;          // height of a token row in the lines view, px
  var CHAR = 7.4;        // approximate width of a character of the token font, px
  var GAP = 150;         // horizontal room for the lines between the two token columns

  var CSS =
    ".cav{font:13px/1.3 system-ui,-apple-system,'Segoe UI',sans-serif;color:inherit;margin:.4em 0;}" +
    ".cav-title{font-weight:600;margin-bottom:.3em;}" +
    ".cav-bar{display:flex;flex-wrap:wrap;align-items:center;gap:.4em 1em;margin-bottom:.4em;}" +
    ".cav-bar label{display:inline-flex;align-items:center;gap:.3em;}" +
    ".cav-bar select{font:inherit;padding:1px 4px;}" +
    ".cav-seg{display:inline-flex;border:1px solid #8a8a8a;border-radius:4px;overflow:hidden;}" +
    ".cav-seg button{font:inherit;border:0;padding:2px 9px;background:transparent;color:inherit;cursor:pointer;}" +
    ".cav-seg button[aria-pressed=true]{background:#3b528b;color:#fff;}" +
    ".cav button:focus-visible,.cav select:focus-visible,.cav [tabindex]:focus-visible{outline:2px solid #e9a03b;outline-offset:1px;}" +
    ".cav-legend{display:inline-flex;align-items:center;gap:.35em;font-size:12px;}" +
    ".cav-stage{overflow-x:auto;max-width:100%;}" +
    ".cav-stage svg{display:block;overflow:visible;}" +
    ".cav svg text{fill:currentColor;font:12px system-ui,-apple-system,'Segoe UI',sans-serif;}" +
    ".cav .cav-tok{cursor:pointer;outline:none;}" +
    ".cav .cav-tok:focus-visible rect{stroke:#e9a03b;stroke-width:2;}" +
    ".cav .cav-tile{cursor:pointer;}" +
    ".cav .cav-tile:focus-visible>rect.cav-frame{stroke:#e9a03b;stroke-width:2;}" +
    ".cav-status{min-height:1.3em;font-size:12px;opacity:.85;margin-top:.3em;}" +
    ".cav-hint{font-size:11px;opacity:.7;}";

  var d, st, body, stage, status, legend;

  function el(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    for (var a in attrs) e.setAttribute(a, attrs[a]);
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function sv(tag, attrs, parent, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var a in attrs) e.setAttribute(a, attrs[a]);
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function weight(l, h, i, j) {
    var s = d.shape;
    return d.w[((l * s[1] + h) * s[2] + i) * s[3] + j] / d.scale;
  }
  function frac(w) { return d.vmax > 0 ? Math.max(0, Math.min(1, w / d.vmax)) : 0; }
  function colour(w) { var c = d.cmap; return c[Math.round(frac(w) * (c.length - 1))]; }
  function ink(w) {
    // black or white text, whichever reads better on colour(w)
    var c = colour(w), r = parseInt(c.substr(1, 2), 16), g = parseInt(c.substr(3, 2), 16),
        b = parseInt(c.substr(5, 2), 16);
    return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#000" : "#fff";
  }
  function fmt(w) { return w.toFixed(Math.min(3, Math.max(0, Math.round(Math.log10(d.scale))))); }
  function textWidth(tokens) {
    var m = 1;
    for (var i = 0; i < tokens.length; i++) m = Math.max(m, String(tokens[i]).length);
    return Math.ceil(m * CHAR) + 14;
  }
  function headName(h) { return d.heads[h]; }

  // ---- the bar of controls and the legend --------------------------------------------
  function buildBar() {
    var bar = el("div", { "class": "cav-bar" }, body);
    if (d.shape[0] > 1) {
      var lab = el("label", {}, bar, (d.llabel || "Layer") + " ");
      var sel = el("select", { "aria-label": "layer", "data-role": "layer" }, lab);
      d.layers.forEach(function (name, l) { el("option", { value: l }, sel, name); });
      sel.value = String(st.layer);
      sel.addEventListener("change", function () { st.layer = +sel.value; draw(); });
    }
    if (d.shape[1] > 1) {
      var labh = el("label", {}, bar, (d.hlabel || "Head") + " ");
      var selh = el("select", { "aria-label": "head", "data-role": "head" }, labh);
      el("option", { value: -1 }, selh, "all (grid)");
      d.heads.forEach(function (name, h) { el("option", { value: h }, selh, name); });
      selh.value = String(st.head);
      selh.addEventListener("change", function () { st.head = +selh.value; draw(); });
    }
    var seg = el("span", { "class": "cav-seg", role: "group", "aria-label": "view" }, bar);
    ["lines", "heatmap"].forEach(function (m) {
      var b = el("button", { type: "button", "data-mode": m, "aria-pressed": String(st.mode === m) }, seg, m);
      b.addEventListener("click", function () {
        st.mode = m;
        seg.querySelectorAll("button").forEach(function (x) {
          x.setAttribute("aria-pressed", String(x.getAttribute("data-mode") === st.mode));
        });
        draw();
      });
    });
    legend = el("span", { "class": "cav-legend" }, bar);
    buildLegend();
  }

  function buildLegend() {
    legend.textContent = "";
    var W = 120, H = 10;
    el("span", {}, legend, "0");
    var svg = sv("svg", { width: W, height: H, role: "img",
                          "aria-label": "colour scale from 0 to " + fmt(d.vmax) }, legend);
    var n = d.cmap.length;
    for (var i = 0; i < n; i++) {
      sv("rect", { x: (i * W / n).toFixed(2), y: 0, width: (W / n + 0.6).toFixed(2), height: H,
                   fill: d.cmap[i] }, svg);
    }
    el("span", {}, legend, fmt(d.vmax) + " weight");
  }

  // ---- drawing -----------------------------------------------------------------------
  function clearStage() {
    stage.textContent = "";
    st.focus = -1;
    st.rows = [];   // per drawn panel: function(i) that highlights query i (or -1)
    st.qtoks = [];  // focusable query token elements, in order
  }

  function draw() {
    clearStage();
    var heads = st.head < 0 ? d.heads.map(function (_, h) { return h; }) : [st.head];
    var grid = heads.length > 1;
    var svg = sv("svg", { role: "group", "aria-label": "attention weights" }, stage);
    var width, height;
    if (!grid) {
      var size = st.mode === "lines" ? drawLines(svg, 0, 0, st.head)
                                     : drawHeatmap(svg, 0, 0, st.head);
      width = size[0]; height = size[1];
    } else {
      // all heads: one small panel a head, each row of panels led by the query tokens
      var qw = textWidth(d.q), Q = d.shape[2], K = d.shape[3];
      var rowH = Q <= 30 ? 16 : Math.max(3, Math.floor(480 / Q));
      var cw = Math.max(3, Math.min(16, Math.floor(160 / K)));
      var labels = rowH >= 12;
      if (!labels) qw = 0;
      var pw = st.mode === "lines" ? 110 : cw * K, ph = rowH * Q;
      var cols = Math.max(1, Math.min(heads.length, Math.floor((680 - qw) / (pw + 24))));
      var top = 20;
      var rowsOfTiles = Math.ceil(heads.length / cols);
      for (var r = 0; r < rowsOfTiles; r++) {
        if (labels) drawQueryColumn(svg, qw, top + r * (ph + 34), rowH);
      }
      heads.forEach(function (h, n) {
        var x = qw + 12 + (n % cols) * (pw + 24), y = top + Math.floor(n / cols) * (ph + 34);
        var g = sv("g", { "class": "cav-tile", tabindex: 0, role: "button", "data-head": h,
                          "aria-label": "show " + headName(h) + " alone" }, svg);
        sv("rect", { "class": "cav-frame", x: x - 3, y: y - 3, width: pw + 6, height: ph + 6,
                     fill: "none", stroke: "#8a8a8a", "stroke-opacity": 0.35 }, g);
        sv("text", { x: x, y: y - 7 }, g, headName(h));
        if (st.mode === "lines") drawMiniLines(g, x, y, pw, ph, h);
        else drawMiniHeatmap(g, x, y, cw, rowH, h);
        var pick = function () { st.head = h; syncHeadSelect(); draw(); };
        g.addEventListener("click", pick);
        g.addEventListener("keydown", function (ev) {
          if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(); }
        });
        if (!labels) {
          g.addEventListener("pointermove", function (ev) {
            var q = Math.floor((ev.clientY - svg.getBoundingClientRect().top - y) / rowH);
            if (q >= 0 && q < Q) setFocus(q);
          });
        }
      });
      width = qw + 12 + cols * (pw + 24);
      height = top + rowsOfTiles * (ph + 34);
    }
    svg.setAttribute("width", Math.ceil(width));
    svg.setAttribute("height", Math.ceil(height));
    svg.setAttribute("viewBox", "0 0 " + Math.ceil(width) + " " + Math.ceil(height));
    setFocus(st.pinned >= 0 ? st.pinned : -1);
  }

  function syncHeadSelect() {
    var s = body.querySelector("select[data-role=head]");
    if (s) s.value = String(st.head);
  }

  // a focusable query token: hover or focus shows its weights, click or Enter pins them
  function queryToken(parent, i, x, y, w, h, anchor) {
    var g = sv("g", { "class": "cav-tok", tabindex: 0, role: "button", "data-q": i,
                      "aria-label": "query " + (i + 1) + ": " + d.q[i] }, parent);
    var r = sv("rect", { x: x, y: y, width: w, height: h, rx: 3, fill: "transparent" }, g);
    sv("text", { x: anchor === "end" ? x + w - 6 : x + 6, y: y + h / 2 + 4, "text-anchor": anchor },
       g, d.q[i]);
    g.addEventListener("pointerenter", function () { setFocus(i); });
    g.addEventListener("pointerleave", function () { setFocus(st.pinned); });
    g.addEventListener("focus", function () { setFocus(i); });
    g.addEventListener("blur", function () { setFocus(st.pinned); });
    g.addEventListener("click", function () {
      st.pinned = st.pinned === i ? -1 : i; setFocus(st.pinned >= 0 ? st.pinned : i);
    });
    g.addEventListener("keydown", function (ev) {
      var n = st.qtoks.length, k = st.qtoks.indexOf(g);
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        st.qtoks[(k + (ev.key === "ArrowDown" ? 1 : n - 1)) % n].focus();
      } else if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault(); st.pinned = st.pinned === i ? -1 : i; setFocus(i);
      } else if (ev.key === "Escape") {
        st.pinned = -1; setFocus(-1); g.blur();
      }
    });
    st.qtoks.push(g);
    g._cavRect = r;
    return g;
  }

  function drawQueryColumn(svg, qw, top, step) {
    for (var i = 0; i < d.shape[2]; i++) queryToken(svg, i, 0, top + i * step, qw, step, "end");
  }

  function drawLines(svg, x0, y0, h) {
    var Q = d.shape[2], K = d.shape[3], l = st.layer;
    // the columns are as wide as their longest token or caption (bold: a few px more)
    var qw = Math.max(textWidth(d.q), textWidth([d.qlabel]) + 8);
    var kw = Math.max(textWidth(d.k), textWidth([d.klabel]) + 8) + 42;  // + room for the weight
    var top = y0 + 20, xa = x0 + qw, xb = xa + GAP;
    sv("text", { x: xa - 6, y: y0 + 12, "text-anchor": "end", "font-weight": 600 }, svg, d.qlabel);
    sv("text", { x: xb + 6, y: y0 + 12, "font-weight": 600 }, svg, d.klabel);
    var keyBoxes = [], keyVals = [], keyTexts = [];
    for (var j = 0; j < K; j++) {
      var ky = top + j * ROW;
      keyBoxes.push(sv("rect", { x: xb, y: ky + 1, width: kw - 40, height: ROW - 2, rx: 3,
                                 fill: "transparent" }, svg));
      var t = sv("text", { x: xb + 6, y: ky + ROW / 2 + 4, "data-k": j }, svg, d.k[j]);
      t.setAttribute("pointer-events", "none");
      keyTexts.push(t);
      keyVals.push(sv("text", { x: xb + kw - 34, y: ky + ROW / 2 + 4, "class": "cav-val" }, svg, ""));
    }
    var lines = sv("g", { "class": "cav-lines", "stroke-linecap": "round" }, svg);
    var groups = [];
    for (var i = 0; i < Q; i++) {
      var g = sv("g", { "data-q": i }, lines);
      for (j = 0; j < K; j++) {
        var w = weight(l, h, i, j), f = frac(w);
        if (f < 0.01) continue;
        sv("line", { x1: xa + 2, y1: top + i * ROW + ROW / 2, x2: xb - 2, y2: top + j * ROW + ROW / 2,
                     stroke: colour(w), "stroke-width": (0.8 + 3.2 * f).toFixed(2),
                     "stroke-opacity": (0.2 + 0.8 * f).toFixed(3), "data-k": j,
                     "data-w": fmt(w) }, g);
      }
      groups.push(g);
    }
    var toks = [];
    for (i = 0; i < Q; i++) toks.push(queryToken(svg, i, x0, top + i * ROW + 1, qw - 4, ROW - 2, "end"));
    st.rows.push(function (q) {
      groups.forEach(function (g, i) { g.style.display = q < 0 || q === i ? "" : "none"; });
      toks.forEach(function (t, i) {
        t._cavRect.setAttribute("fill", i === q ? "rgba(233,160,59,.35)" : "transparent");
      });
      for (var j = 0; j < K; j++) {
        if (q < 0) {
          keyBoxes[j].setAttribute("fill", "transparent");
          keyTexts[j].style.fill = "";
          keyVals[j].textContent = "";
        } else {
          var w = weight(l, h, q, j);
          keyBoxes[j].setAttribute("fill", colour(w));
          keyTexts[j].style.fill = ink(w);
          keyVals[j].textContent = fmt(w);
        }
      }
    });
    return [xb + kw, top + Math.max(Q, K) * ROW + 4];
  }

  // An outline around one row of a heatmap whose top-left corner is (x, y); returns the function
  // that moves it to row q (q < 0 hides it).
  function rowOutline(parent, x, y, width, rowHeight, strokeWidth) {
    var outline = sv("rect", { x: x - 1, y: y, width: width + 2, height: rowHeight, fill: "none",
                               stroke: "#e9a03b", "stroke-width": strokeWidth, display: "none",
                               "pointer-events": "none" }, parent);
    return function (q) {
      outline.setAttribute("display", q < 0 ? "none" : "inline");
      if (q >= 0) outline.setAttribute("y", y + q * rowHeight);
    };
  }

  function drawHeatmap(svg, x0, y0, h) {
    var Q = d.shape[2], K = d.shape[3], l = st.layer;
    var cell = Math.max(10, Math.min(34, Math.floor(520 / Math.max(Q, K))));
    var qw = textWidth(d.q), kh = textWidth(d.k);
    var gx = x0 + qw, gy = y0 + kh + 18;
    sv("text", { x: gx + (cell * K) / 2, y: y0 + 12, "text-anchor": "middle", "font-weight": 600 },
       svg, d.klabel + " \u2192");
    for (var j = 0; j < K; j++) {
      var cx = gx + j * cell + cell / 2 + 4, cy = gy - 6;
      sv("text", { x: cx, y: cy, transform: "rotate(-90 " + cx + " " + cy + ")" }, svg, d.k[j]);
    }
    var cells = sv("g", {}, svg);
    var showNums = cell >= 30;
    for (var i = 0; i < Q; i++) {
      for (j = 0; j < K; j++) {
        var w = weight(l, h, i, j);
        var r = sv("rect", { x: gx + j * cell, y: gy + i * cell, width: cell, height: cell,
                             fill: colour(w), "data-w": fmt(w) }, cells);
        sv("title", {}, r, d.q[i] + " \u2192 " + d.k[j] + ": " + fmt(w));
        if (showNums) {
          var tx = sv("text", { x: gx + j * cell + cell / 2, y: gy + i * cell + cell / 2 + 4,
                                "text-anchor": "middle", style: "fill:" + ink(w) + ";font-size:10px" },
                      cells, fmt(w).replace(/^0\./, "."));
          tx.setAttribute("pointer-events", "none");
        }
      }
    }
    var toks = [];
    for (i = 0; i < Q; i++) toks.push(queryToken(svg, i, x0, gy + i * cell, qw - 4, cell, "end"));
    // hovering a cell focuses its row as well
    cells.addEventListener("pointermove", function (ev) {
      var t = ev.target;
      if (t.tagName === "rect") setFocus(Math.floor((+t.getAttribute("y") - gy) / cell));
    });
    cells.addEventListener("pointerleave", function () { setFocus(st.pinned); });
    var showRow = rowOutline(svg, gx, gy, cell * K, cell, 2);
    st.rows.push(function (q) {
      showRow(q);
      toks.forEach(function (t, i) {
        t._cavRect.setAttribute("fill", i === q ? "rgba(233,160,59,.35)" : "transparent");
      });
    });
    return [gx + cell * K + 4, gy + cell * Q + 4];
  }

  function drawMiniHeatmap(g, x, y, cw, rh, h) {
    var Q = d.shape[2], K = d.shape[3], l = st.layer;
    for (var i = 0; i < Q; i++) {
      for (var j = 0; j < K; j++) {
        var w = weight(l, h, i, j);
        sv("rect", { x: x + j * cw, y: y + i * rh, width: cw, height: rh, fill: colour(w),
                     "data-w": fmt(w) }, g);
      }
    }
    st.rows.push(rowOutline(g, x, y, cw * K, rh, 1.5));
  }

  function drawMiniLines(g, x, y, pw, ph, h) {
    var Q = d.shape[2], K = d.shape[3], l = st.layer, sq = ph / Q, sk = ph / K;
    var groups = [];
    for (var i = 0; i < Q; i++) {
      var gi = sv("g", { "data-q": i }, g);
      for (var j = 0; j < K; j++) {
        var w = weight(l, h, i, j), f = frac(w);
        if (f < 0.05) continue;  // small panels: leave out the faintest lines
        sv("line", { x1: x + 4, y1: y + (i + 0.5) * sq, x2: x + pw - 4, y2: y + (j + 0.5) * sk,
                     stroke: colour(w), "stroke-width": (0.5 + 2 * f).toFixed(2),
                     "stroke-opacity": (0.2 + 0.8 * f).toFixed(3), "data-w": fmt(w) }, gi);
      }
      groups.push(gi);
    }
    st.rows.push(function (q) {
      groups.forEach(function (gi, i) { gi.style.display = q < 0 || q === i ? "" : "none"; });
    });
  }

  function setFocus(q) {
    if (q == null || q < -1 || q >= d.shape[2]) q = -1;
    st.focus = q;
    st.rows.forEach(function (f) { f(q); });
    root.setAttribute("data-focus", q);
    if (q < 0) {
      status.textContent = "";
      return;
    }
    var l = st.layer, hs = st.head < 0 ? d.heads.map(function (_, h) { return h; }) : [st.head];
    var parts = hs.map(function (h) {
      var best = 0, bw = -1, sum = 0;
      for (var j = 0; j < d.shape[3]; j++) {
        var w = weight(l, h, q, j); sum += w;
        if (w > bw) { bw = w; best = j; }
      }
      var who = hs.length > 1 ? headName(h) + ": " : "";
      return sum === 0 ? who + "no weights (masked)" : who + "\u201c" + d.k[best] + "\u201d " + fmt(bw);
    });
    status.textContent = "\u201c" + d.q[q] + "\u201d attends most to " + parts.join(", ") +
      (st.pinned === q ? " (pinned; click again to release)" : "");
  }

  // ---- set-up, update, teardown ------------------------------------------------------
  function init(data) {
    d = data;
    if (!d || !d.shape || d.shape.length !== 4 || d.w.length !== d.shape[0] * d.shape[1] * d.shape[2] * d.shape[3]) {
      throw new Error("companionAttentionView: malformed data");
    }
    st = { layer: Math.min(d.layer || 0, d.shape[0] - 1), mode: d.mode === "heatmap" ? "heatmap" : "lines",
           head: d.head < 0 && d.shape[1] > 1 ? -1 : Math.max(0, Math.min(d.head || 0, d.shape[1] - 1)),
           focus: -1, pinned: -1, rows: [], qtoks: [] };
    if (body && body.parentNode) body.parentNode.removeChild(body);
    body = el("div", { "class": "cav" }, null);
    el("style", {}, body, CSS);
    if (d.title) el("div", { "class": "cav-title" }, body, d.title);
    buildBar();
    stage = el("div", { "class": "cav-stage" }, body);
    status = el("div", { "class": "cav-status", "aria-live": "polite" }, body);
    el("div", { "class": "cav-hint" }, body,
       "Hover, tap or tab to a query token to see its weights; click or Enter pins it, Esc releases.");
    var fallback = root.querySelector(".cav-fallback");
    if (fallback) fallback.parentNode.removeChild(fallback);
    root.insertBefore(body, root.firstChild);
    draw();
    root.setAttribute("data-rendered", "1");
  }

  init(data);
  return {
    update: function (data) { init(data); },
    destroy: function () { if (body && body.parentNode) body.parentNode.removeChild(body); },
    state: function () { return { layer: st.layer, head: st.head, mode: st.mode, focus: st.focus }; }
  };
}
