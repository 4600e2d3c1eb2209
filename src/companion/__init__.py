"""Companion package of *Attention, an interactive textbook*.

Each module holds one concept and names, by label, the equations of the book it implements:

- :mod:`companion.masks`       -- boolean masks (True = "may attend"): causal (with an offset), padding.
- :mod:`companion.softmax`     -- the masked, numerically stable softmax and log-softmax.
- :mod:`companion.softmax_calculus` -- temperature, entropy, the softmax Jacobian, attention's backward pass.
- :mod:`companion.scoring`     -- scoring functions: dot, scaled dot, general, additive, cosine.
- :mod:`companion.attention`   -- scaled dot-product attention and multi-head attention.
- :mod:`companion.grouped_query` -- grouped- and multi-query attention, and the key/value cache's size.
- :mod:`companion.positional`  -- sinusoidal encodings, rotary embeddings, ALiBi biases.
- :mod:`companion.kernel_regression` -- attention pooling as Nadaraya-Watson regression.
- :mod:`companion.retrieval`   -- one attention read with learned projections (associative recall).
- :mod:`companion.seq2seq`     -- RNN encoder-decoders: plain, Bahdanau, Luong.
- :mod:`companion.local`, :mod:`companion.local_seq2seq` -- Luong's local attention.
- :mod:`companion.hard`        -- hard attention's gradients: REINFORCE, Gumbel-softmax.
- :mod:`companion.image_attention` -- attention over a CNN's grid of image cells.
- :mod:`companion.ntm`         -- the neural Turing machine's addressing, memory and model.
- :mod:`companion.position_models` -- causal self-attention told the positions five ways.
- :mod:`companion.attention_only` -- a small attention-only model whose heads can be ablated.
- :mod:`companion.memory`      -- the peak of the tensor bytes a computation holds, counted exactly.
- :mod:`companion.efficient`   -- attention at scale: online softmax, tiled (FlashAttention-style) and linear attention.
- :mod:`companion.transformer` -- the Transformer: encoder-decoder, decoder-only with a key-value
  cache, greedy and beam decoding, label smoothing, the warm-up schedule.
- :mod:`companion.induction`   -- attention-only decoders of several layers; induction scores.
- :mod:`companion.tasks`       -- toy tasks, generated in code from a seed.
- :mod:`companion.style`, :mod:`companion.viz` -- the book's figure style and attention plots.
- :mod:`companion.attention_view` -- the attention viewer that works without a kernel.
- :mod:`companion.interactive` -- figures with controls that work in the static book.
- :mod:`companion.glue`        -- paste a computed number into the prose (the book build, or a print).
- :mod:`companion.training`    -- the training loop (progress bar, NaN guard, keeps what it learned).
- :mod:`companion.experiments` -- named, seeded, cached training runs (``python -m companion.experiments``).
- :mod:`companion.exercises`   -- checkers and worked solutions for the chapters' exercises.

Shapes are batch-first throughout: ``(batch, ..., length, dim)``.
"""

__version__ = "0.1.0"
