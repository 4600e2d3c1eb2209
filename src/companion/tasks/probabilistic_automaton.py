"""Text from a probabilistic automaton (a hidden Markov model), with the exact probability of
every next token: a language whose best possible cross-entropy is known.

The automaton has ``K`` hidden states. It starts in state ``s_0 ~ initial``; at each step it
emits a symbol ``x_t ~ emission[s_t]`` and moves to ``s_{t+1} ~ transition[s_t]``. A reader of
the text sees the symbols only. Several states share symbols, so the state is uncertain; the
best prediction of the next symbol is the average of the states' emissions under the posterior
over the current state given everything read so far (the forward algorithm, Rabiner 1989)::

    belief_0 = initial
    p(x_t | x_<t) = sum_s belief_t(s) emission[s, x_t]
    belief_{t+1}(s') = sum_s belief_t(s) emission[s, x_t] transition[s, s'] / p(x_t | x_<t)

:meth:`ProbabilisticAutomaton.next_token_probs` computes these probabilities exactly, so
:meth:`ProbabilisticAutomaton.cross_entropy` is the loss of the best possible model on any text:
the ``optimal_loss`` a trained language model is compared with.

For a language model the symbols are ids ``0 .. V-1`` and ``BOS = V`` starts every sequence:
the model reads ``[BOS, x_0, ..., x_{L-2}]`` and predicts ``[x_0, ..., x_{L-1}]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _validate


@dataclass(frozen=True)
class AutomatonConfig:
    num_states: int = 6
    num_symbols: int = 8
    symbols_per_state: int = 3  # each state emits only this many symbols
    successors: int = 2  # each state moves to this many states
    seed: int = 0  # of the automaton itself (the text has its own seeds)

    def __post_init__(self):
        for name in ("num_states", "num_symbols", "symbols_per_state", "successors"):
            _validate.positive_int(getattr(self, name), name)
        if self.symbols_per_state > self.num_symbols or self.successors > self.num_states:
            raise ValueError("symbols_per_state must be <= num_symbols and successors <= num_states, "
                             f"got {self.symbols_per_state}/{self.num_symbols}, {self.successors}/{self.num_states}")
        _validate.non_negative_int(self.seed, "seed")


def _sparse_rows(rows: int, cols: int, nonzero: int, g: torch.Generator) -> torch.Tensor:
    """A ``(rows, cols)`` row-stochastic matrix with ``nonzero`` random entries a row, the
    weights drawn from a flat Dirichlet."""
    support = torch.rand(rows, cols, generator=g).argsort(1)[:, :nonzero]  # (rows, nonzero)
    weights = -torch.rand(rows, nonzero, generator=g, dtype=torch.float64).log()  # Exp(1): Dirichlet(1)
    out = torch.zeros(rows, cols, dtype=torch.float64)
    out.scatter_(1, support, weights / weights.sum(1, keepdim=True))
    return out


class ProbabilisticAutomaton:
    """A hidden Markov model: ``initial (K,)``, ``transition (K, K)``, ``emission (K, V)``,
    each row a probability distribution (float64)."""

    def __init__(self, initial: torch.Tensor, transition: torch.Tensor, emission: torch.Tensor):
        K, V = emission.shape
        if initial.shape != (K,) or transition.shape != (K, K):
            raise ValueError(f"need initial (K,), transition (K, K), emission (K, V); got {tuple(initial.shape)}, "
                             f"{tuple(transition.shape)}, {tuple(emission.shape)}")
        for name, t in (("initial", initial), ("transition", transition), ("emission", emission)):
            if (t < 0).any() or not torch.allclose(t.sum(-1), torch.ones((), dtype=t.dtype)):
                raise ValueError(f"{name} must hold probability distributions (non-negative rows summing to 1)")
        self.initial, self.transition, self.emission = initial.double(), transition.double(), emission.double()
        self.num_states, self.num_symbols = K, V
        self.bos = V  # the start token of a language model's input

    @classmethod
    def random(cls, config: AutomatonConfig = AutomatonConfig()) -> "ProbabilisticAutomaton":
        """A sparse random automaton drawn from ``config.seed``."""
        if not isinstance(config, AutomatonConfig):
            raise TypeError(f"config must be an AutomatonConfig, got {type(config).__name__}")
        g = torch.Generator().manual_seed(config.seed)
        transition = _sparse_rows(config.num_states, config.num_states, config.successors, g)
        emission = _sparse_rows(config.num_states, config.num_symbols, config.symbols_per_state, g)
        initial = torch.full((config.num_states,), 1.0 / config.num_states, dtype=torch.float64)
        return cls(initial, transition, emission)

    def sample(self, n: int, length: int, seed: int = 0) -> torch.Tensor:
        """``n`` texts of ``length`` symbols, ``(n, length)`` long."""
        _validate.positive_int(n, "n")
        _validate.positive_int(length, "length")
        g = torch.Generator().manual_seed(seed)
        state = torch.multinomial(self.initial.expand(n, -1), 1, generator=g).squeeze(1)  # (n,)
        out = torch.empty(n, length, dtype=torch.long)
        for t in range(length):
            out[:, t] = torch.multinomial(self.emission[state], 1, generator=g).squeeze(1)
            state = torch.multinomial(self.transition[state], 1, generator=g).squeeze(1)
        return out  # (n, length)

    def next_token_probs(self, symbols: torch.Tensor) -> torch.Tensor:
        """``p(x_t = v | x_<t)`` for every position and symbol, ``(n, length, V)`` float64, by the
        forward algorithm (the row at ``t`` uses ``symbols[:, :t]`` only)."""
        if not isinstance(symbols, torch.Tensor) or symbols.dim() != 2:
            raise ValueError(f"symbols must be a (n, length) tensor, got {getattr(symbols, 'shape', symbols)}")
        if symbols.min() < 0 or symbols.max() >= self.num_symbols:
            raise ValueError(f"symbols must lie in 0 .. {self.num_symbols - 1}")
        n, L = symbols.shape
        belief = self.initial.expand(n, -1)  # (n, K)
        probs = torch.empty(n, L, self.num_symbols, dtype=torch.float64)
        for t in range(L):
            probs[:, t] = belief @ self.emission  # (n, V)
            joint = belief * self.emission[:, symbols[:, t]].T  # (n, K): p(s_t, x_<=t) up to a constant
            belief = joint @ self.transition  # (n, K)
            belief = belief / belief.sum(1, keepdim=True)
        return probs

    def cross_entropy(self, symbols: torch.Tensor) -> float:
        """The mean of ``-log p(x_t | x_<t)`` over every symbol: the best loss any model can reach
        on this text, in nats per token."""
        probs = self.next_token_probs(symbols)  # (n, L, V)
        return float(-probs.gather(2, symbols[..., None]).log().mean())

    def lm_batch(self, symbols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs, targets)`` for a language model: ``[BOS, x_0 .. x_{L-2}]`` and ``x``."""
        bos = torch.full((symbols.shape[0], 1), self.bos, dtype=torch.long)
        return torch.cat([bos, symbols[:, :-1]], 1), symbols  # (n, L), (n, L)
