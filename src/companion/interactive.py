"""Interactive figures that work in a live kernel and in the static HTML book alike.

The chapter author writes a function of the control values that draws a figure (or returns
text, HTML or an :class:`~companion.attention_view.AttentionView`) and names the values each
control may take::

    explore(draw_fit,
            kernel=Choice(["gaussian", "boxcar"]),
            width=Slider([0.05, 0.1, 0.3, 1.0], label="width $h$"))

Two ways to show the same thing, chosen when the explorable is made (``mode``):

* ``"static"``: the function is called once for every combination of control values (the grid)
  and the results are embedded in the page: figures as compact PNGs (palette-quantised,
  identical frames stored once), text and HTML as strings, attention views as their data. The
  mime bundle's ``text/html`` is one ``<div>`` and one inline classic ``<script>`` holding those
  frames as compact JSON and drawing native controls (``<input type=range>``, ``<select>``,
  buttons, a checkbox) that switch between them. Nothing is fetched; element ids derive from a
  hash of the content (plus a per-session counter, as for the attention viewer), and the PNGs
  carry no timestamp or software tag, so rebuilding an unchanged chapter changes no byte. This
  is what the built book shows: every control works without a kernel. ``image/png`` (the first
  frame) and ``text/plain`` are included for viewers that run no scripts.
* ``"live"``: an ``ipywidgets`` interface, like ``ipywidgets.interact``: the function is called
  on demand with the values chosen, nothing is precomputed, sliders may offer a finer grid
  (``Slider(..., live=...)``) and a :class:`Text` control is a free-text box.

The default (``mode=None``) picks ``"live"`` in an interactive frontend (JupyterLab, Notebook,
Colab, VS Code: an IPython kernel whose current execute request allows stdin, with ipywidgets
installed) and ``"static"`` everywhere else: in the book build (myst-nb executes through
nbclient, which never allows stdin), nbconvert, papermill, tests and plain Python. So each
figure has exactly one set of working controls: live widgets in a notebook, precomputed
controls in the book, never a dead widget. The environment variable
``COMPANION_EXPLORABLE=static`` (or ``live``) overrides the guess.

Why not both in one output (a widget view plus an HTML fallback)? myst-nb would render the
widget view, whose saved state has no Python behind it: the dead control this module exists
to avoid; and its state would add every widget model to the page.

Size. A static explorable reports the bytes it adds to the page (``.nbytes``, also in its
``repr``), and refuses, with a ``ValueError`` naming the grid, one that holds more than
``max_frames`` combinations or more than ``max_bytes`` of HTML (default 1.5 MB; a chapter page
with all its images stays under 3 MB, ``PAGE_BUDGET``). Choose a coarser grid, a smaller
figure or a lower ``dpi`` then.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources

from .attention_view import _ID_RE, AttentionView, _content_id, _script_json
from .attention_view import _script_source as _view_script_source

__all__ = [
    "Buttons",
    "Choice",
    "Explorable",
    "PAGE_BUDGET",
    "Slider",
    "Text",
    "Toggle",
    "explore",
]

PAGE_BUDGET = 3_000_000
"""Bytes a chapter page may weigh with all its images (checked by tests/test_book_controls.py)."""
MAX_BYTES = 1_500_000
"""Default per-explorable budget: bytes of HTML one static explorable may add to a page."""
MAX_FRAMES = 400
"""Default guard on the number of grid combinations, checked before anything is drawn."""

_MODES = ("static", "live")
_TEX = re.compile(r"\$([^$]+)\$")


# ---- controls ----------------------------------------------------------------------------


def _label_check(label, name: str):
    if label is not None and not isinstance(label, str):
        raise TypeError(f"{name} must be a string, got {type(label).__name__}")


def _options(options, name: str) -> tuple[list[str], list]:
    """``(labels, values)`` from a sequence of values or a ``{label: value}`` mapping."""
    if isinstance(options, Mapping):
        labels, values = [str(k) for k in options], list(options.values())
    elif isinstance(options, (str, bytes)) or not isinstance(options, Sequence):
        raise TypeError(
            f"{name} must be a list of values or a {{label: value}} dict, got {type(options).__name__}"
        )
    else:
        values = list(options)
        labels = [str(v) for v in values]
    if not values:
        raise ValueError(f"{name} must not be empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{name} has duplicate labels: {labels}")
    return labels, values


def _initial(values: list, labels: list[str], value, name: str) -> int:
    if value is None:
        return 0
    for i, v in enumerate(values):
        if v is value or (type(v) is type(value) and v == value):
            return i
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for i, v in enumerate(values):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == value:
                return i
    raise ValueError(f"{name}: the initial value {value!r} is not one of the options {labels}")


class _Control:
    kind = ""  # "slider", "select", "buttons", "checkbox", "text"

    def __init__(self, labels: list[str], values: list, value, label: str | None):
        _label_check(label, "label")
        self.labels, self.values, self.label = labels, values, label
        self.index = _initial(values, labels, value, type(self).__name__)

    def spec(self, name: str) -> dict:
        return {"kind": self.kind, "name": name, "label": self.label or name,
                "labels": self.labels, "value": self.index}

    def live_widget(self, name: str):  # pragma: no cover - overridden
        raise NotImplementedError


class Slider(_Control):
    """A slider over a finite grid of values (numbers, or anything with a ``format``).

    Args:
        values: the grid, in slider order (e.g. ``np.geomspace(0.01, 5, 9)``).
        value: the value shown first (default: the first).
        label: the caption; ``$...$`` is typeset as TeX in the book.
        format: how a value is shown (a format spec such as ``".2g"``, or a function).
        live: an optional finer grid for the live slider (it computes on demand).
    """

    kind = "slider"

    def __init__(self, values, *, value=None, label: str | None = None, format="g", live=None):
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (Sequence, _array_types())):
            raise TypeError(f"Slider values must be a sequence (a finite grid), got {type(values).__name__}")
        values = [v.item() if hasattr(v, "item") else v for v in values]
        if not values:
            raise ValueError("Slider values must not be empty: give the grid of values to precompute")
        if callable(format):
            labels = [str(format(v)) for v in values]
        elif isinstance(format, str):
            try:
                labels = [f"{v:{format}}" for v in values]
            except (TypeError, ValueError) as err:
                raise ValueError(f"Slider format {format!r} does not apply to {values[0]!r}: {err}") from err
        else:
            raise TypeError(f"Slider format must be a format spec or a function, got {type(format).__name__}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"Slider values must differ as shown (format {format!r}): {labels}")
        super().__init__(labels, values, value, label)
        self.format = format
        self.live = None
        if live is not None:
            fine = [v.item() if hasattr(v, "item") else v for v in live]
            if not fine:
                raise ValueError("Slider live grid must not be empty")
            self.live = fine

    def _fmt(self, v) -> str:
        return str(self.format(v)) if callable(self.format) else f"{v:{self.format}}"

    def live_widget(self, name: str):
        import ipywidgets

        values = self.live or self.values
        start = self.values[self.index]
        nearest = min(range(len(values)), key=lambda i: _distance(values[i], start))
        options = [(self._fmt(v), v) for v in values]
        return ipywidgets.SelectionSlider(
            options=options, value=values[nearest], description=self.label or name,
            continuous_update=False, style={"description_width": "initial"},
            layout=ipywidgets.Layout(width="420px"),
        )


class Choice(_Control):
    """A menu: ``Choice(["a", "b"])`` or ``Choice({"shown label": value, ...})``."""

    kind = "select"

    def __init__(self, options, *, value=None, label: str | None = None):
        labels, values = _options(options, type(self).__name__ + " options")
        super().__init__(labels, values, value, label)

    def live_widget(self, name: str):
        import ipywidgets

        return ipywidgets.Dropdown(options=list(zip(self.labels, self.values)),
                                   value=self.values[self.index], description=self.label or name,
                                   style={"description_width": "initial"})


class Buttons(Choice):
    """A row of toggle buttons, one pressed at a time (same arguments as :class:`Choice`)."""

    kind = "buttons"

    def live_widget(self, name: str):
        import ipywidgets

        return ipywidgets.ToggleButtons(options=list(zip(self.labels, self.values)),
                                        value=self.values[self.index], description=self.label or "",
                                        style={"description_width": "initial", "button_width": "auto"})


class Toggle(_Control):
    """A checkbox: the function receives ``False`` or ``True``."""

    kind = "checkbox"

    def __init__(self, *, value: bool = False, label: str | None = None):
        if not isinstance(value, bool):
            raise TypeError(f"Toggle value must be True or False, got {value!r}")
        super().__init__(["off", "on"], [False, True], value, label)

    def live_widget(self, name: str):
        import ipywidgets

        return ipywidgets.Checkbox(value=self.values[self.index], description=self.label or name,
                                   indent=False)


class Text(_Control):
    """Free text in a live kernel; a menu of the given examples in the static book.

    A static page cannot run the function on text nobody has seen, so there the reader chooses
    among ``examples`` (precomputed); in a live kernel the control is a text box, pre-filled and
    suggesting the examples, and the function runs on whatever is typed.
    """

    kind = "text"

    def __init__(self, examples, *, value: str | None = None, label: str | None = None,
                 placeholder: str = ""):
        if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
            raise TypeError(f"Text examples must be a list of strings, got {type(examples).__name__}")
        if not examples:
            raise ValueError("Text examples must not be empty: the static book offers them as a menu")
        if not all(isinstance(e, str) for e in examples):
            raise TypeError("Text examples must all be strings")
        labels, values = _options(list(examples), "Text examples")
        super().__init__(labels, values, value, label)
        self.placeholder = str(placeholder)

    def live_widget(self, name: str):
        import ipywidgets

        return ipywidgets.Combobox(options=self.values, value=self.values[self.index],
                                   placeholder=self.placeholder, ensure_option=False,
                                   description=self.label or name, continuous_update=False,
                                   style={"description_width": "initial"},
                                   layout=ipywidgets.Layout(width="520px"))


def _array_types() -> tuple:
    import numpy as np

    types = [np.ndarray]
    try:
        import torch

        types.append(torch.Tensor)
    except ImportError:  # pragma: no cover - torch is a dependency of the companion
        pass
    return tuple(types)


def _distance(a, b) -> float:
    try:
        return abs(float(a) - float(b))
    except (TypeError, ValueError):
        return 0.0 if a == b else 1.0


# ---- what a frame holds ------------------------------------------------------------------


def _png(fig, dpi: int, colors: int) -> tuple[bytes, int, int]:
    """A compact, deterministic PNG of a matplotlib figure: (bytes, width px, height px)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, facecolor="white")
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue(), image.width, image.height


def _is_figure(obj) -> bool:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Figure)


def _parts(result) -> list:
    """The parts a function returned, as a list (a tuple or list holds several)."""
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    for item in items:
        if item is None:
            raise TypeError(
                "returned None: return the matplotlib Figure (do not call plt.show()), "
                "a string, an HTML object or an AttentionView"
            )
        if not (_is_figure(item) or isinstance(item, (str, AttentionView)) or hasattr(item, "_repr_html_")):
            raise TypeError(
                f"returned a {type(item).__name__}; expected a matplotlib Figure, a string, an "
                "object with _repr_html_ (e.g. IPython.display.HTML) or an AttentionView, or a tuple of them"
            )
    return items


def _static_part(item, dpi: int, colors: int) -> dict:
    if _is_figure(item):
        data, w, h = _png(item, dpi, colors)
        return {"t": "png", "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"),
                "w": w, "h": h}
    if isinstance(item, str):
        return {"t": "text", "s": item}
    if isinstance(item, AttentionView):
        return {"t": "view", "d": item.data}
    return {"t": "html", "s": str(item._repr_html_())}


def _call_description(names: Sequence[str], values: Sequence) -> str:
    return ", ".join(f"{n}={v!r}" for n, v in zip(names, values))


def _guess_mode() -> str:
    forced = os.environ.get("COMPANION_EXPLORABLE", "").strip().lower()
    if forced in _MODES:
        return forced
    try:
        from IPython import get_ipython
    except ImportError:
        return "static"
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not getattr(kernel, "_allow_stdin", False):
        return "static"  # plain Python, a terminal IPython, or a headless run (nbclient, the book)
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "static"
    return "live"


def _script_source() -> str:
    source = resources.files("companion").joinpath("static/explorable.js").read_text("utf-8")
    if re.search(r"</script|<!--|<script", source, re.I):
        raise RuntimeError("static/explorable.js must not contain '<script', '</script' or '<!--'")
    return source


# ---- the explorable ----------------------------------------------------------------------


class Explorable:
    """A function of control values, shown with working controls (see the module docstring).

    Args:
        fn: called as ``fn(**values)``; returns a matplotlib Figure (do not call
            ``plt.show()``), a string (shown as preformatted text), an object with
            ``_repr_html_``, an ``AttentionView``, or a tuple of these (shown one below another).
        title: a caption above the controls (``$...$`` is typeset as TeX in the book).
        mode: ``"static"``, ``"live"`` or ``None`` (guess; see the module docstring).
        dpi: resolution of the static PNGs.
        colors: size of the PNG palette (2 to 256); fewer colours, smaller files.
        max_bytes: refuse a static explorable whose HTML exceeds this many bytes.
        max_frames: refuse a grid with more combinations than this, before drawing any.
        id: the container's HTML id (default: derived from the content).
        **controls: one :class:`Slider`, :class:`Choice`, :class:`Buttons`, :class:`Toggle`
            or :class:`Text` for each argument of ``fn``.
    """

    def __init__(self, fn: Callable, *, title: str | None = None, mode: str | None = None,
                 dpi: int = 72, colors: int = 256, max_bytes: int = MAX_BYTES,
                 max_frames: int = MAX_FRAMES, id: str | None = None, **controls):
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if not controls:
            raise ValueError("give at least one control, e.g. width=Slider([0.1, 0.3, 1.0])")
        for name, control in controls.items():
            if not isinstance(control, _Control):
                raise TypeError(
                    f"control {name!r} must be a Slider, Choice, Buttons, Toggle or Text, "
                    f"got {type(control).__name__}"
                )
        _label_check(title, "title")
        if mode is not None and mode not in _MODES:
            raise ValueError(f"mode must be 'static', 'live' or None, got {mode!r}")
        for value, name, low, high in ((dpi, "dpi", 20, 300), (colors, "colors", 2, 256),
                                       (max_bytes, "max_bytes", 1, None), (max_frames, "max_frames", 1, None)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                bounds = f"from {low} to {high}" if high else f"of at least {low}"
                raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
        if id is not None and (not isinstance(id, str) or not _ID_RE.match(id)):
            raise ValueError(f"id must start with a letter and hold only letters, digits, '-' and '_', got {id!r}")
        self.fn, self.title, self.controls = fn, title, dict(controls)
        self.names = list(controls)
        self.mode = mode or _guess_mode()
        self.dpi, self.colors, self.max_bytes, self.max_frames = dpi, colors, max_bytes, max_frames
        self._id = id
        self.shape = tuple(len(c.values) for c in self.controls.values())
        self.n_frames = 1
        for n in self.shape:
            self.n_frames *= n
        self.data = None
        self.nbytes = 0
        self._widget = None
        if self.mode == "static":
            self._precompute()

    # ---- static ------------------------------------------------------------------------
    def _grid_text(self) -> str:
        return " x ".join(f"{n} {name}" for n, name in zip(self.shape, self.names))

    def _precompute(self) -> None:
        if self.n_frames > self.max_frames:
            raise ValueError(
                f"the grid has {self.n_frames} combinations ({self._grid_text()}), more than "
                f"max_frames={self.max_frames}: choose a coarser grid or fewer options"
            )
        import matplotlib.pyplot as plt

        parts, index, frames, first_png = [], {}, [], None
        for combo in itertools.product(*(range(n) for n in self.shape)):
            values = [c.values[i] for c, i in zip(self.controls.values(), combo)]
            before = set(plt.get_fignums())
            try:
                try:
                    result = _parts(self.fn(**dict(zip(self.names, values))))
                except Exception as err:
                    raise RuntimeError(
                        f"{getattr(self.fn, '__name__', 'fn')}({_call_description(self.names, values)}) "
                        f"failed: {type(err).__name__}: {err}"
                    ) from err
                frame = []
                for item in result:
                    part = _static_part(item, self.dpi, self.colors)
                    if first_png is None and part["t"] == "png":
                        first_png = part
                    key = _script_json(part)
                    if key not in index:
                        index[key] = len(parts)
                        parts.append(part)
                    frame.append(index[key])
                frames.append(frame)
            finally:
                for number in set(plt.get_fignums()) - before:
                    plt.close(number)
        self.n_distinct = len(parts)
        self.data = {
            "v": 1,
            "title": self.title,
            "controls": [c.spec(n) for n, c in self.controls.items()],
            "parts": parts,
            "frames": frames,
        }
        self._json = _script_json(self.data)
        self.content_hash = hashlib.sha256(self._json.encode("utf-8")).hexdigest()[:12]
        self._first_png = first_png
        self._uses_view = any(p["t"] == "view" for p in parts)
        self.nbytes = len(self._html("cex-" + self.content_hash).encode("utf-8"))
        if self.nbytes > self.max_bytes:
            raise ValueError(
                f"this explorable would add {self.nbytes / 1e6:.2f} MB to the page (grid "
                f"{self._grid_text()}: {self.n_frames} frames, {self.n_distinct} distinct parts), "
                f"more than max_bytes={self.max_bytes / 1e6:.2f} MB; a chapter page with its images "
                f"must stay under {PAGE_BUDGET / 1e6:.0f} MB. Use a coarser grid, fewer options, a "
                "smaller figure or a lower dpi."
            )

    def _next_id(self) -> str:
        return self._id or _content_id("cex-" + self.content_hash)

    def _html(self, cid: str) -> str:
        fallback = html.escape(
            f"Interactive figure ({self._grid_text()}). Its controls are drawn by JavaScript, "
            "which did not run here: run the cell again, or trust the notebook, to see it."
        )
        view = (_view_script_source() + "\n") if self._uses_view else ""
        return (
            f'<div class="companion-explorable" id="{cid}">'
            f'<div class="cex-fallback" style="font-size:12px;opacity:.8">{fallback}</div>'
            "<script>(function(){\n"
            f"{view}{_script_source()}\n"
            'var s=document.currentScript,box=s&&s.parentNode&&s.parentNode.id==="' + cid + '"'
            '?s.parentNode:document.getElementById("' + cid + '");\n'
            f"companionExplorable(box,{self._json}"
            + (",companionAttentionView" if self._uses_view else "") + ");\n"
            "})();</script></div>"
        )

    def to_html(self, id: str | None = None) -> str:
        """The static explorer: a container and its inline script (no external resources)."""
        if self.mode != "static":
            raise RuntimeError("to_html() needs the precomputed frames: make it with mode='static'")
        if id is not None and (not isinstance(id, str) or not _ID_RE.match(id)):
            raise ValueError(f"id must start with a letter and hold only letters, digits, '-' and '_', got {id!r}")
        return self._html(id or self._next_id())

    def frame(self, **values) -> list[dict]:
        """The precomputed parts shown for these control values (static mode; for tests)."""
        if self.data is None:
            raise RuntimeError("frame() needs the precomputed frames: make it with mode='static'")
        if set(values) != set(self.names):
            raise ValueError(f"give a value for each control {self.names}, got {sorted(values)}")
        flat = 0
        for name, control in self.controls.items():
            flat = flat * len(control.values) + _initial(control.values, control.labels, values[name], name)
        return [self.data["parts"][i] for i in self.data["frames"][flat]]

    def __repr__(self) -> str:
        title = f" {self.title!r}" if self.title else ""
        if self.mode == "live":
            return f"Explorable{title} (live): {self._grid_text()}"
        return (f"Explorable{title}: {self._grid_text()} = {self.n_frames} frames, "
                f"{self.n_distinct} distinct parts, {self.nbytes / 1e3:.0f} kB of HTML")

    # ---- live --------------------------------------------------------------------------
    def widget(self):
        """The live interface: ipywidgets controls and an Output the function draws into."""
        if self._widget is None:
            import ipywidgets

            boxes = {name: c.live_widget(name) for name, c in self.controls.items()}
            out = ipywidgets.interactive_output(self._show_live, boxes)
            children = []
            if self.title:
                children.append(ipywidgets.HTML(f"<b>{html.escape(self.title)}</b>"))
            children += [*boxes.values(), out]
            self._widget = ipywidgets.VBox(children)
            self._widget.controls = boxes
        return self._widget

    def _show_live(self, **values) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        before = set(plt.get_fignums())
        try:
            for item in _parts(self.fn(**values)):
                if _is_figure(item):
                    display(item)
                elif isinstance(item, str):
                    print(item)
                elif isinstance(item, AttentionView):
                    display(item)
                else:
                    display(HTML(item._repr_html_()))
        finally:
            for number in set(plt.get_fignums()) - before:
                plt.close(number)

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.mode == "live":
            return self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        bundle = {"text/plain": repr(self), "text/html": self.to_html()}
        if self._first_png is not None:
            bundle["image/png"] = self._first_png["src"].split(",", 1)[1]
        return bundle


def explore(fn: Callable, *, title: str | None = None, **kwargs) -> Explorable:
    """``Explorable(fn, title=..., **controls)``; see :class:`Explorable`."""
    return Explorable(fn, title=title, **kwargs)
