"""Synthetic "translation" tasks for chapters 01-02: deterministic, any length, known alignment.

A source sentence is a random string of symbols; its "translation" is a fixed function of it:

- ``copy``:    the same string (alignment = the identity, a diagonal heatmap);
- ``reverse``: the string backwards (target word i comes from source word L-1-i: an anti-diagonal);
- ``swap``:    neighbours swapped in pairs, "abcdef" -> "badcfe" (a local reordering).

Real translation has both kinds of alignment; here the right answer is known, so exact-match
accuracy and attention heatmaps can be checked against it. Lengths are uniform in
[min_len, max_len]: long sentences are where one fixed context vector runs out of room
(Cho et al. 2014; Bahdanau et al. 2015, fig. 2).

Token ids: 0 = <pad>, 1 = <bos>, 2 = <eos>, then the symbols. The source ends with <eos> (a
landmark for "the sentence stops here"); the decoder reads ``tgt_in`` = <bos> y_1 ... y_T and
predicts ``tgt_out`` = y_1 ... y_T <eos> (teacher forcing). Padding in ``tgt_out`` is
``IGNORE_INDEX`` (-100), which cross-entropy skips.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

import torch

from ..runtime import device as default_device
from .loader import check_batching, tensor_sha1

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
IGNORE_INDEX = -100
TASKS = ("copy", "reverse", "swap")


def _swap_pairs(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    even = (len(x) // 2) * 2  # an odd last symbol stays where it is
    out[0:even:2], out[1:even:2] = x[1:even:2], x[0:even:2]
    return out


_RULES = {"copy": lambda x: x.clone(), "reverse": lambda x: x.flip(0), "swap": _swap_pairs}


@dataclass(frozen=True)
class SequenceTask:
    """One task: its rule, symbol count and length range. ``sample(n, seed)`` is deterministic."""
    name: str = "reverse"
    num_symbols: int = 20
    min_len: int = 3
    max_len: int = 40

    def __post_init__(self):
        if self.name not in _RULES:
            raise ValueError(f"unknown sequence task {self.name!r}; use one of {', '.join(TASKS)}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={self.min_len}, "
                             f"max_len={self.max_len}")
        if not 2 <= self.num_symbols <= len(string.ascii_letters):
            raise ValueError(f"num_symbols must be in 2..{len(string.ascii_letters)}, "
                             f"got {self.num_symbols}")

    @property
    def vocab(self) -> list[str]:
        """Token strings by id: the three specials, then the symbols a, b, c, ..."""
        return list(SPECIALS) + list(string.ascii_letters[: self.num_symbols])

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + self.num_symbols

    def translate(self, src: torch.Tensor) -> torch.Tensor:
        """The target symbols for the source symbols ``src`` (1-D, without <eos>)."""
        return _RULES[self.name](src)

    def sample(self, n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``n`` (source, target) pairs of 1-D int64 tensors; the source ends with <eos>,
        the target has no specials. The same (task, n, seed) always gives the same pairs."""
        gen = torch.Generator().manual_seed(seed)
        lengths = torch.randint(self.min_len, self.max_len + 1, (n,), generator=gen)
        pairs = []
        for length in lengths.tolist():
            x = torch.randint(len(SPECIALS), self.vocab_size, (length,), generator=gen)
            pairs.append((torch.cat([x, torch.tensor([EOS])]), self.translate(x)))
        return pairs

    def decode(self, ids) -> str:
        """Token ids -> a readable string; stops at <eos>, skips <pad> and <bos>."""
        vocab, out = self.vocab, []
        for i in (ids.tolist() if torch.is_tensor(ids) else ids):
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(vocab[i])
        return "".join(out)


def make_task(name: str = "reverse", num_symbols: int = 20, min_len: int = 3, max_len: int = 40):
    """Shorthand for ``SequenceTask(...)``."""
    return SequenceTask(name, num_symbols, min_len, max_len)


def collate(pairs, device=None):
    """Pad a list of (source, target) pairs into one batch.

    Returns ``((src, src_lengths, tgt_in), tgt_out)``: src (B, S) padded with <pad>; src_lengths
    (B,) counting the <eos>; tgt_in (B, T+1) = <bos> y, padded with <pad>; tgt_out (B, T+1) = y <eos>,
    padded with -100.
    """
    src_lengths = torch.tensor([len(s) for s, _ in pairs])
    tgt_lengths = torch.tensor([len(t) + 1 for _, t in pairs])
    b, s_max, t_max = len(pairs), int(src_lengths.max()), int(tgt_lengths.max())
    src = torch.full((b, s_max), PAD, dtype=torch.long)
    tgt_in = torch.full((b, t_max), PAD, dtype=torch.long)
    tgt_out = torch.full((b, t_max), IGNORE_INDEX, dtype=torch.long)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = s
        tgt_in[i, 0], tgt_in[i, 1: len(t) + 1] = BOS, t
        tgt_out[i, : len(t)], tgt_out[i, len(t)] = t, EOS
    dev = torch.device(device) if device is not None else None
    move = (lambda x: x.to(dev)) if dev is not None else (lambda x: x)
    return (move(src), move(src_lengths), move(tgt_in)), move(tgt_out)


class SequenceLoader:
    """Batches of a list of pairs, re-iterable, with ``len()``: what ``vitcourse.train.fit`` takes.

    Each iteration is one epoch; with ``shuffle`` the order comes from a generator seeded with
    (seed, epoch), so runs repeat exactly and ``set_epoch(k)`` reproduces epoch k. Batches are
    padded here and moved to ``device``.

    ``bucket=True`` groups sentences of similar length (sorted within pools of 32 batches, then the
    batches are shuffled): an RNN decoder runs one step per target position of the longest sentence
    in its batch, so less padding means fewer steps, about twice as fast on uniform lengths.
    """

    def __init__(self, pairs, batch_size: int, *, shuffle: bool = True, bucket: bool = False,
                 drop_last: bool = False, seed: int = 0, device=None):
        if len(pairs) == 0:
            raise ValueError("no pairs to load: sample some with task.sample(n) first")
        check_batching(len(pairs), batch_size, drop_last)
        self.pairs, self.batch_size, self.shuffle, self.drop_last = list(pairs), batch_size, shuffle, drop_last
        self.bucket = bucket
        self.seed, self.epoch = seed, 0
        self.device = torch.device(device) if device is not None else default_device()
        self._content = None

    unit = "sentences"  # what fit's progress line counts

    def __len__(self) -> int:
        return check_batching(len(self.pairs), self.batch_size, self.drop_last)

    def describe(self) -> dict:
        """The sentences and the batching, for a run's fingerprint."""
        if self._content is None:  # hashed once: fit asks for it at every call
            self._content = tensor_sha1(*(t for pair in self.pairs for t in pair))
        return {"sentences": len(self.pairs), "content_sha1": self._content, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "bucket": self.bucket, "drop_last": self.drop_last, "seed": self.seed}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        n = len(self.pairs)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=gen).tolist()
        else:
            order = list(range(n))
        b = self.batch_size
        stop = n - n % b if self.drop_last else n
        batches = [order[start: start + b] for start in range(0, min(stop, n), b)]
        if self.bucket:
            pool = 32 * b
            batches = []
            for p in range(0, min(stop, n), pool):
                chunk = sorted(order[p: min(p + pool, stop)], key=lambda i: len(self.pairs[i][0]))
                batches += [chunk[s: s + b] for s in range(0, len(chunk), b)]
            if self.shuffle:  # otherwise every epoch would run short-to-long within each pool
                batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        for idx in batches:
            yield collate([self.pairs[i] for i in idx], self.device)
        self.epoch += 1


def exact_match(predictions: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the prediction equals the whole target, <eos> included.

    ``predictions`` (B, T') are token ids from greedy decoding (anything after <eos> is ignored);
    ``tgt_out`` (B, T) is y <eos> padded with -100.
    """
    t = tgt_out.shape[1]
    if predictions.shape[1] < t:  # a decoder that stopped early cannot match a longer target
        pad = predictions.new_full((predictions.shape[0], t - predictions.shape[1]), PAD)
        predictions = torch.cat([predictions, pad], dim=1)
    predictions = predictions[:, :t]
    real = tgt_out != IGNORE_INDEX
    return ((predictions == tgt_out) | ~real).all(dim=1)
