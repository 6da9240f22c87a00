"""Pooling of token states into one vector per text.

RDS+ weights token i (1-based among the real tokens) by i / sum_j j: later tokens of a
causal LM have seen more of the text. Weights come from the attention mask's cumulative sum,
so padding on either side gets weight 0 and a text pools to the same vector at any batch
size.
"""

from __future__ import annotations

import torch


def position_weights(mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq) weights: w_i = i / sum_j j over real tokens, 0 on padding."""
    m = mask.to(torch.float32)
    pos = m.cumsum(dim=1) * m
    return pos / pos.sum(dim=1, keepdim=True).clamp_min(1.0)


def weighted_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Position-weighted mean of ``hidden`` (batch, seq, dim) over real tokens, in float32."""
    w = position_weights(mask)
    return torch.einsum("bsd,bs->bd", hidden.to(torch.float32), w)


def mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Plain mean over real tokens (sentence-transformers' default pooling), in float32."""
    m = mask.to(torch.float32)
    return torch.einsum("bsd,bs->bd", hidden.to(torch.float32), m) / m.sum(1, keepdim=True).clamp_min(1.0)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit rows; an all-zero row stays zero (scores 0 against everything) instead of NaN."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
