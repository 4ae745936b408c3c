"""RNN encoder-decoders: one fixed context vector (Cho et al. 2014; Sutskever et al. 2014) versus
Bahdanau attention (Bahdanau, Cho and Bengio 2015), and the registered encoder-decoder Transformer.

Both RNN models share the encoder: a bidirectional GRU reads the source, giving one annotation
h_j = [forward h_j; backward h_j] per source token and a summary of the whole sentence (the two
final states). The decoders differ only in what they read from the encoder:

- ``ContextDecoder``: the summary c, the same at every step. Everything about a 40-token sentence
  must squeeze through this one vector: the bottleneck.
- ``AttentionDecoder``: at step i a fresh context c_i = sum_j alpha_ij h_j, with
  alpha_ij = softmax_j(v^T tanh(W s_{i-1} + U h_j)) (``AdditiveAttention``).

Training uses teacher forcing (the decoder reads the true previous token); ``greedy_decode`` feeds
back its own arg-max, which is how the models are scored (exact match of the whole output).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import rehearsal
from ..data.sequences import BOS, EOS, PAD, exact_match
from ..nn.attention import AdditiveAttention, padding_mask
from ..nn.transformer import Transformer
from ..runtime import evaluating
from .registry import register_model


class Encoder(nn.Module):
    """Bidirectional GRU. Returns annotations (B, S, 2*hidden), zero on padding, and the summary
    (B, 2*hidden) = [last forward state; last backward state]."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.rnn = nn.GRU(emb_dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, src, src_lengths):
        # Packing makes the backward GRU start at each sentence's real last token, not at padding.
        packed = pack_padded_sequence(self.embed(src), src_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, h_n = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return out, torch.cat([h_n[0], h_n[1]], dim=-1)


class ContextDecoder(nn.Module):
    """GRU decoder that sees only the fixed context c: s_i = GRU([y_{i-1}; c], s_{i-1}),
    p(y_i) = softmax(W_o [s_i; c]), s_0 = tanh(W_s c)."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int, enc_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.init_state = nn.Linear(enc_dim, hidden)
        self.rnn = nn.GRU(emb_dim + enc_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden + enc_dim, vocab_size)

    def start(self, annotations, summary, mask):
        return torch.tanh(self.init_state(summary)), (summary,)

    def forward(self, tgt_in, state, memory):
        """Teacher forcing, all steps in one call (c does not depend on the step)."""
        (c,) = memory
        c = c[:, None, :].expand(-1, tgt_in.shape[1], -1)
        s, _ = self.rnn(torch.cat([self.embed(tgt_in), c], dim=-1), state[None])
        return self.out(torch.cat([s, c], dim=-1)), None

    def step(self, y_prev, state, memory):
        (c,) = memory
        s, _ = self.rnn(torch.cat([self.embed(y_prev), c], dim=-1)[:, None], state[None])
        s = s[:, 0]
        return self.out(torch.cat([s, c], dim=-1)), s, None


class AttentionDecoder(nn.Module):
    """GRU decoder with Bahdanau attention: c_i = sum_j alpha_ij h_j with alpha_i from s_{i-1};
    s_i = GRUCell([y_{i-1}; c_i], s_{i-1}); p(y_i) = softmax(W_o [s_i; c_i]); s_0 = tanh(W_s summary)."""

    def __init__(self, vocab_size: int, emb_dim: int, hidden: int, enc_dim: int, attn_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=PAD)
        self.init_state = nn.Linear(enc_dim, hidden)
        self.attention = AdditiveAttention(hidden, enc_dim, attn_dim)
        self.cell = nn.GRUCell(emb_dim + enc_dim, hidden)
        self.out = nn.Linear(hidden + enc_dim, vocab_size)

    def start(self, annotations, summary, mask):
        # U h_j is the same at every decoder step: compute it once.
        return torch.tanh(self.init_state(summary)), (annotations, mask,
                                                      self.attention.project_keys(annotations))

    def step(self, y_prev, state, memory):
        annotations, mask, uh = memory
        c, alpha = self.attention(state, annotations, mask=mask, projected_keys=uh)
        s = self.cell(torch.cat([self.embed(y_prev), c], dim=-1), state)
        return self.out(torch.cat([s, c], dim=-1)), s, alpha

    def forward(self, tgt_in, state, memory):
        """Teacher forcing: a loop, since alpha_i depends on s_{i-1}. Returns (logits, weights (B, T, S))."""
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            out, state, alpha = self.step(tgt_in[:, t], state, memory)
            logits.append(out)
            weights.append(alpha)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)


class Seq2Seq(nn.Module):
    """Encoder + decoder. ``forward(src, src_lengths, tgt_in)`` -> logits (B, T, vocab);
    ``greedy_decode(src, src_lengths, max_len)`` -> ids (B, <= max_len), <pad> after <eos>."""

    def __init__(self, vocab_size: int, emb_dim: int = 64, hidden: int = 128, attention: bool = True,
                 attn_dim: int | None = None):
        super().__init__()
        self.encoder = Encoder(vocab_size, emb_dim, hidden)
        enc_dim = 2 * hidden
        self.decoder = (AttentionDecoder(vocab_size, emb_dim, hidden, enc_dim, attn_dim or hidden)
                        if attention else ContextDecoder(vocab_size, emb_dim, hidden, enc_dim))

    def _start(self, src, src_lengths):
        annotations, summary = self.encoder(src, src_lengths)
        return self.decoder.start(annotations, summary, padding_mask(src_lengths, src.shape[1]))

    def forward(self, src, src_lengths, tgt_in):
        state, memory = self._start(src, src_lengths)
        return self.decoder(tgt_in, state, memory)[0]

    def attention_weights(self, src, src_lengths, tgt_in):
        """(B, T, S) alignment weights under teacher forcing (attention model only)."""
        state, memory = self._start(src, src_lengths)
        weights = self.decoder(tgt_in, state, memory)[1]
        if weights is None:
            raise ValueError("this model has no attention (built with attention=False)")
        return weights

    @torch.no_grad()
    def greedy_decode(self, src, src_lengths, max_len: int):
        state, memory = self._start(src, src_lengths)
        y = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros_like(y, dtype=torch.bool)
        out = []
        for _ in range(max_len):
            logits, state, _ = self.decoder.step(y, state, memory)
            y = logits.argmax(-1).masked_fill(done, PAD)
            out.append(y)
            done |= y == EOS
            if done.all():
                break
        return torch.stack(out, dim=1)


@torch.no_grad()
def exact_match_by_length(model, loader, extra_steps: int = 5):
    """Greedy-decode every batch of ``loader`` (the first only in a rehearsal: ``vitcourse.rehearsal``);
    returns (source lengths without <eos>, bool exact match), one entry per sentence, both 1-D CPU tensors."""
    lengths, correct = [], []
    with evaluating(model):
        for (src, src_lengths, _), tgt_out in rehearsal.batches(loader):
            pred = model.greedy_decode(src, src_lengths, max_len=tgt_out.shape[1] + extra_steps)
            correct.append(exact_match(pred, tgt_out).cpu())
            lengths.append(src_lengths.cpu() - 1)
    return torch.cat(lengths), torch.cat(correct)


def length_bins(min_len: int, max_len: int, width: int | None = None) -> list[tuple[int, int]]:
    """Bins of source lengths (lo, hi), inclusive, ``width`` lengths each (5 for long tasks, 3 for short
    ones by default), starting at ``min_len``; the last bin may be narrower."""
    width = width or (5 if max_len > 20 else 3)
    return [(lo, min(lo + width - 1, max_len)) for lo in range(min_len, max_len + 1, width)]


def exact_match_by_bin(lengths: torch.Tensor, correct: torch.Tensor, bins) -> list[float]:
    """The share of exact matches in each length bin of ``bins`` (NaN for an empty bin), from
    ``exact_match_by_length``'s two tensors."""
    out = []
    for lo, hi in bins:
        keep = (lengths >= lo) & (lengths <= hi)
        out.append(correct[keep].float().mean().item() if keep.any() else float("nan"))
    return out


def seq2seq_context(vocab_size: int, emb_dim: int = 64, hidden: int = 128, **kwargs):
    """GRU encoder-decoder with one fixed context vector (no attention)."""
    return Seq2Seq(vocab_size, emb_dim, hidden, attention=False, **kwargs)


def seq2seq_attention(vocab_size: int, emb_dim: int = 64, hidden: int = 128, **kwargs):
    """GRU encoder-decoder with Bahdanau (additive) attention."""
    return Seq2Seq(vocab_size, emb_dim, hidden, attention=True, **kwargs)


def transformer_seq2seq(vocab_size: int, **kwargs):
    """The encoder-decoder Transformer (``vitcourse.nn.Transformer``) for the sequence tasks."""
    return Transformer(vocab_size, pad_id=PAD, bos_id=BOS, eos_id=EOS, **kwargs)


for _name, _build in (("seq2seq_context", seq2seq_context), ("seq2seq_attention", seq2seq_attention),
                      ("transformer_seq2seq", transformer_seq2seq)):
    register_model(_name, _build)
