"""Transformer layers with the two LayerNorm placements.

post-LN ("vanilla", Vaswani et al. 2017):  x = LN(x + Sublayer(x))
pre-LN  ("ViT", Dosovitskiy et al. 2021, eq. 2-3):  x = x + Sublayer(LN(x))
Wang et al. (2019) and Xiong et al. (2020) show why pre-LN trains stably without warm-up.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .attention import MultiHeadAttention, causal_mask, padding_mask
from .drop_path import DropPath
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class MLP(nn.Module):
    """The position-wise feed-forward block: Linear -> activation -> Dropout -> Linear -> Dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "gelu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class EncoderLayer(nn.Module):
    """Self-attention + MLP, each wrapped in a residual connection and a LayerNorm.

    ``norm_first=True`` is pre-LN (ViT), ``False`` is post-LN (the original Transformer).
    ``drop_path`` is the stochastic-depth rate of both residual branches. ``attn_layer`` builds the
    attention from ``(dim, num_heads, dropout=...)``: ``MultiHeadAttention`` by default, or any
    module with its call, ``forward(x, mask=None, need_weights=False) -> (out, weights or None)``
    (SL-ViT's ``LocalitySelfAttention``, for one).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm_first: bool = True,
                 activation: str = "gelu", norm_eps: float = 1e-6, attn_layer=MultiHeadAttention):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn_layer(dim, num_heads, dropout=attn_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout, activation=activation)
        self.drop = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, mask=None, need_weights: bool = False):
        """x: (batch, n, dim). Returns (x, attention weights or None)."""
        if self.norm_first:
            a, weights = self.attn(self.norm1(x), mask=mask, need_weights=need_weights)
            x = x + self.drop_path(self.drop(a))
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        else:
            a, weights = self.attn(x, mask=mask, need_weights=need_weights)
            x = self.norm1(x + self.drop_path(self.drop(a)))
            x = self.norm2(x + self.drop_path(self.mlp(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder output ("memory"), MLP; each in a
    residual connection with a LayerNorm (Vaswani et al. 2017, section 3.1), pre-LN or post-LN.
    Same defaults as ``EncoderLayer`` (GELU, LayerNorm eps 1e-6, optional stochastic depth).

    The causal mask keeps position t from reading positions > t, so training with teacher forcing
    computes all positions at once yet each one sees only what greedy decoding would have seen.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm_first: bool = True,
                 activation: str = "gelu", norm_eps: float = 1e-6):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.cross_attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout, activation=activation)
        self.drop = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def _branch(self, out):
        """A residual branch's output after dropout and stochastic depth."""
        return self.drop_path(self.drop(out))

    def forward(self, x, memory, self_mask=None, memory_mask=None, need_weights: bool = False):
        """x (B, T, dim), memory (B, S, dim); self_mask broadcastable to (B, heads, T, T) (causal),
        memory_mask to (B, heads, T, S) (source padding). Returns (x, cross-attention weights or None)."""
        res = self._branch
        if self.norm_first:
            x = x + res(self.self_attn(self.norm1(x), mask=self_mask)[0])
            a, weights = self.cross_attn(self.norm2(x), context=memory, mask=memory_mask,
                                         need_weights=need_weights)
            x = x + res(a)
            x = x + self.drop_path(self.mlp(self.norm3(x)))
        else:
            x = self.norm1(x + res(self.self_attn(x, mask=self_mask)[0]))
            a, weights = self.cross_attn(x, context=memory, mask=memory_mask, need_weights=need_weights)
            x = self.norm2(x + res(a))
            x = self.norm3(x + self.drop_path(self.mlp(x)))
        return x, weights


class Transformer(nn.Module):
    """The encoder-decoder Transformer (Vaswani et al. 2017, figure 1) for token sequences.

    One vocabulary for source and target; the token embedding is shared by the encoder, the decoder
    and the output layer (section 3.4) and scaled by sqrt(dim). ``norm_first`` picks pre-LN (then a
    final LayerNorm closes each stack) or post-LN; ``positional`` is "sinusoidal" or "learned".
    ``forward(src, src_lengths, tgt_in)`` -> logits (B, T, vocab) with teacher forcing;
    ``greedy_decode(src, src_lengths, max_len)`` -> token ids (B, <= max_len), <pad> after <eos>.
    """

    def __init__(self, vocab_size: int, dim: int = 128, num_heads: int = 4, num_encoder_layers: int = 2,
                 num_decoder_layers: int = 2, mlp_ratio: float = 4.0, dropout: float = 0.1,
                 norm_first: bool = True, positional: str = "sinusoidal", max_len: int = 256,
                 activation: str = "relu", pad_id: int = 0, bos_id: int = 1, eos_id: int = 2):
        super().__init__()
        positions = {"sinusoidal": SinusoidalPositionalEncoding, "learned": LearnedPositionalEmbedding}
        if positional not in positions:
            raise ValueError(f"unknown positional={positional!r}; use 'sinusoidal' or 'learned'")
        self.dim, self.norm_first = dim, norm_first
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)  # times sqrt(dim) -> unit variance
        self.pos = positions[positional](dim, max_len=max_len)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            EncoderLayer(dim, num_heads, mlp_ratio, dropout=dropout, norm_first=norm_first,
                         activation=activation, norm_eps=1e-5) for _ in range(num_encoder_layers))
        self.decoder = nn.ModuleList(
            DecoderLayer(dim, num_heads, mlp_ratio, dropout=dropout, norm_first=norm_first,
                         activation=activation, norm_eps=1e-5) for _ in range(num_decoder_layers))
        # pre-LN leaves the residual stream un-normalised: one LayerNorm at the end of each stack
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-5) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(dim, eps=1e-5) if norm_first else nn.Identity()

    def _embed(self, tokens):
        return self.drop(self.pos(self.embed(tokens) * self.dim ** 0.5))

    def encode(self, src, src_lengths=None, need_weights: bool = False):
        """-> (memory (B, S, dim), key mask (B, 1, 1, S), list of self-attention weights)."""
        key_mask = (src != self.pad_id) if src_lengths is None else padding_mask(src_lengths, src.shape[1])
        key_mask = key_mask[:, None, None, :]
        x, maps = self._embed(src), []
        for layer in self.encoder:
            x, w = layer(x, mask=key_mask, need_weights=need_weights)
            maps.append(w)
        return self.encoder_norm(x), key_mask, maps

    def decode(self, tgt_in, memory, memory_mask, need_weights: bool = False):
        """-> (logits (B, T, vocab), list of cross-attention weights per layer)."""
        t = tgt_in.shape[1]
        x, maps = self._embed(tgt_in), []
        self_mask = causal_mask(t, device=tgt_in.device)
        for layer in self.decoder:
            x, w = layer(x, memory, self_mask=self_mask, memory_mask=memory_mask, need_weights=need_weights)
            maps.append(w)
        return self.decoder_norm(x) @ self.embed.weight.T, maps

    def forward(self, src, src_lengths, tgt_in):
        memory, memory_mask, _ = self.encode(src, src_lengths)
        return self.decode(tgt_in, memory, memory_mask)[0]

    @torch.no_grad()
    def greedy_decode(self, src, src_lengths, max_len: int):
        """Feed back the arg-max token one step at a time (the prefix is re-run each step: simple,
        and cheap for short outputs). Returns ids (B, <= max_len) after <bos>, <pad> after <eos>."""
        memory, memory_mask, _ = self.encode(src, src_lengths)
        ys = torch.full((src.shape[0], 1), self.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logits, _ = self.decode(ys, memory, memory_mask)
            nxt = logits[:, -1].argmax(-1).masked_fill(done, self.pad_id)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            done |= nxt == self.eos_id
            if done.all():
                break
        return ys[:, 1:]
