"""train_recipe and recipe_run_dir: a recipe trained once, in the folder any notebook can find again."""
import pytest
import torch

from vitcourse.data import subset, synthetic
from vitcourse.recipes import Recipe, recipe_run_dir, train_recipe

RECIPE = Recipe("vit_smoke_patch8_32", epochs=2, batch_size=32, lr=2e-3, warmup_epochs=0.5, label_smoothing=0.1,
                augment=dict(flip=True))


@pytest.fixture
def data(monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    return synthetic("train", n=64, num_classes=4), synthetic("test", n=40, num_classes=4)


def _optimizer_steps():
    """A list that grows by one at every optimizer step (fit builds its optimizer itself), and the hook's handle."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook
    steps = []
    return steps, register_optimizer_step_pre_hook(lambda opt, args, kwargs: steps.append(1))


def _accuracy(model, data):
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = model.eval()((data.images.float() / 255 - mean) / std)
    return (logits.argmax(1) == data.labels).float().mean().item()


def test_train_recipe_trains_with_the_recipe_in_its_run_dir_and_a_second_call_finds_it(data, tmp_path):
    """The recipe's model (sized for the data), settings and augmentation; the test split evaluated as
    test_acc; the checkpoint in recipe_run_dir; and the same call again loads that run, training nothing."""
    train, test = data
    steps, handle = _optimizer_steps()
    try:
        model, history = train_recipe(RECIPE, train, test, name="ch03", root=tmp_path, progress=False, device="cpu")
        first_steps = len(steps)
        again_model, again = train_recipe(RECIPE, train, test, name="ch03", root=tmp_path, progress=False,
                                          device="cpu")
    finally:
        handle.remove()
    assert first_steps == 2 * 2 and len(steps) == first_steps          # 2 epochs of 2 batches, then nothing
    assert model.config.num_classes == 4 and [e["epoch"] for e in history.epochs] == [1, 2]
    assert history.last["test_acc"] == pytest.approx(_accuracy(model, test))
    ckpt = recipe_run_dir(RECIPE, train, name="ch03", root=tmp_path) / "checkpoint.pt"
    fingerprint = torch.load(ckpt, weights_only=True)["extra"]["fingerprint"]
    assert fingerprint["optimizer"]["lr"] == RECIPE.lr and fingerprint["loss"]["label_smoothing"] == 0.1
    assert fingerprint["schedule"]["warmup_epochs"] == 0.5 and fingerprint["data"]["flip"] is True
    assert again.epochs == history.epochs                               # the stored record, timings included
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again_model.state_dict().values()))


def test_recipe_run_dir_is_one_folder_per_recipe_data_and_seed(data, tmp_path):
    train, _ = data
    folder = recipe_run_dir(RECIPE, train, name="ch03", root=tmp_path)
    assert folder == recipe_run_dir(RECIPE, train, name="ch03", root=tmp_path)
    assert folder.parent == tmp_path / "ch03" / "smoke"
    others = [recipe_run_dir(RECIPE, train, name="ch03", seed=1, root=tmp_path),
              recipe_run_dir(RECIPE.replace(lr=1e-3), train, name="ch03", root=tmp_path),
              recipe_run_dir(RECIPE, subset(train, 32), name="ch03", root=tmp_path),
              recipe_run_dir(RECIPE, train, name="ch05", root=tmp_path)]
    assert len({folder, *others}) == 5


def test_train_for_steps_takes_exactly_its_steps_and_keeps_a_curve(data):
    from vitcourse.data import DeviceLoader
    from vitcourse.recipes import train_for_steps
    train, test = data
    steps, handle = _optimizer_steps()
    try:
        torch.manual_seed(0)
        model = RECIPE.build(train)
        history = train_for_steps(RECIPE, model, train, steps=6, seed=0, evals=3, batch_size=16, device="cpu",
                                  curve=DeviceLoader(test, 40, shuffle=False, device="cpu"))
    finally:
        handle.remove()
    assert len(steps) == 6                       # 64 images in batches of 16: the steps go round the data
    assert [e["step"] for e in history.epochs] == [2, 4, 6]
    assert all(0.0 <= e["test_acc"] <= 1.0 and "train_acc" in e for e in history.epochs)
    with pytest.raises(ValueError, match="multiple of evals=4.*steps=8"):
        train_for_steps(RECIPE, model, train, steps=10, seed=0, evals=4)


def test_train_for_steps_early_stopping_gives_back_the_best_weights(data, tmp_path):
    from vitcourse.data import DeviceLoader
    from vitcourse.recipes import train_for_steps
    from vitcourse.train import evaluate
    train, test = data
    val = DeviceLoader(test, 40, shuffle=False, device="cpu")
    torch.manual_seed(0)
    model = RECIPE.build(train)
    kept = []                                      # the weights after every segment, to compare with
    history = train_for_steps(RECIPE, model, train, steps=8, seed=0, evals=4, batch_size=16, device="cpu",
                              curve=val, curve_name="val", best=tmp_path / "best.pt", lr=5e-2,
                              checkpoint=tmp_path / "run.pt")
    scores = [e["val_acc"] for e in history.epochs]
    torch.manual_seed(0)
    plain = RECIPE.build(train)                    # the same run without early stopping: its last weights
    train_for_steps(RECIPE, plain, train, steps=8, seed=0, evals=4, batch_size=16, device="cpu", curve=val,
                    curve_name="val", lr=5e-2)
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
    assert same == history.epochs[-1]["best"]      # given back the best point's weights, not the last (at this lr
    #                                                the best point is segment 3 of 4, so the weights differ)
    assert [e["best"] for e in history.epochs] == [i == scores.index(max(scores)) for i in range(4)]
    assert evaluate(model, val, device="cpu")["acc"] == max(scores)   # the model is the best point's
    again = RECIPE.build(train)                                          # a finished run, read back
    history2 = train_for_steps(RECIPE, again, train, steps=8, seed=0, evals=4, batch_size=16, device="cpu",
                               curve=val, curve_name="val", best=tmp_path / "best.pt", lr=5e-2,
                               checkpoint=tmp_path / "run.pt")
    assert [e["best"] for e in history2.epochs] == [e["best"] for e in history.epochs]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="validation"):
        train_for_steps(RECIPE, model, train, steps=8, seed=0, evals=4, curve=val, best=tmp_path / "b.pt")
    with pytest.raises(ValueError, match="curve="):
        train_for_steps(RECIPE, model, train, steps=8, seed=0, evals=4, best=tmp_path / "b.pt")
