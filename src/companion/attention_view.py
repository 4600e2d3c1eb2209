"""An interactive attention viewer that works without a kernel and without a network.

``AttentionView(weights, query_tokens, key_tokens)`` displays attention weights of shape
``(layers, heads, len_q, len_k)``, ``(heads, len_q, len_k)`` or ``(len_q, len_k)``. In a notebook
it renders through ``_repr_mimebundle_``:

* ``text/html``: one ``<div>`` and one inline classic ``<script>`` with the weights as compact JSON.
  The script is ``static/attention_view.js`` (plain JavaScript drawing SVG), inlined at render time,
  so the view is interactive in the static HTML book, JupyterLab, Notebook 7, Colab and VS Code
  alike: choose layer and head (or all heads as a grid), switch between lines between two token
  columns and a heatmap, hover, tap or tab to a query token to see its weights over the keys.
* ``image/png``: a matplotlib rendering of the same maps, for viewers that run no scripts.
* ``text/plain``: a one-line summary.

Weights are shown as given: they must be finite and non-negative, but rows need not sum to 1.
A masked query (a row of zeros) draws no lines and is reported as masked; rows that sum to more
or less than 1 (an NTM weighting, a head average) are drawn on the same colour scale, which runs
from 0 to ``vmax`` (default: the largest weight in the whole tensor, so heads compare).

Element ids. The container's id is ``cav-`` followed by a hash of the embedded data and options,
so rebuilding the book gives byte-identical HTML. Each further rendering of the same content in
one Python session gets a suffix ``-2``, ``-3``, ... (a counter per content hash), so that showing
the same weights twice on one page still gives distinct ids; because a notebook executes top to
bottom in a fresh kernel, the counters, and hence the ids, are the same on every build. Pass
``id="..."`` to choose the id yourself. The script finds its container through
``document.currentScript`` first and the id second, and touches nothing outside it.

For a live kernel there are two ways to let Python redraw a view:

* :meth:`AttentionView.output` returns an ``ipywidgets.Output`` with an ``update(**changes)``
  method. It also works in the built book (the static page shows the last view drawn, still
  interactive), so it is the one for chapters; so is displaying an ``AttentionView`` from an
  ``ipywidgets.interact`` callback.
* :meth:`AttentionView.widget` returns an ``anywidget`` widget that runs the same JavaScript and
  redraws in place from ``widget.update(...)``; live kernels only (the static book cannot load it).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources

import numpy as np
import torch

from .style import WEIGHTS_CMAP

__all__ = ["AttentionView", "standalone_page"]

MAX_CELLS = 100_000
"""Default size guard: at most this many weights are embedded (about 0.4 MB of HTML)."""

_MODES = ("lines", "heatmap")
_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_CMAP_STEPS = 64
_render_counts: Counter = Counter()


def _script_source() -> str:
    source = resources.files("companion").joinpath("static/attention_view.js").read_text("utf-8")
    if re.search(r"</script|<!--|<script", source, re.I):  # would end or confuse the inline script
        raise RuntimeError("static/attention_view.js must not contain '<script', '</script' or '<!--'")
    return source


def _content_id(base: str) -> str:
    """``base`` the first time it is rendered in this session, then ``base-2``, ``base-3``, ..."""
    _render_counts[base] += 1
    n = _render_counts[base]
    return base + ("" if n == 1 else f"-{n}")


def _cmap_hex(name: str = WEIGHTS_CMAP, steps: int = _CMAP_STEPS) -> list[str]:
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return [matplotlib.colors.to_hex(cmap(i / (steps - 1))) for i in range(steps)]


def _script_json(obj) -> str:
    """JSON that is safe inside an inline <script> (no '</script>', no '<!--')."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _as_array(weights) -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        if weights.is_complex():
            raise TypeError(f"weights must be real, got dtype {weights.dtype}")
        weights = weights.detach().cpu().to(torch.float64).numpy()
    elif isinstance(weights, np.ndarray):
        if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)
                or weights.dtype == np.bool_):
            raise TypeError(f"weights must have a real numeric dtype, got {weights.dtype}")
        weights = weights.astype(np.float64)
    else:
        raise TypeError(
            f"weights must be a torch.Tensor or numpy array, got {type(weights).__name__}"
        )
    if not 2 <= weights.ndim <= 4:
        raise ValueError(
            "weights must have shape (len_q, len_k), (heads, len_q, len_k) or "
            f"(layers, heads, len_q, len_k); got shape {weights.shape}. For a batch, pick one "
            "example first, e.g. weights[0]."
        )
    if 0 in weights.shape:
        raise ValueError(f"weights must not have an empty axis, got shape {weights.shape}")
    if not np.isfinite(weights).all():
        bad = "NaN" if np.isnan(weights).any() else "infinite values"
        raise ValueError(f"weights contain {bad} (shape {weights.shape})")
    if weights.min() < -1e-6:
        raise ValueError(
            f"weights must be non-negative, got a minimum of {weights.min():.3g} "
            f"(shape {weights.shape}); pass softmax weights, not scores"
        )
    weights = np.clip(weights, 0.0, None)  # round-off below zero (>= -1e-6) becomes 0
    return weights.reshape((1,) * (4 - weights.ndim) + weights.shape)  # (L, H, Lq, Lk)


def _tokens(tokens, name: str, n: int, axis: str, shape) -> list[str]:
    if tokens is None:
        return [str(i) for i in range(n)]
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of tokens (e.g. a list of str), not one string")
    if isinstance(tokens, (torch.Tensor, np.ndarray)):
        tokens = tokens.tolist()
    if not isinstance(tokens, Sequence):
        raise TypeError(f"{name} must be a sequence of tokens, got {type(tokens).__name__}")
    if len(tokens) != n:
        raise ValueError(
            f"{name} has {len(tokens)} tokens but weights of shape {tuple(shape)} have "
            f"{n} {axis} (axis {'-2' if axis == 'queries' else '-1'})"
        )
    return [str(t) for t in tokens]


def _names(names, name: str, n: int, default: str) -> list[str]:
    if names is None:
        return [f"{default} {i + 1}" for i in range(n)]
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) != n:
        raise ValueError(f"{name} must be a list of {n} names, got {names!r}")
    return [str(x) for x in names]


class AttentionView:
    """Interactive view of attention weights (see the module docstring).

    Args:
        weights: torch tensor or numpy array, ``(layers, heads, len_q, len_k)``,
            ``(heads, len_q, len_k)`` or ``(len_q, len_k)``; finite, non-negative.
        query_tokens: ``len_q`` labels (default: positions 0, 1, ...).
        key_tokens: ``len_k`` labels. Default: ``query_tokens`` when the map is square
            (self-attention); an error otherwise.
        title: shown above the view.
        layer, head: what is shown first; ``head="all"`` shows every head as a grid.
        mode: ``"lines"`` (two token columns joined by lines) or ``"heatmap"``.
        vmax: top of the colour scale (default: the largest weight).
        decimals: weights are rounded to this many decimals in the page (1 to 4).
        max_cells: size guard; more weights than this raise a ValueError.
        layer_names, head_names: labels of the choices (default "layer 1", "head 1", ...).
        query_label, key_label: captions of the two token columns.
        layer_label, head_label: captions of the two choices (e.g. ``head_label="Sequence"``
            when the leading axis of a 3-D tensor is a batch rather than heads).
        id: the container's HTML id (default: derived from the data, see the module docstring).
        png: include an ``image/png`` rendering in the mime bundle.
    """

    def __init__(
        self,
        weights,
        query_tokens: Sequence | None = None,
        key_tokens: Sequence | None = None,
        *,
        title: str | None = None,
        layer: int = 0,
        head: int | str = 0,
        mode: str = "lines",
        vmax: float | None = None,
        decimals: int = 3,
        max_cells: int = MAX_CELLS,
        layer_names: Sequence[str] | None = None,
        head_names: Sequence[str] | None = None,
        query_label: str = "queries",
        key_label: str = "keys",
        layer_label: str = "Layer",
        head_label: str = "Head",
        id: str | None = None,
        png: bool = True,
    ):
        self._args = dict(
            weights=weights, query_tokens=query_tokens, key_tokens=key_tokens, title=title,
            layer=layer, head=head, mode=mode, vmax=vmax, decimals=decimals, max_cells=max_cells,
            layer_names=layer_names, head_names=head_names, query_label=query_label,
            key_label=key_label, layer_label=layer_label, head_label=head_label, id=id, png=png,
        )
        if isinstance(max_cells, bool) or not isinstance(max_cells, int) or max_cells <= 0:
            raise ValueError(f"max_cells must be a positive integer, got {max_cells!r}")
        w = _as_array(weights)  # (L, H, Lq, Lk)
        L, H, n_q, n_k = w.shape
        if w.size > max_cells:
            raise ValueError(
                f"weights of shape {tuple(np.shape(weights))} hold {w.size:,} values; the viewer "
                f"embeds at most max_cells={max_cells:,} (about {4 * max_cells / 1e6:.1f} MB of "
                "HTML). Show fewer layers or heads (e.g. weights[-1] or weights[:, :4]) or a "
                "shorter sequence, or raise max_cells if the page may grow."
            )
        self.query_tokens = _tokens(query_tokens, "query_tokens", n_q, "queries", np.shape(weights))
        if key_tokens is None and query_tokens is not None and n_q != n_k:
            raise ValueError(
                f"key_tokens are required when the map is not square: weights of shape "
                f"{tuple(np.shape(weights))} have {n_q} queries and {n_k} keys"
            )
        if key_tokens is None and query_tokens is not None:
            key_tokens = query_tokens
        self.key_tokens = _tokens(key_tokens, "key_tokens", n_k, "keys", np.shape(weights))
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 1 <= decimals <= 4:
            raise ValueError(f"decimals must be an integer from 1 to 4, got {decimals!r}")
        if isinstance(layer, bool) or not isinstance(layer, int) or not -L <= layer < L:
            raise ValueError(f"layer must be an integer in [0, {L}) for {L} layer(s), got {layer!r}")
        if head == "all":
            head_index = -1 if H > 1 else 0
        elif isinstance(head, bool) or not isinstance(head, int) or not -H <= head < H:
            raise ValueError(f"head must be 'all' or an integer in [0, {H}) for {H} head(s), got {head!r}")
        else:
            head_index = head % H
        scale = 10**decimals
        if vmax is None:
            top = float(np.round(w.max() * scale) / scale)
            vmax = top if top > 0 else 1.0
        elif isinstance(vmax, bool) or not isinstance(vmax, (int, float)) or not np.isfinite(vmax) or vmax <= 0:
            raise ValueError(f"vmax must be a positive finite number or None, got {vmax!r}")
        if id is not None and (not isinstance(id, str) or not _ID_RE.match(id)):
            raise ValueError(
                f"id must start with a letter and hold only letters, digits, '-' and '_' "
                f"(at most 64), got {id!r}"
            )
        for value, name in ((title, "title"), (query_label, "query_label"), (key_label, "key_label"),
                            (layer_label, "layer_label"), (head_label, "head_label")):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {type(value).__name__}")
        self.weights = w
        self.shape = w.shape
        self.data = {
            "v": 1,
            "shape": [L, H, n_q, n_k],
            "q": self.query_tokens,
            "k": self.key_tokens,
            "w": np.rint(w * scale).astype(np.int64).ravel().tolist(),
            "scale": scale,
            "vmax": float(vmax),
            "cmap": _cmap_hex(),
            "layers": _names(layer_names, "layer_names", L, "layer"),
            "heads": _names(head_names, "head_names", H, "head"),
            "layer": layer % L,
            "head": head_index,
            "mode": mode,
            "title": title,
            "qlabel": query_label,
            "klabel": key_label,
            "llabel": layer_label,
            "hlabel": head_label,
        }
        self._json = _script_json(self.data)
        self.content_hash = hashlib.sha256(self._json.encode("utf-8")).hexdigest()[:12]
        self._id = id
        self._png = bool(png)

    # ---- rendering ---------------------------------------------------------------------
    def _next_id(self) -> str:
        return self._id or _content_id("cav-" + self.content_hash)

    def to_html(self, id: str | None = None) -> str:
        """The HTML fragment: a container and its inline script (no external resources)."""
        if id is not None and (not isinstance(id, str) or not _ID_RE.match(id)):
            raise ValueError(f"id must start with a letter and hold only letters, digits, '-' and '_', got {id!r}")
        cid = id or self._next_id()
        L, H, n_q, n_k = self.shape
        fallback = html.escape(
            f"Interactive attention view ({self._summary()}). It is drawn by JavaScript, which "
            "did not run here: run the cell again, or trust the notebook, to see it."
        )
        return (
            f'<div class="companion-attention-view" id="{cid}">'
            f'<div class="cav-fallback" style="font-size:12px;opacity:.8">{fallback}</div>'
            "<script>(function(){\n"
            f"{_script_source()}\n"
            'var s=document.currentScript,box=s&&s.parentNode&&s.parentNode.id==="' + cid + '"'
            '?s.parentNode:document.getElementById("' + cid + '");\n'
            f"companionAttentionView(box,{self._json});\n"
            "})();</script></div>"
        )

    def _summary(self) -> str:
        L, H, n_q, n_k = self.shape
        parts = []
        if L > 1:
            parts.append(f"{L} layers")
        if H > 1 or L > 1:
            parts.append(f"{H} heads")
        parts.append(f"{n_q} queries x {n_k} keys")
        return ", ".join(parts)

    def __repr__(self) -> str:
        title = f" {self.data['title']!r}" if self.data["title"] else ""
        return f"AttentionView{title}: {self._summary()}, weights up to {self.weights.max():.3g}"

    def to_png(self) -> bytes:
        """A PNG of the maps (all heads of the first shown layer, or every map when few)."""
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from .viz import attention_heatmap

        L, H, n_q, n_k = self.shape
        if L * H <= 16:
            maps = [(l, h) for l in range(L) for h in range(H)]
            rows, cols = L, H
        else:
            l = self.data["layer"]
            maps = [(l, h) for h in range(min(H, 16))]
            cols = min(len(maps), 8)
            rows = -(-len(maps) // cols)
        single = len(maps) == 1
        side_w = min(1.0 + 0.45 * n_k, 10) if single else min(0.6 + 0.18 * n_k, 4)
        side_h = min(1.0 + 0.4 * n_q, 9) if single else min(0.6 + 0.16 * n_q, 4)
        fig = Figure(figsize=(side_w * cols + 1, side_h * rows + 0.5), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.set_visible(False)
        vmax = self.data["vmax"]
        for n, (l, h) in enumerate(maps):
            ax = axes.flat[n]
            ax.set_visible(True)
            name = " ".join(x for x in ((self.data["layers"][l] if L > 1 else ""),
                                         (self.data["heads"][h] if H > 1 else "")) if x)
            attention_heatmap(
                self.weights[l, h], self.query_tokens, self.key_tokens, ax=ax, vmax=vmax,
                title=name or None, annotate=None if single else False, colorbar=single,
                xlabel=self.data["klabel"] if single else "", ylabel=self.data["qlabel"] if single else "",
            )
        if self.data["title"]:
            fig.suptitle(self.data["title"])
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = {"text/plain": repr(self), "text/html": self.to_html()}
        if self._png:
            bundle["image/png"] = self.to_png()
        return bundle

    # ---- live kernel -------------------------------------------------------------------
    def replace(self, **changes) -> "AttentionView":
        """A new view with some arguments changed (validated like the constructor).

        Changing the weights or the query tokens of a self-attention view without passing
        ``key_tokens`` keeps keys equal to queries.
        """
        args = dict(self._args)
        unknown = set(changes) - set(args)
        if unknown:
            raise TypeError(f"unknown argument(s) {sorted(unknown)}; expected some of {sorted(args)}")
        args.update(changes)
        return AttentionView(**args)

    def output(self):
        """An ``ipywidgets.Output`` showing this view, redrawn by ``out.update(**changes)``.

        Safe in chapters the book executes: the Output widget is one the book's widget
        renderer knows, so the static page shows (and runs) the last view drawn, while in a
        live kernel every ``update`` from a callback (a slider, a button) redraws it. The
        PNG is left out of the widget's state to keep the page small.
        """
        return _output_class()(self)

    def widget(self):
        """An ``anywidget`` widget showing this view in a live kernel (JupyterLab, Notebook 7,
        Colab, VS Code). It runs the same JavaScript and redraws when Python calls
        ``widget.update(weights=..., query_tokens=..., key_tokens=..., title=...)``, so that
        ipywidgets callbacks (choose an example, retrain, change a temperature) can drive it.

        Needs a kernel: the static HTML book cannot load the anywidget module (its page
        would log "Could not load module anywidget"), so chapters the book executes should
        use :meth:`output` or display the view from an ``ipywidgets.interact`` callback.
        """
        return _widget_class()(self)


_WIDGET_CLASS = None


def _widget_class():
    global _WIDGET_CLASS
    if _WIDGET_CLASS is not None:
        return _WIDGET_CLASS
    try:
        import anywidget
        import traitlets
    except ImportError as err:  # pragma: no cover - anywidget is in requirements.txt
        raise ImportError("AttentionView.widget() needs anywidget: pip install anywidget") from err

    esm = _script_source() + (
        "\nexport default { render({ model, el }) {\n"
        "  const view = companionAttentionView(el, model.get('data'));\n"
        "  const redraw = () => view.update(model.get('data'));\n"
        "  model.on('change:data', redraw);\n"
        "  return () => { model.off('change:data', redraw); view.destroy(); };\n"
        "} };\n"
    )

    class AttentionWidget(anywidget.AnyWidget):
        """Live counterpart of :class:`AttentionView`; see :meth:`AttentionView.widget`."""

        _esm = esm
        data = traitlets.Dict().tag(sync=True)

        def __init__(self, view: AttentionView):
            if not isinstance(view, AttentionView):
                raise TypeError(f"view must be an AttentionView, got {type(view).__name__}")
            super().__init__(data=view.data)
            self.view = view

        def update(self, **changes) -> None:
            """Redraw with new arguments (``weights``, ``query_tokens``, ``key_tokens``,
            ``title``, ``mode``, ...). Invalid arguments raise before anything changes."""
            view = self.view.replace(**changes)
            self.view = view
            self.data = view.data

    _WIDGET_CLASS = AttentionWidget
    return AttentionWidget


_OUTPUT_CLASS = None


def _output_class():
    global _OUTPUT_CLASS
    if _OUTPUT_CLASS is not None:
        return _OUTPUT_CLASS
    import ipywidgets

    class AttentionOutput(ipywidgets.Output):
        """An Output widget holding one :class:`AttentionView`; see :meth:`AttentionView.output`."""

        def __init__(self, view: AttentionView):
            if not isinstance(view, AttentionView):
                raise TypeError(f"view must be an AttentionView, got {type(view).__name__}")
            super().__init__()
            self._show(view)

        def _show(self, view: AttentionView) -> None:
            bundle = {"text/plain": repr(view), "text/html": view.to_html()}
            self.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
            self.view = view

        def update(self, **changes) -> None:
            """Redraw with new arguments (``weights``, ``query_tokens``, ``title``, ...).
            Invalid arguments raise before anything changes."""
            self._show(self.view.replace(**changes))

    _OUTPUT_CLASS = AttentionOutput
    return AttentionOutput


def standalone_page(views: Sequence[AttentionView], title: str = "Attention views") -> str:
    """A complete HTML document showing ``views`` (for a test page or a file to share)."""
    if isinstance(views, AttentionView):
        views = [views]
    if not views or not all(isinstance(v, AttentionView) for v in views):
        raise TypeError("views must be a non-empty list of AttentionView")
    parts = "\n".join(f"<section>{v.to_html()}</section>" for v in views)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<link rel=\"icon\" href=\"data:,\">"
        f"<title>{html.escape(title)}</title></head>"
        "<body style=\"max-width:900px;margin:1em auto;font-family:system-ui,sans-serif\">"
        f"<h1 style=\"font-size:1.3em\">{html.escape(title)}</h1>\n{parts}\n</body></html>\n"
    )
