import json
import math
import re

import pytest
import torch
import torch.nn as nn

from vitcourse.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vitcourse.data import DeviceLoader, FixedSteps, synthetic
from vitcourse.models import create_model
from vitcourse.train import History, cross_entropy, evaluate, fit, main, param_groups, predict, warmup_cosine


class TinyNet(nn.Module):
    """Conv + dropout: exercises weight decay groups and the dropout RNG that resume must restore."""

    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.drop(self.conv(x).relu().mean((2, 3))))


@pytest.fixture(scope="module")
def tiny_data():
    return synthetic("train", n=160, image_size=16), synthetic("test", n=80, image_size=16)


def _loaders(tiny_data, **kw):
    train, test = tiny_data
    return (DeviceLoader(train, 32, crop_padding=2, flip=True, seed=5, device="cpu", **kw),
            DeviceLoader(test, 64, shuffle=False, device="cpu"))


class Disconnect(Exception):
    pass


def _straight_and_resumed(loaders, ckpt, **kw):
    """The same run twice from seed 0: straight through, and interrupted after epoch 1 (Colab drops the
    session once epoch 1's checkpoint is written) then resumed in a 'fresh process' (another RNG
    state, a newly initialised model, new loaders). Returns (straight model, resumed model, history)."""
    torch.manual_seed(0)
    straight = TinyNet()
    fit(straight, *loaders(), **kw)

    def stop_after_first(epoch, history):
        if epoch == 1:
            raise Disconnect

    torch.manual_seed(0)
    with pytest.raises(Disconnect):
        fit(TinyNet(), *loaders(), checkpoint=ckpt, on_epoch_end=stop_after_first, **kw)
    torch.manual_seed(123)
    resumed = TinyNet()
    history = fit(resumed, *loaders(), checkpoint=ckpt, **kw)
    return straight, resumed, history


def _assert_same_weights(a, b, what="after resume"):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), f"{name} differs {what}"


def test_resumed_run_ends_with_exactly_the_same_weights(tiny_data, tmp_path):
    kw = dict(epochs=3, lr=3e-3, warmup_epochs=0.5, label_smoothing=0.1, progress=False, device="cpu")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    straight, resumed, history = _straight_and_resumed(lambda: _loaders(tiny_data), ckpt, **kw)
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]
    _assert_same_weights(straight, resumed)
    # A finished run is not trained again.
    before = {k: v.clone() for k, v in resumed.state_dict().items()}
    again = fit(resumed, *_loaders(tiny_data), checkpoint=ckpt, **kw)
    assert len(again.epochs) == 3 and all(torch.equal(before[k], v) for k, v in resumed.state_dict().items())


def test_resume_with_fixed_steps_mixup_and_randaugment_is_exact(tiny_data, tmp_path):
    """FixedSteps (7 steps per epoch from a 5-batch loader: epoch 2 starts inside the loader's second
    epoch), MixUp and RandAugment: the interrupted and resumed run ends with the straight run's weights."""
    def loaders():
        inner = DeviceLoader(tiny_data[0], 32, mixup_alpha=0.4, randaugment=True, randaugment_group=8, seed=5,
                             device="cpu")
        return FixedSteps(inner, steps=7), DeviceLoader(tiny_data[1], 64, shuffle=False, device="cpu")
    kw = dict(epochs=3, lr=3e-3, warmup_epochs=0.5, progress=False, device="cpu")
    straight, resumed, history = _straight_and_resumed(loaders, tmp_path / "run" / "checkpoint.pt", **kw)
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]
    _assert_same_weights(straight, resumed)


def test_resume_false_trains_from_scratch_over_an_existing_checkpoint(tiny_data, tmp_path):
    """resume=False ignores a finished run's checkpoint (even of the very same run), trains all epochs
    from the model it is given, and replaces the checkpoint with the new run."""
    kw = dict(epochs=2, lr=3e-3, progress=False, device="cpu")
    ckpt = tmp_path / "checkpoint.pt"
    torch.manual_seed(0)
    fit(TinyNet(), *_loaders(tiny_data), checkpoint=ckpt, **kw)
    torch.manual_seed(1)
    fresh = TinyNet()
    history = fit(fresh, *_loaders(tiny_data), checkpoint=ckpt, resume=False, **kw)
    torch.manual_seed(1)
    alone = TinyNet()
    fit(alone, *_loaders(tiny_data), **kw)                   # the same run without any checkpoint
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    _assert_same_weights(alone, fresh, "from a run that ignored the old checkpoint")
    stored = load_checkpoint(ckpt, model=TinyNet())
    assert stored["history"] == history.epochs


def test_predict_gives_argmax_classes_and_targets_in_order_in_eval_mode():
    """predict: the class with the largest logit (of the first output of a tuple, as a DeiT gives in
    training), per sample, over every batch in order, with dropout off; the model's mode is restored."""
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.9)          # in training mode it would zero most logits

        def forward(self, x):
            x = self.drop(x)
            return x, -x
    loader = [(torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]]), torch.tensor([1, 2])),
              (torch.tensor([[0.5, 0.0, 2.0]]), torch.tensor([0]))]
    model = TwoHeads().train()
    preds, targets = predict(model, loader, device="cpu")
    assert preds.tolist() == [1, 0, 2] and targets.tolist() == [1, 2, 0]
    assert preds.device.type == "cpu" and model.training


def _recording_optimizer_steps(record):
    """Call ``record(optimizer)`` before every optimizer step (fit builds its optimizer itself)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    return register_optimizer_step_pre_hook(lambda opt, args, kwargs: record(opt))


def _grad_norm(optimizer):
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()


def test_grad_clip_bounds_the_gradient_norm_the_optimizer_steps_with(tiny_data):
    """grad_clip=0.5: every step sees a total gradient norm of 0.5 (the raw ones are far larger);
    grad_clip=None: the raw gradients."""
    norms = {}
    big_loss = lambda out, tgt, inp: 100 * cross_entropy(out, tgt)  # noqa: E731  (gradients far above 0.5)
    for clip in (0.5, None):
        norms[clip] = []
        handle = _recording_optimizer_steps(lambda opt: norms[clip].append(_grad_norm(opt)))
        try:
            torch.manual_seed(0)
            fit(TinyNet(), _loaders(tiny_data)[0], epochs=1, grad_clip=clip, loss_fn=big_loss, progress=False,
                device="cpu")
        finally:
            handle.remove()
    assert len(norms[0.5]) == 5 and norms[0.5] == pytest.approx([0.5] * 5, rel=1e-4)
    assert min(norms[None]) > 2.0


def test_history_records_the_scheduled_learning_rate(tiny_data):
    """5 steps per epoch, warm-up 1 epoch, cosine to 0 over the other 3: each epoch records the rate
    after its last step, 0.01 x [1, (1 + cos(pi/3))/2, (1 + cos(2pi/3))/2, 0]; the first step used 0.01/5."""
    used = []
    handle = _recording_optimizer_steps(lambda opt: used.append(opt.param_groups[0]["lr"]))
    try:
        history = fit(TinyNet(), _loaders(tiny_data)[0], epochs=4, lr=0.01, warmup_epochs=1, progress=False,
                      device="cpu")
    finally:
        handle.remove()
    assert history["lr"] == pytest.approx([0.01, 0.0075, 0.0025, 0.0], abs=1e-12)
    assert len(used) == 20 and used[0] == pytest.approx(0.002) and used[4] == pytest.approx(0.01)
    assert used[5::5] == pytest.approx(history["lr"][:3])  # recorded = what the next epoch starts with


def test_corrupt_checkpoint_is_a_clear_error_and_is_left_alone(tiny_data, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"\x80\x02 truncated")
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        fit(model, *_loaders(tiny_data), epochs=1, checkpoint=ckpt, progress=False, device="cpu")
    assert ckpt.read_bytes() == b"\x80\x02 truncated"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, model=TinyNet(width=8), epoch=1)
    saved = ckpt.read_bytes()
    other = TinyNet(width=16)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"different model .*shape mismatches.*conv.weight"):
        load_checkpoint(ckpt, model=other)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(ckpt, model=nn.Sequential(nn.Linear(2, 2)))
    assert ckpt.read_bytes() == saved
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_checkpoint_loads_with_weights_only(tmp_path):
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, model=TinyNet(), epoch=2, history=[{"epoch": 1, "train_loss": 1.0}])
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and state["history"][0]["train_loss"] == 1.0
    assert not list(tmp_path.glob("*.tmp")), "no temporary file may be left behind"


def test_warmup_then_cosine():
    f = warmup_cosine(total_steps=110, warmup_steps=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.5) and f(110) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def test_no_weight_decay_on_norms_biases_and_named_embeddings():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    model.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
    model.no_weight_decay = lambda: {"pos_embed"}
    decay, no_decay = param_groups(model, 0.05)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 4 and no_decay["weight_decay"] == 0.0


class Lookup(nn.Module):
    """A 'model' whose output for input i is the fixed logits table[i]: known outputs, by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = table
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, i):
        return self.table[i] + self.p


def test_sequence_outputs_ignore_padding_and_every_token_counts_once():
    """evaluate's loss and accuracy are over all counted tokens of all batches (a batch with more
    tokens weighs more), and padded targets (-100) count for neither."""
    # Every token's logits are [2, 0, 0] over a vocabulary of 3: predicted class 0.
    table = torch.tensor([2.0, 0.0, 0.0]).expand(2, 3, 3)
    targets = [torch.tensor([[0, 2, -100]]), torch.tensor([[1, -100, -100]])]   # 2 tokens, then 1
    right, wrong = -math.log(math.exp(2) / (math.exp(2) + 2)), -math.log(1 / (math.exp(2) + 2))
    assert cross_entropy(table[:1], targets[0]).item() == pytest.approx((right + wrong) / 2, rel=1e-6)
    loader = [(torch.tensor([0]), targets[0]), (torch.tensor([1]), targets[1])]
    result = evaluate(Lookup(table), loader, device="cpu")
    assert result["loss"] == pytest.approx((right + 2 * wrong) / 3, rel=1e-6)  # not the mean of batch means
    assert result["acc"] == pytest.approx(1 / 3)                               # 1 right of 3 counted tokens


def _normalised(data):
    """The split's images normalised by hand with its (train) statistics, as one float tensor."""
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return (data.images.float() / 255 - mean) / std


def test_fit_learns_and_reports_history(tiny_data):
    """fit's per-epoch record; its val_loss/val_acc are the model's on the whole evaluation set
    (computed here in one eval-mode pass, not with evaluate), whatever the batching (64 + 16)."""
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=3)
    train, test = _loaders(tiny_data)
    history = fit(model, train, test, epochs=4, lr=3e-3, progress=False, device="cpu")
    first, last = history.epochs[0], history.last
    assert set(last) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"}
    assert last["train_loss"] < first["train_loss"]
    model.eval()
    with torch.no_grad():
        logits = model(_normalised(tiny_data[1]))
    labels = tiny_data[1].labels
    assert last["val_acc"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert last["val_loss"] == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-5)
    assert History.from_dict(json.loads(json.dumps(history.to_dict()))).epochs == history.epochs
    fig = history.plot()
    assert fig.axes[0].get_title() and fig.axes[0].get_xlabel() == "epoch"


def test_loss_hook_sees_outputs_targets_and_inputs(tiny_data):
    seen = {}

    def hook(outputs, targets, inputs):
        seen["shapes"] = (outputs.shape, targets.shape, inputs.shape)
        return cross_entropy(outputs, targets)
    fit(TinyNet(), *_loaders(tiny_data), epochs=1, loss_fn=hook, progress=False, device="cpu")
    assert seen["shapes"] == (torch.Size([32, 10]), torch.Size([32]), torch.Size([32, 3, 16, 16]))


def test_soft_targets_train_on_the_soft_cross_entropy(tiny_data):
    """With MixUp the training loss is -sum_c y_c log p_c of the mixed targets, averaged over all images
    (batches of 48, 48, 48 and 16), and the accuracy counts the class with the largest share."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))   # no dropout: one deterministic forward
    train = DeviceLoader(tiny_data[0], 48, mixup_alpha=0.5, seed=2, device="cpu")
    history = fit(model, train, epochs=1, lr=0.0, progress=False, device="cpu")  # lr 0: the model stays put
    train.set_epoch(0)
    loss_sum, correct, soft = 0.0, 0, False
    with torch.no_grad():
        for x, y in train:
            log_p = model(x).log_softmax(1)
            loss_sum += -(y * log_p).sum().item()
            correct += (log_p.argmax(1) == y.argmax(1)).sum().item()
            soft |= bool((y.max(1).values < 0.99).any())
    assert soft, "MixUp should have mixed some targets"
    assert history.last["train_loss"] == pytest.approx(loss_sum / 160, rel=1e-5)
    assert history.last["train_acc"] == pytest.approx(correct / 160)


def test_command_line_writes_checkpoint_and_history(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--out", str(out),
            "--batch-size", "64", "--subset", "0.05", "--no-progress"]
    result = main(args)
    assert (out / "checkpoint.pt").exists()
    stored = json.loads((out / "history.json").read_text())
    assert stored["final"]["epoch"] == 1 == result["final"]["epoch"]
    with pytest.raises(SystemExit) as exited:  # refuses to overwrite a run without --resume
        main(args)
    assert exited.value.code == 2 and "--resume" in capsys.readouterr().err
    saved = (out / "checkpoint.pt").read_bytes()
    again = main(args + ["--resume"])  # finished: resumes to the end at once, nothing trained again
    assert again["history"] == result["history"]            # the same record, its timings included
    assert (out / "checkpoint.pt").read_bytes() == saved


@pytest.mark.parametrize("change, message", [
    # A name that begins known ones: difflib alone finds nothing (the suffix is too long).
    (["--model", "vit_tiny"], r"argument --model: unknown model 'vit_tiny'\. Did you mean 'vit_tiny_patch14_224', "
                              r"'vit_tiny_patch16_224' or 'vit_tiny_patch32_224'\? Known models: .*, resnet8, "),
    (["--model", "resnet21"], r"unknown model 'resnet21'\. Did you mean .*'resnet20'.*\? Known models: "),
    (["--model", "qqq"], r"unknown model 'qqq'\. Known models: deit_"),
    (["--dataset", "fashion"], r"argument --dataset: unknown data set 'fashion'\. Did you mean 'fashion_mnist'\? "
                               r"Known data sets: cifar10, cifar100, fashion_mnist, synthetic\.$"),
    (["--epochs", "0"], r"argument --epochs: must be at least 1 \(0 epochs trains nothing\), got 0$"),
    (["--batch-size", "0"], r"argument --batch-size: must be at least 1, got 0$"),
    (["--lr", "-0.001"], r"argument --lr: must be positive, got -0.001$"),
    (["--lr", "nan"], r"argument --lr: must be positive, got nan$"),
    (["--weight-decay", "-0.05"], r"argument --weight-decay: cannot be negative, got -0.05$"),
    (["--warmup-epochs", "-1"], r"argument --warmup-epochs: cannot be negative, got -1.0$"),
    (["--label-smoothing", "1"], r"argument --label-smoothing: must be in \[0, 1\), got 1.0$"),
    (["--crop-padding", "-2"], r"argument --crop-padding: cannot be negative, got -2$"),
    (["--subset", "5"], r"argument --subset: must be a fraction of the train split, in \(0, 1\], got 5.0$"),
])
def test_command_line_refuses_bad_arguments_in_one_line_with_the_fix(tmp_path, capsys, change, message):
    """A wrong name or a nonsense number: exit status 2 and one line on stderr saying what is wrong and
    what would be right, before any data is loaded, model built or folder made."""
    args = {"--model": "resnet8", "--dataset": "synthetic", "--epochs": "1", "--out": str(tmp_path / "run")}
    args.update(dict(zip(change[::2], change[1::2])))
    with pytest.raises(SystemExit) as exited:
        main([part for pair in args.items() for part in pair] + ["--no-progress"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err                      # no traceback, no usage text
    assert lines[0].startswith("python -m vitcourse.train: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "run").exists()


def test_unknown_model_name_suggests():
    with pytest.raises(KeyError, match="Did you mean .*resnet20.*Known models"):
        create_model("resnet21")
    # The start of known names (below difflib's cutoff: their suffix is long) suggests them.
    with pytest.raises(KeyError, match=r"Did you mean 'vit_tiny_patch14_224', 'vit_tiny_patch16_224' or "
                                       r"'vit_tiny_patch32_224'\? Known models"):
        create_model("vit_tiny")


def test_compile_in_place_keeps_plain_checkpoint_keys(tmp_path):
    """torch.compile wraps forward, not the module, so checkpoints load into an uncompiled model."""
    data = synthetic("train", n=64, image_size=8, channels=1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    ckpt = tmp_path / "c.pt"
    fit(model, DeviceLoader(data, 32, device="cpu"), epochs=1, compile=True, checkpoint=ckpt,
        progress=False, device="cpu")
    keys = list(torch.load(ckpt, weights_only=True)["model"])
    assert keys == ["1.weight", "1.bias"]
    load_checkpoint(ckpt, model=nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))


def test_changed_learning_rate_on_an_existing_checkpoint_is_an_error_naming_lr(tiny_data, tmp_path):
    kw = dict(epochs=1, warmup_epochs=0.5, progress=False, device="cpu")
    ckpt = tmp_path / "run" / "checkpoint.pt"
    fit(TinyNet(), *_loaders(tiny_data), lr=1e-3, checkpoint=ckpt, **kw)
    saved = ckpt.read_bytes()
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        fit(model, *_loaders(tiny_data), lr=2e-3, checkpoint=ckpt, **kw)
    message = str(err.value)
    assert "optimizer.lr: 0.001 in the checkpoint, 0.002 now" in message
    assert "run_dir" in message and "rm -r" in message            # the two ways out
    assert "weight_decay" not in message                            # only what differs is named
    assert ckpt.read_bytes() == saved                               # nothing on disk changed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Other data (another subset) is another run too.
    train, test = tiny_data
    from vitcourse.data import subset
    other = DeviceLoader(subset(train, 80), 32, crop_padding=2, flip=True, seed=5, device="cpu")
    with pytest.raises(CheckpointError, match="data.content_sha1"):
        fit(TinyNet(), other, lr=1e-3, checkpoint=ckpt, **kw)
    # An old checkpoint with no fingerprint is not resumed silently either.
    save_checkpoint(tmp_path / "old.pt", model=TinyNet(), epoch=1)
    with pytest.raises(CheckpointError, match="without a run fingerprint"):
        fit(TinyNet(), *_loaders(tiny_data), lr=1e-3, checkpoint=tmp_path / "old.pt", **kw)


def test_optimizer_state_is_checked_before_the_model_changes(tmp_path):
    src = TinyNet()
    opt = torch.optim.AdamW(src.parameters())
    src(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, model=src, optimizer=opt, epoch=1)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grouped = torch.optim.AdamW(param_groups(model, 0.05))  # two groups where the checkpoint has one
    with pytest.raises(CheckpointError, match="parameter groups"):
        load_checkpoint(ckpt, model=model, optimizer=grouped)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_loss_hook_runs_under_the_precision_policy(tiny_data, monkeypatch):
    from vitcourse import runtime
    entered = []

    class Policy(runtime.Precision):
        def autocast(self, device_type):
            import contextlib

            @contextlib.contextmanager
            def ctx():
                entered.append(True)
                yield
                entered.pop()
            return ctx()

    monkeypatch.setattr(runtime, "precision_for", lambda dev=None: Policy("test", None, False))
    seen = []

    def loss_fn(outputs, targets, inputs):
        seen.append(bool(entered))
        return cross_entropy(outputs, targets)

    fit(TinyNet(), _loaders(tiny_data)[0], epochs=1, loss_fn=loss_fn, progress=False, device="cpu")
    assert seen and all(seen)


def test_history_names_the_evaluation_set_and_notes_the_training_loss(tiny_data):
    history = fit(TinyNet(), *_loaders(tiny_data, mixup_alpha=0.2), epochs=1, label_smoothing=0.1,
                  progress=False, device="cpu", val_name="test")
    assert "test_acc" in history.last and "val_acc" not in history.last
    assert history.train_loss_note == "label smoothing 0.1 and mixed targets"
    fig = history.plot()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("label smoothing" in t for t in labels) and any(t.startswith("test") for t in labels)
    import matplotlib.pyplot as plt
    plt.close("all")


def test_measure_keeps_numbers_in_every_record_and_changes_nothing(tiny_data, tmp_path):
    """fit(measure=...) adds its numbers to each epoch's record, in eval mode without gradients, and the
    weights end exactly as without it (it draws no random numbers and leaves train mode on)."""
    modes = []

    def measure(model):
        modes.append((model.training, torch.is_grad_enabled()))
        return {"head_norm": model.head.weight.norm().item()}

    kw = dict(epochs=2, lr=3e-3, progress=False, device="cpu")
    torch.manual_seed(0)
    plain = TinyNet()
    fit(plain, *_loaders(tiny_data), **kw)
    torch.manual_seed(0)
    measured = TinyNet()
    history = fit(measured, *_loaders(tiny_data), measure=measure, checkpoint=tmp_path / "c.pt", **kw)
    assert modes == [(False, False), (False, False)] and measured.training
    assert [e["head_norm"] for e in history.epochs] == pytest.approx([history.epochs[0]["head_norm"],
                                                                       measured.head.weight.norm().item()])
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), measured.state_dict().values()))
    saved = torch.load(tmp_path / "c.pt", weights_only=True)["history"]
    assert [e["head_norm"] for e in saved] == [e["head_norm"] for e in history.epochs]
