"""Companion package of *Attention, an interactive textbook*.

Each module holds one concept and names the equations of the book it implements:

- :mod:`companion.masks`       -- boolean masks (True = "may attend"): causal, padding.
- :mod:`companion.softmax`     -- the masked, numerically stable softmax.
- :mod:`companion.scoring`     -- scoring functions: dot, scaled dot, general, additive, cosine.
- :mod:`companion.attention`   -- scaled dot-product attention and multi-head attention.
- :mod:`companion.positional`  -- sinusoidal positional encodings.
- :mod:`companion.kernel_regression` -- attention pooling as Nadaraya-Watson regression.
- :mod:`companion.style`, :mod:`companion.viz` -- the book's figure style and attention plots.
- :mod:`companion.interactive` -- figures with controls that work live and in the static book.
- :mod:`companion.experiments` -- named, seeded, cached training runs (``python -m companion.experiments``).
- :mod:`companion.exercises`   -- checkers for the exercises embedded in the chapters.

Shapes are batch-first throughout: ``(batch, ..., length, dim)``.
"""

__version__ = "0.1.0"
