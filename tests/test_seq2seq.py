"""Sequence models: shapes, masks, and that each one can learn (overfit a small batch exactly)."""
import pytest
import torch

from vitcourse.data import SequenceLoader, collate, exact_match, make_task
from vitcourse.models import create_model, list_models
from vitcourse.models.seq2seq import exact_match_by_length
from vitcourse.nn import DecoderLayer, Transformer

TINY = {
    "seq2seq_context": dict(emb_dim=16, hidden=64),
    "seq2seq_attention": dict(emb_dim=16, hidden=64),
    "transformer_seq2seq": dict(dim=64, num_heads=4, dropout=0.0),
    "transformer_seq2seq_postln": dict(dim=64, num_heads=4, dropout=0.0, norm_first=False),
}


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny sequential models: thread hand-offs cost more than they save (and the CI box is shared).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build(key, vocab_size):
    name = key.replace("_postln", "")
    torch.manual_seed(0)
    return create_model(name, vocab_size=vocab_size, **TINY[key])


def test_registered():
    assert {"seq2seq_context", "seq2seq_attention", "transformer_seq2seq"} <= set(list_models())


@pytest.mark.parametrize("key", list(TINY))
def test_overfits_a_small_batch_to_exact_match(key):
    task = make_task("reverse", num_symbols=8, min_len=2, max_len=7)
    batch = collate(task.sample(16, seed=0))
    (src, src_lengths, tgt_in), tgt_out = batch
    model = build(key, task.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(600):
        logits = model(src, src_lengths, tgt_in)
        assert logits.shape == (*tgt_in.shape, task.vocab_size)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            model.eval()
            done = exact_match(model.greedy_decode(src, src_lengths, tgt_out.shape[1] + 2), tgt_out).all()
            model.train()
            if done:
                break
    assert done, f"{key} did not overfit 16 sequences (loss {loss.item():.3f})"
    lengths, correct = exact_match_by_length(model, [batch])
    assert correct.all() and torch.equal(lengths, src_lengths - 1)


@pytest.mark.parametrize("key", list(TINY))
def test_padding_of_the_source_does_not_change_the_output(key):
    task = make_task("copy", num_symbols=8, min_len=2, max_len=9)
    (src, src_lengths, tgt_in), _ = collate(task.sample(6, seed=1))
    model = build(key, task.vocab_size).eval()
    junk = src.clone()
    junk[torch.arange(src.shape[1])[None, :] >= src_lengths[:, None]] = 5  # overwrite the padding
    assert torch.allclose(model(src, src_lengths, tgt_in), model(junk, src_lengths, tgt_in), atol=1e-5)


def test_transformer_decoder_is_causal():
    task = make_task("copy", num_symbols=8, min_len=6, max_len=6)
    (src, src_lengths, tgt_in), _ = collate(task.sample(2, seed=2))
    model = build("transformer_seq2seq", task.vocab_size).eval()
    changed = tgt_in.clone()
    changed[:, 4:] = 3
    a, b = model(src, src_lengths, tgt_in), model(src, src_lengths, changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_bahdanau_alignment_weights_are_distributions_over_real_tokens():
    task = make_task("reverse", num_symbols=8, min_len=2, max_len=9)
    (src, src_lengths, tgt_in), _ = collate(task.sample(5, seed=3))
    model = build("seq2seq_attention", task.vocab_size)
    w = model.attention_weights(src, src_lengths, tgt_in)
    assert w.shape == (*tgt_in.shape, src.shape[1])
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-5)
    for b, n in enumerate(src_lengths.tolist()):
        assert (w[b, :, n:] == 0).all()
    with pytest.raises(ValueError, match="no attention"):
        build("seq2seq_context", task.vocab_size).attention_weights(src, src_lengths, tgt_in)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_shapes_and_weights(norm_first):
    layer = DecoderLayer(32, 4, norm_first=norm_first)
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    out, w = layer(x, mem, need_weights=True)
    assert out.shape == x.shape and w.shape == (2, 4, 5, 7)


def test_transformer_arguments_are_checked():
    with pytest.raises(ValueError, match="positional"):
        Transformer(10, positional="rotary")
    with pytest.raises(ValueError, match="divisible"):
        Transformer(10, dim=30, num_heads=4)


def test_loader_feeds_fit_shaped_batches():
    task = make_task("reverse", max_len=10)
    loader = SequenceLoader(task.sample(20, seed=0), 8, device="cpu")
    model = build("seq2seq_attention", task.vocab_size)
    inputs, targets = next(iter(loader))
    assert model(*inputs).shape[:2] == targets.shape


def test_length_bins_cover_every_length_once_and_exact_match_by_bin():
    from vitcourse.models.seq2seq import exact_match_by_bin, length_bins
    bins = length_bins(3, 40)
    assert bins[0] == (3, 7) and bins[-1] == (38, 40)
    covered = [n for lo, hi in bins for n in range(lo, hi + 1)]
    assert covered == list(range(3, 41))                      # no gaps, no overlaps, no 1-word bins at the start
    assert length_bins(3, 12) == [(3, 5), (6, 8), (9, 11), (12, 12)]
    lengths, correct = torch.tensor([3, 4, 9, 9]), torch.tensor([True, False, True, True])
    shares = exact_match_by_bin(lengths, correct, [(3, 5), (6, 8), (9, 11)])
    assert shares[0] == 0.5 and shares[2] == 1.0 and shares[1] != shares[1]   # NaN for the empty bin
