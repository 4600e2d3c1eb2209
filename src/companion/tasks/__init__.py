"""Toy tasks, generated in code: nothing is downloaded.

One module a task. Each generates its data from a seed, so a run is reproducible, and knows the
right answer (and often where the answer comes from), so that a chapter can measure not only
whether a model is right but where it looks.
"""
