"""The course's training recipes, per profile, in one place: the notebooks that train the course
ViT (chapter 03) and ResNet (chapter 00), the chapters that reuse them (04-07), and
``benchmarks/`` all read them here, so a benchmark always measures what a chapter trains.

    r = recipe("vit")                       # the active profile's
    model = r.build(train_data)             # create_model(r.model, ...) sized for the data
    loader = DeviceLoader(train_data, r.batch_size, drop_last=True, **r.augment)
    fit(model, loader, epochs=r.epochs, **r.fit_args())
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .runtime import PROFILES, profile


@dataclass(frozen=True)
class Recipe:
    """A registered model and how to train it."""
    model: str                       # a name from vitcourse.models.list_models()
    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: float
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment: dict = field(default_factory=dict)       # DeviceLoader keyword arguments
    model_args: dict = field(default_factory=dict)    # create_model keyword arguments

    def build(self, data, **overrides):
        """The model, sized for ``data`` (an ImageData: channels, image size, number of classes);
        ``overrides`` change any of it, e.g. ``image_size=16`` to train at a lower resolution."""
        from .models import create_model
        c, h, _ = data.shape
        sized = dict(num_classes=len(data.classes), in_channels=c, image_size=h)
        return create_model(self.model, **{**sized, **self.model_args, **overrides})

    def fit_args(self) -> dict:
        """The keyword arguments of ``vitcourse.train.fit`` this recipe sets."""
        return dict(lr=self.lr, warmup_epochs=self.warmup_epochs, weight_decay=self.weight_decay,
                    label_smoothing=self.label_smoothing)

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "Recipe":
        return replace(self, **changes)


RECIPES: dict[str, dict[str, Recipe]] = {
    # Chapter 03's ViT. cpu: Fashion-MNIST, patch 4 (a 7x7 grid, room for a 2-D position structure),
    # 64 wide and 4 deep (139k parameters: about 35 s per epoch on 2 cores), random shifts of 1 px (2 px
    # slowed learning too much for 10 minutes: benchmarks/RESULTS.md).
    "vit": {
        "smoke": Recipe("vit_smoke_patch8_32", epochs=1, batch_size=128, lr=2e-3, warmup_epochs=0.2),
        "cpu": Recipe("vit_fashion_patch4_28", epochs=16, batch_size=128, lr=2e-3, warmup_epochs=1,
                      augment=dict(crop_padding=1)),
        "gpu": Recipe("vit_cifar_patch4_32", epochs=100, batch_size=256, lr=1e-3, warmup_epochs=5,
                      augment=dict(crop_padding=4, flip=True, randaugment=True)),
    },
    # Chapter 04's hybrid: chapter 03's Transformer on tokens from a ResNet feature map, trained alike.
    "hybrid": {
        "smoke": Recipe("vit_hybrid_smoke_32", epochs=1, batch_size=128, lr=2e-3, warmup_epochs=0.2),
        "cpu": Recipe("vit_hybrid_fashion_28", epochs=8, batch_size=64, lr=1e-3, warmup_epochs=0.5),
        "gpu": Recipe("vit_hybrid_cifar_32", epochs=100, batch_size=256, lr=1e-3, warmup_epochs=5,
                      augment=dict(crop_padding=4, flip=True, randaugment=True)),
    },
    # Chapter 07's Swin: sized to chapter 03's ViT of the same profile (about its parameters; its FLOPs
    # are printed by the chapter) and trained by the ViT's recipe, so that the architecture is the only
    # difference (filled in below from "vit").
    # Chapter 00's ResNet, the CNN baseline of chapter 04 and the DeiT teacher of chapter 05.
    "resnet": {
        "smoke": Recipe("resnet8", epochs=1, batch_size=128, lr=3e-3, warmup_epochs=0.2,
                        augment=dict(crop_padding=4, flip=True)),
        "cpu": Recipe("resnet8", epochs=6, batch_size=128, lr=3e-3, warmup_epochs=0.3,
                      augment=dict(crop_padding=2, flip=True)),
        "gpu": Recipe("resnet20", epochs=30, batch_size=512, lr=2e-3, warmup_epochs=2,
                      augment=dict(crop_padding=4, flip=True)),
    },
}
RECIPES["swin"] = {p: replace(r, model=m) for (p, r), m in
                   zip(RECIPES["vit"].items(), ("swin_smoke_32", "swin_fashion_28", "swin_cifar_32"))}


def recipe(name: str, profile_name: str | None = None) -> Recipe:
    """The recipe ``name`` ("vit", "hybrid", "swin", "resnet") of a profile, by default the active one."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    p = profile_name or profile()
    if p not in PROFILES:
        raise ValueError(f"unknown profile {p!r}; use one of {', '.join(PROFILES)}")
    return RECIPES[name][p]


def recipe_run_dir(r: Recipe, train, *, name: str, seed: int = 0, root=None):
    """The folder where ``train_recipe(r, train, name=name, seed=seed)`` keeps its run: a notebook can
    ask whether another chapter's model has been trained (``(folder / "checkpoint.pt").exists()``)."""
    from .study import run_dir
    return run_dir(name, {**r.to_dict(), "data": train.name, "train_images": len(train), "seed": seed}, root=root)


def train_recipe(r: Recipe, train, test=None, *, name: str, seed: int = 0, root=None, progress: bool = True,
                 device=None):
    """Train ``r``'s model on ``train`` with ``r``'s settings, checkpointed under
    ``run_dir(name, {recipe, data})``: the same call in another notebook finds the same run (finished:
    loaded at once; interrupted: resumed). ``test`` is evaluated after every epoch and recorded as
    ``test_acc``. Returns (model, history)."""
    from .data import DeviceLoader
    from .runtime import seed_everything
    from .train import fit
    from .beside import LOCK, _epochs_done, _lock_holder
    run = recipe_run_dir(r, train, name=name, seed=seed, root=root)
    holder = _lock_holder(run)
    if holder is not None and _epochs_done(run / "checkpoint.pt") < r.epochs:
        raise RuntimeError(f"seed {seed} of this run is being trained by process {holder} (started by train_beside; "
                           f"its lock is {run / LOCK}): call .wait() on what train_beside returned, or wait for that "
                           f"process to end, before train_recipe(..., seed={seed}). If no such training is running, "
                           "delete the lock file")
    seed_everything(seed)
    model = r.build(train)
    loader = DeviceLoader(train, r.batch_size, seed=seed, device=device, **r.augment)
    test_loader = DeviceLoader(test, 1000, shuffle=False, device=device) if test is not None else None
    history = fit(model, loader, test_loader, epochs=r.epochs, **r.fit_args(), val_name="test",
                  checkpoint=run / "checkpoint.pt", progress=progress, device=device)
    return model, history


def train_for_steps(r: Recipe, model, train, *, steps: int, seed: int, curve=None, curve_name: str = "test",
                    evals: int = 10, warmup_fraction: float = 0.1, batch_size: int | None = None, checkpoint=None,
                    best=None, resize: int | None = None, device=None, **fit_overrides):
    """Train ``model`` on ``train`` with ``r``'s settings for exactly ``steps`` steps (whatever the size of
    ``train``: a study that compares models or data sets at equal compute), evaluating ``curve`` (a loader,
    e.g. a fixed subset of the test images) ``evals`` times on the way, so the run keeps its learning curve.

    The steps are ``evals`` segments of ``steps // evals`` (``fit``'s epochs), under one warm-up and cosine
    schedule over all of them; ``warmup_fraction`` of the steps warm up. Each record of the returned
    ``History`` has ``step``, the running ``train_acc`` of the (augmented) batches of its segment and
    ``<curve_name>_acc`` on ``curve`` (say ``curve_name="val"`` for a validation split).
    ``fit_overrides`` (``lr``, ``loss_fn``, ...) replace the recipe's. ``resize``: the training batches are
    resized to this size (``data.Resized``, e.g. 224 for a pre-trained ViT-B; resize ``curve`` alike).

    ``best``: early stopping, as the ViT paper's data-scale study (figure 4, "we report the best validation
    accuracy achieved during training"): a file where the weights of the point with the highest
    ``<curve_name>_acc`` so far are written (atomically), and the model is given back with those weights,
    not the last ones; the chosen record has ``best=True``. ``curve`` must then be a validation split held
    out from the training images (``data.holdout``), never the test split, which would choose on it."""
    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import DeviceLoader, FixedSteps, Resized
    from .train import fit
    if steps < evals or steps % evals:
        raise ValueError(f"steps={steps} must be a positive multiple of evals={evals} (the learning curve's points): "
                         f"use steps={max(evals, steps - steps % evals)}")
    if best is not None and curve is None:
        raise ValueError("best= keeps the weights of the best point of the curve: give curve= a validation loader")
    if best is not None and curve_name == "test":
        raise ValueError("best= chooses a step on the curve: call it a validation split (curve_name='val'), "
                         "held out from the training images, not the test split")
    loader = DeviceLoader(train, batch_size or r.batch_size, drop_last=True, seed=seed, device=device, **r.augment)
    segments = FixedSteps(loader, steps // evals)
    if resize is not None:
        segments = Resized(segments, resize)
    args = {**r.fit_args(), "warmup_epochs": warmup_fraction * evals, **fit_overrides}
    key = f"{curve_name}_acc"

    def keep_best(epoch, history):
        *earlier, last = [e[key] for e in history.epochs]
        if last > max(earlier, default=float("-inf")):            # the first of equal scores stays chosen
            save_checkpoint(best, model=model, epoch=epoch)

    history = fit(model, segments, curve, epochs=evals, **args, val_name=curve_name,
                  checkpoint=checkpoint, progress=False, device=device,
                  on_epoch_end=keep_best if best is not None else None)
    for record in history.epochs:
        record["step"] = record["epoch"] * (steps // evals)
    if best is not None:
        scores = [e[key] for e in history.epochs]
        chosen = scores.index(max(scores))
        state = load_checkpoint(best, model=model, restore_rng=False)
        if state["epoch"] != history.epochs[chosen]["epoch"]:
            raise RuntimeError(f"{best} holds the weights after segment {state['epoch']}, but the best point is segment "
                               f"{history.epochs[chosen]['epoch']} (the run was cut off between two saves): delete "
                               f"{best} and {checkpoint} and train again")
        for i, record in enumerate(history.epochs):
            record["best"] = i == chosen
    return history
