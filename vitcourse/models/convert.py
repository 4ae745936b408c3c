"""Load reference implementations' weights into vitcourse models.

``vit_from_torchvision(model)``, ``vit_from_timm(model)`` and ``deit_from_timm(model)`` read the reference's configuration,
refuse what our ViT cannot express (with the reason), and copy every tensor under our names. The
tests check that eval-mode logits agree to 1e-4, which proves that our ViT computes the same
function as both references, not just that the shapes fit.
"""
from __future__ import annotations

import dataclasses

import torch.nn as nn

from .vit import ViT, ViTConfig


class UnsupportedReference(ValueError):
    """The reference model uses a feature our ViT does not have."""


def _require(ok: bool, what: str):
    if not ok:
        raise UnsupportedReference(f"cannot convert: {what}")


def _mlp_ratio(dim: int, hidden: int) -> float:
    ratio = hidden / dim
    _require(int(dim * ratio) == hidden, f"MLP width {hidden} is not a ratio of the width {dim} we can express")
    return ratio


def _load(config: ViTConfig, state: dict) -> ViT:
    model = ViT(config)
    model.load_state_dict(state, strict=True)  # strict: every tensor accounted for, none left over
    return model.eval()


def vit_from_torchvision(model: nn.Module) -> ViT:
    """A vitcourse ViT with the weights of a ``torchvision.models.VisionTransformer`` (vit_b_16 ...)."""
    from torchvision.models.vision_transformer import VisionTransformer
    _require(isinstance(model, VisionTransformer),
             f"expected a torchvision VisionTransformer, got {type(model).__name__}")
    _require(isinstance(model.conv_proj, nn.Conv2d),
             "a convolutional stem (conv_stem_configs) replaces the patch embedding; use the plain model")
    _require(model.representation_size is None,
             f"representation_size={model.representation_size} adds a pre-logits layer with tanh; "
             "our ViT's head is a single linear layer")
    layers = list(model.encoder.layers)
    first = layers[0]
    heads = first.self_attention.num_heads
    _require(first.self_attention._qkv_same_embed_dim and first.self_attention.in_proj_bias is not None,
             "the attention must have one fused, biased q/k/v projection")
    config = ViTConfig(image_size=model.image_size, patch_size=model.patch_size,
                       in_channels=model.conv_proj.in_channels, num_classes=model.num_classes,
                       dim=model.hidden_dim, depth=len(layers), num_heads=heads,
                       mlp_ratio=_mlp_ratio(model.hidden_dim, model.mlp_dim), norm_eps=model.encoder.ln.eps)
    src = model.state_dict()
    state = {
        "patch_embed.proj.weight": src["conv_proj.weight"], "patch_embed.proj.bias": src["conv_proj.bias"],
        "prefix.cls_token": src["class_token"], "pos_embed": src["encoder.pos_embedding"],
        "norm.weight": src["encoder.ln.weight"], "norm.bias": src["encoder.ln.bias"],
        "head.weight": src["heads.head.weight"], "head.bias": src["heads.head.bias"],
    }
    names = {"ln_1": "norm1", "self_attention.in_proj": "attn.qkv", "self_attention.out_proj.": "attn.proj.",
             "ln_2": "norm2", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
    for i in range(len(layers)):
        prefix = f"encoder.layers.encoder_layer_{i}."
        for key, value in src.items():
            if key.startswith(prefix):
                ours = key[len(prefix):].replace("in_proj_weight", "in_proj.weight").replace("in_proj_bias", "in_proj.bias")
                for theirs, mine in names.items():
                    ours = ours.replace(theirs, mine)
                state[f"blocks.{i}.{ours}"] = value
    return _load(config, state)


def _timm_config(model: nn.Module, prefix: str, num_prefix_tokens: int) -> ViTConfig:
    """Check a timm VisionTransformer for what our ViT cannot express; return the matching config."""
    _require(model.has_class_token and model.num_prefix_tokens == num_prefix_tokens and not model.no_embed_class,
             f"expected {num_prefix_tokens} prefix token(s) with a position embedding that covers them "
             "(no register tokens, no class_token=False, no no_embed_class)")
    _require(not getattr(model, "dynamic_img_size", False), "dynamic_img_size is not supported")
    _require(isinstance(model.norm_pre, nn.Identity), "pre_norm (a LayerNorm before the encoder, as in CLIP) "
             "is not supported")
    _require(isinstance(model.patch_embed.norm, nn.Identity), "a norm inside the patch embedding is not supported")
    _require(isinstance(model.fc_norm, nn.Identity) and getattr(model, "attn_pool", None) is None,
             "fc_norm / attention pooling heads are not supported; our ViT normalises all tokens, then pools")
    _require(model.global_pool in ("token", "avg"), f"global_pool={model.global_pool!r}; use 'token' or 'avg'")
    _require(isinstance(model.head, nn.Linear), "the model has no linear classification head (num_classes=0)")
    block = model.blocks[0]
    for part in ("ls1", "ls2"):
        _require(isinstance(getattr(block, part), nn.Identity), "LayerScale (init_values) is not supported")
    attn = block.attn
    _require(isinstance(attn.q_norm, nn.Identity) and isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity),
             "qk_norm / scale_attn_norm are not supported")
    _require(attn.qkv.bias is not None, "qkv_bias=False is not supported (our attention has biases)")
    _require(isinstance(block.mlp.act, nn.GELU) and block.mlp.act.approximate == "none"
             and isinstance(getattr(block.mlp, "norm", nn.Identity()), nn.Identity),
             "the MLP must be Linear-GELU-Linear (no SwiGLU, no approximate GELU, no scale_mlp_norm)")
    _require(isinstance(model.norm, nn.LayerNorm), "the final norm must be a LayerNorm")
    grid = model.patch_embed.grid_size
    patch = model.patch_embed.patch_size
    _require(grid[0] == grid[1] and patch[0] == patch[1], "only square images and patches are supported")
    dim = model.embed_dim
    return ViTConfig(image_size=grid[0] * patch[0], patch_size=patch[0],
                     in_channels=model.patch_embed.proj.in_channels, num_classes=model.num_classes,
                     dim=dim, depth=len(model.blocks), num_heads=attn.num_heads,
                     mlp_ratio=_mlp_ratio(dim, block.mlp.fc1.out_features),
                     pool="cls" if model.global_pool == "token" else "mean", norm_eps=model.norm.eps, prefix=prefix)


def vit_from_timm(model: nn.Module) -> ViT:
    """A vitcourse ViT with the weights of a ``timm`` VisionTransformer (vit_tiny_patch16_224 ...).

    Our parameter names follow timm's, except that the class token lives in the prefix part.
    """
    from timm.models.vision_transformer import VisionTransformer
    _require(isinstance(model, VisionTransformer), f"expected a timm VisionTransformer, got {type(model).__name__}")
    _require(not hasattr(model, "dist_token"), "a distilled DeiT has a distillation token: use deit_from_timm")
    state = dict(model.state_dict())
    state["prefix.cls_token"] = state.pop("cls_token")
    return _load(_timm_config(model, "cls", 1), state)


def deit_from_timm(model: nn.Module) -> ViT:
    """A vitcourse DeiT (``prefix="cls_dist"``) with the weights of timm's ``VisionTransformerDistilled``
    (deit_tiny_distilled_patch16_224 ...): class and distillation tokens, and the distillation head."""
    from timm.models.deit import VisionTransformerDistilled
    _require(isinstance(model, VisionTransformerDistilled),
             f"expected a timm VisionTransformerDistilled (a distilled DeiT), got {type(model).__name__}")
    state = dict(model.state_dict())
    for name in ("cls_token", "dist_token", "head_dist.weight", "head_dist.bias"):
        state[f"prefix.{name}"] = state.pop(name)
    return _load(_timm_config(model, "cls_dist", 2), state)


def swin_from_torchvision(model: nn.Module, image_size: int = 224):
    """A vitcourse ``SwinTransformer`` with the weights of torchvision's (swin_t, swin_s, swin_b; v1 only),
    for images of ``image_size`` pixels.

    torchvision's Swin takes any input size; ours is built for one. Every stage's feature map must be
    tiled by whole windows, so ``image_size`` must be a multiple of patch_size * 2**(stages-1) * window
    (224 for swin_t/s/b; 32 for patch 2, two stages and 4x4 windows).
    """
    from torchvision.models.swin_transformer import PatchMerging, SwinTransformer as TVSwin, SwinTransformerBlock
    from .swin import SwinConfig, SwinTransformer
    _require(isinstance(model, TVSwin), f"expected a torchvision SwinTransformer, got {type(model).__name__}")
    stages = [m for m in model.features if isinstance(m, nn.Sequential) and isinstance(m[0], SwinTransformerBlock)]
    _require(all(type(m) is PatchMerging for m in model.features if "Merging" in type(m).__name__),
             "Swin V2 (PatchMergingV2, log-spaced continuous position bias) is not supported: use swin_t/s/b")
    embed = model.features[0][0]
    first = stages[0][0]
    patch, window = embed.kernel_size, first.attn.window_size
    _require(patch[0] == patch[1] and window[0] == window[1], f"only square patches and windows are supported, "
             f"got patch_size={list(patch)} and window_size={list(window)}")
    patch, window = patch[0], window[0]
    step = patch * 2 ** (len(stages) - 1) * window  # every image size that converts is a multiple of this
    # Built first at a size that always fits, so that an error here is about the model, not the size ...
    config = SwinConfig(image_size=step, patch_size=patch, in_channels=embed.in_channels,
                        num_classes=model.head.out_features, dim=embed.out_channels,
                        depths=tuple(len(s) for s in stages), num_heads=tuple(s[0].attn.num_heads for s in stages),
                        window_size=window, mlp_ratio=first.mlp[0].out_features / embed.out_channels,
                        drop_path=0.0, norm_eps=model.norm.eps)
    try:  # ... then at the size asked for: SwinConfig checks the patch size, every merge and the windows' tiling
        config = dataclasses.replace(config, image_size=image_size)
    except ValueError as err:
        # The window size is fixed by the weights, so the fix is the image size.
        raise UnsupportedReference(f"cannot convert at image_size={image_size}: {err}. The window size is "
                                   f"fixed by the weights: pass an image_size that is a multiple of {step}") from None
    # SwinConfig accepts a map smaller than the window (ours then shrinks the window to the map), but
    # torchvision pads such a map to a whole window and lets the zero padding take part in attention:
    # the two compute different functions there, and our bias table would be smaller than theirs.
    for stage, side in enumerate(config.stage_sides(), start=1):
        _require(side >= window, f"at image_size={image_size}, stage {stage} has a {side}x{side} feature map, "
                 f"smaller than the {window}x{window} window (torchvision pads it to the window, ours shrinks the "
                 f"window to the map: they would compute different functions); pass an image_size that is a "
                 f"multiple of {step}")
    src = model.state_dict()
    state = {"patch_embed.weight": src["features.0.0.weight"], "patch_embed.bias": src["features.0.0.bias"],
             "patch_norm.weight": src["features.0.2.weight"], "patch_norm.bias": src["features.0.2.bias"],
             "norm.weight": src["norm.weight"], "norm.bias": src["norm.bias"],
             "head.weight": src["head.weight"], "head.bias": src["head.bias"]}
    names = {"attn.qkv": "attn.attn.qkv", "attn.proj": "attn.attn.proj", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2",
             "attn.relative_position_bias_table": "attn.relative_position_bias_table"}
    feature = 1
    for i, stage in enumerate(stages):
        for k in range(len(stage)):
            prefix = f"features.{feature}.{k}."
            for key, value in src.items():
                if key.startswith(prefix) and not key.endswith("relative_position_index"):
                    ours = key[len(prefix):]
                    for theirs, mine in names.items():
                        if ours.startswith(theirs):
                            ours = mine + ours[len(theirs):]
                    state[f"stages.{i}.{k}.{ours}"] = value
        if i < len(stages) - 1:
            for part in ("norm.weight", "norm.bias", "reduction.weight"):
                state[f"merges.{i}.{part}"] = src[f"features.{feature + 1}.{part}"]
        feature += 2
    ours = SwinTransformer(config)
    ours.load_state_dict(state, strict=True)
    return ours.eval()
