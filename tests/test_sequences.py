"""Synthetic translation tasks: determinism, rules, batching, padding, the loader."""
import pytest
import torch

from vitcourse.data import (BOS, EOS, IGNORE_INDEX, PAD, SequenceLoader, SequenceTask, collate,
                            exact_match, make_task)


def test_same_seed_same_pairs_different_seed_different_pairs():
    task = make_task("reverse", max_len=40)
    a, b, c = task.sample(50, seed=3), task.sample(50, seed=3), task.sample(50, seed=4)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert any(not torch.equal(x[0], y[0]) for x, y in zip(a, c))


@pytest.mark.parametrize("name", ["copy", "reverse", "swap"])
def test_rules_and_lengths(name):
    task = make_task(name, num_symbols=10, min_len=3, max_len=40)
    pairs = task.sample(400, seed=0)
    lengths = [len(t) for _, t in pairs]
    assert min(lengths) == 3 and max(lengths) == 40
    for src, tgt in pairs:
        x = src[:-1]
        assert src[-1] == EOS and len(x) == len(tgt)
        assert ((x >= 3) & (x < task.vocab_size)).all()
        if name == "copy":
            assert torch.equal(tgt, x)
        elif name == "reverse":
            assert tgt.tolist() == x.tolist()[::-1]
        else:
            for i in range(0, len(x) - 1, 2):
                assert tgt[i] == x[i + 1] and tgt[i + 1] == x[i]
            if len(x) % 2:
                assert tgt[-1] == x[-1]


def test_swap_and_decode_on_a_known_string():
    task = make_task("swap", num_symbols=6)
    x = torch.tensor([3, 4, 5, 6, 7])  # "abcde"
    assert task.decode(task.translate(x)) == "badce"
    assert task.decode(torch.tensor([BOS, 3, 4, EOS, 5])) == "ab"


def test_collate_pads_and_shifts():
    pairs = [(torch.tensor([3, 4, 5, EOS]), torch.tensor([5, 4, 3])), (torch.tensor([6, EOS]), torch.tensor([6]))]
    (src, src_lengths, tgt_in), tgt_out = collate(pairs)
    assert src.tolist() == [[3, 4, 5, EOS], [6, EOS, PAD, PAD]]
    assert src_lengths.tolist() == [4, 2]
    assert tgt_in.tolist() == [[BOS, 5, 4, 3], [BOS, 6, PAD, PAD]]
    assert tgt_out.tolist() == [[5, 4, 3, EOS], [6, EOS, IGNORE_INDEX, IGNORE_INDEX]]


def test_loader_is_reiterable_with_len_and_seeded_reshuffle():
    pairs = make_task("copy", max_len=12).sample(70, seed=0)
    loader = SequenceLoader(pairs, 16, seed=5, device="cpu")
    assert len(loader) == 5
    epoch0 = [src for (src, _, _), _ in loader]
    epoch1 = [src for (src, _, _), _ in loader]
    assert len(epoch0) == 5 and sum(len(s) for s in epoch0) == 70
    assert not torch.equal(epoch0[0], epoch1[0])  # a new order each epoch
    again = SequenceLoader(pairs, 16, seed=5, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(epoch0, [s for (s, _, _), _ in again]))
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader))[0][0], epoch0[0])
    fixed = SequenceLoader(pairs, 16, shuffle=False, drop_last=True, device="cpu")
    assert len(fixed) == 4 and len(list(fixed)) == 4


def test_exact_match_ignores_what_follows_eos():
    tgt_out = torch.tensor([[5, 4, EOS, IGNORE_INDEX], [6, EOS, IGNORE_INDEX, IGNORE_INDEX]])
    pred = torch.tensor([[5, 4, EOS, 9, 9], [6, 7, EOS, PAD, PAD]])
    assert exact_match(pred, tgt_out).tolist() == [True, False]
    assert exact_match(pred[:, :2], tgt_out).tolist() == [False, False]  # stopped before <eos>


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="unknown sequence task"):
        SequenceTask("sort")
    with pytest.raises(ValueError, match="min_len"):
        make_task("copy", min_len=10, max_len=5)
    with pytest.raises(ValueError, match="batch_size"):
        SequenceLoader(make_task().sample(4), 0)


def test_bucketing_keeps_every_pair_and_cuts_padding():
    pairs = make_task("reverse", max_len=40).sample(640, seed=0)
    plain = SequenceLoader(pairs, 32, seed=1, device="cpu")
    bucketed = SequenceLoader(pairs, 32, seed=1, bucket=True, device="cpu")
    assert len(list(bucketed)) == len(bucketed) == len(plain)
    seen = sorted(tuple(s[:n].tolist()) for (src, lengths, _), _ in bucketed for s, n in zip(src, lengths))
    assert seen == sorted(tuple(s.tolist()) for s, _ in pairs)
    width = lambda loader: sum(src.shape[1] for (src, _, _), _ in loader)  # noqa: E731
    assert width(bucketed) < 0.75 * width(plain)
