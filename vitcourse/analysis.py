"""Looking inside a ViT: attention maps, attention rollout, mean attention distance, position-embedding
similarity, and the plots of the ViT paper's figures 6-7.

Attention tensors follow ``ViT.forward(x, return_attention=True)``: one (B, heads, T, T) tensor per
layer, T = prefix + N tokens with the prefix tokens first (the class token at index 0); row i holds
where token i looks and sums to 1. How many prefix tokens there are (1 for a ViT, 2 for a DeiT with
its distillation token) is read from the model: every function that needs it takes ``model``, or
the number itself for tensors that no longer have their model.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .runtime import evaluating


def _prefix(model_or_count) -> int:
    """The number of prefix tokens of a model (its ``num_prefix_tokens``) or the number given."""
    if isinstance(model_or_count, int):
        return model_or_count
    if hasattr(model_or_count, "num_prefix_tokens"):
        return int(model_or_count.num_prefix_tokens)
    raise TypeError(f"pass the model (it knows its num_prefix_tokens) or the number of prefix tokens, "
                    f"not {type(model_or_count).__name__}")


# ---- measurements -----------------------------------------------------------------------------------
@torch.no_grad()
def attention_maps(model, images: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's attention weights for ``images``, computed in eval mode (no dropout)."""
    with evaluating(model):
        _, attentions = model(images, return_attention=True)
    return [a.float() for a in attentions]


def _grid(num_patches: int) -> int:
    g = math.isqrt(num_patches)
    if g * g != num_patches:
        raise ValueError(f"{num_patches} patch tokens do not form a square grid; check num_prefix_tokens")
    return g


def cls_attention(weights: torch.Tensor, model) -> torch.Tensor:
    """Where the class token looks in one layer: (B, heads, T, T) -> (B, heads, g, g) over the patches.
    ``model``: the ViT (or its number of prefix tokens)."""
    row = weights[:, :, 0, _prefix(model):]
    return rearrange(row, "b h (gh gw) -> b h gh gw", gh=_grid(row.shape[-1]))


def attention_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, eq. 1): how much each input token flows into each
    output token through all layers.

    Per layer: average the heads, add the identity (the residual connection carries the token itself
    along), renormalise the rows; then multiply the layers: A~_l = A_l A~_{l-1}. Returns (B, T, T)
    with rows summing to 1.
    """
    if len(attentions) == 0:
        raise ValueError("attention_rollout needs at least one layer's attention weights")
    rollout = None
    for weights in attentions:
        a = weights.float().mean(dim=1)                                   # average heads: (B, T, T)
        a = a + torch.eye(a.shape[-1], device=a.device)                   # residual: + I
        a = a / a.sum(dim=-1, keepdim=True)                               # rows sum to 1 again
        rollout = a if rollout is None else a @ rollout
    return rollout


def rollout_map(rollout: torch.Tensor, model) -> torch.Tensor:
    """The class token's row of the rollout over the patches, as (B, g, g) maps scaled to max 1.
    ``model``: the ViT (or its number of prefix tokens)."""
    row = rollout[:, 0, _prefix(model):]
    row = row / row.amax(dim=-1, keepdim=True)
    return rearrange(row, "b (gh gw) -> b gh gw", gh=_grid(row.shape[-1]))


def object_patches(images: torch.Tensor, patch_size: int, threshold: float = 0.05) -> torch.Tensor:
    """Which patches show the object, on a data set with a black background (Fashion-MNIST, MNIST):
    (B, C, H, W) uint8 images -> (B, g, g) bool, true where the patch's mean pixel is above ``threshold``
    (on the 0..1 scale). With a map of attention shares m (rows summing to 1), ``(m * mask).sum()`` is
    the share of attention on the object, and ``mask.float().mean()`` what uniform attention gives."""
    if images.dtype != torch.uint8:
        raise TypeError("object_patches needs the raw uint8 images (ImageData.images), not normalised ones: "
                        "a black background is 0 only before normalisation")
    x = images.float() / 255
    return rearrange(x, "b c (gh p1) (gw p2) -> b gh gw (c p1 p2)", p1=patch_size, p2=patch_size).mean(-1) > threshold


def attention_entropy(attentions, query: int | None = None) -> torch.Tensor:
    """Entropy in nats of every attention row, averaged over images and query tokens: (layers, heads).
    ``query``: only that query's row (0: the class token's, the one SL-ViT's figures show).

    Uniform attention over T keys gives the maximum, log T; attention on one token gives 0. SL-ViT
    (Lee et al. 2021, section 3.3) uses it to show that ViT's attention is smooth ("weak attention")
    and that LSA sharpens it.
    """
    if isinstance(attentions, torch.Tensor):
        attentions = [attentions]
    out = []
    for weights in attentions:
        w = weights.float() if query is None else weights.float()[:, :, query:query + 1]
        out.append(-(w * w.clamp_min(1e-12).log()).sum(-1).mean(dim=(0, 2)))
    return torch.stack(out)


def grid_coordinates(grid_size: int) -> torch.Tensor:
    """(N, 2) (row, column) of the patches of a g x g grid, in row-major order (the token order)."""
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], -1)


def patch_distances(grid_size: int, patch_size: int) -> torch.Tensor:
    """(N, N) Euclidean distances in pixels between the centres of the patches of a g x g grid."""
    centres = grid_coordinates(grid_size).float() * patch_size
    return torch.cdist(centres, centres)


def patches_apart(grid_size: int) -> torch.Tensor:
    """(N, N) how many patches apart two patches of a g x g grid are along either axis (the Chebyshev
    distance): ``patches_apart(g) <= k`` is each patch's (2k+1) x (2k+1) neighbourhood, cut at the border."""
    rc = grid_coordinates(grid_size)
    return (rc[:, None] - rc[None]).abs().amax(-1)


def mean_attention_distance(attentions, model, patch_size: int | None = None) -> torch.Tensor:
    """Mean attention distance in pixels per layer and head (ViT paper, appendix D.7 and figure 7):
    sum_j a_ij * ||pos_i - pos_j||, averaged over query patches i and images; the "receptive field
    size" of an attention head. Returns (layers, heads).

    Only patch-to-patch attention is used (the prefix tokens have no position): each patch's weights
    over the other patches are renormalised to sum to 1. Attention to self only gives 0; uniform
    attention gives the mean pairwise distance between patches. ``model``: the ViT, which gives its
    prefix tokens and patch size (or the number of prefix tokens, with ``patch_size``).
    """
    num_prefix_tokens = _prefix(model)
    if patch_size is None:
        if not hasattr(model, "config"):
            raise ValueError("pass patch_size (in pixels) when model is a number of prefix tokens")
        patch_size = model.config.patch_size
    if isinstance(attentions, torch.Tensor):
        attentions = [attentions]
    out = []
    for weights in attentions:
        a = weights[..., num_prefix_tokens:, num_prefix_tokens:].float()  # (B, H, N, N)
        a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        dist = patch_distances(_grid(a.shape[-1]), patch_size).to(a.device)
        out.append((a * dist).sum(-1).mean(dim=(0, 2)))                  # (H,)
    return torch.stack(out)


def position_embedding_similarity(model, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity between the position embedding of every patch and every other (ViT figure 7,
    centre). Returns (g, g, g, g): [r, c] is the g x g map of similarities of patch (r, c) to all.
    ``model``: the ViT (or its number of prefix tokens); ``pos_embed``: the (1, prefix + N, D)
    embedding to read, by default the model's own (pass a saved copy, e.g. the one at initialisation)."""
    if pos_embed is None:
        pos_embed = model.pos_embed
    p = pos_embed.detach().reshape(-1, pos_embed.shape[-1])[_prefix(model):].float()
    p = F.normalize(p, dim=-1)
    g = _grid(p.shape[0])
    return rearrange(p @ p.T, "(r c) (i j) -> r c i j", r=g, i=g)


def position_structure(similarity: torch.Tensor) -> dict:
    """Summaries of a (g, g, g, g) similarity grid: mean similarity to the other patches of the same row,
    of the same column, of either, and to patches in neither; and the correlation of similarity with
    spatial distance. A 2-D structure shows as same_row_or_column > elsewhere and a negative distance
    correlation; same_row against same_column says whether one direction was learned more than the
    other (ViT figure 7 shows both)."""
    g = similarity.shape[0]
    r, c = grid_coordinates(g).unbind(-1)
    sim = similarity.reshape(g * g, g * g).cpu()
    same_row, same_col = r[:, None] == r[None], c[:, None] == c[None]
    eye = torch.eye(g * g, dtype=torch.bool)
    line = (same_row | same_col) & ~eye
    other = ~(same_row | same_col)
    dist = patch_distances(g, 1)[~eye]
    s = sim[~eye]
    corr = torch.corrcoef(torch.stack([s, dist]))[0, 1]
    return {"same_row_or_column": sim[line].mean().item(), "same_row": sim[same_row & ~eye].mean().item(),
            "same_column": sim[same_col & ~eye].mean().item(), "elsewhere": sim[other].mean().item(),
            "distance_correlation": corr.item()}


def similarity_by_distance(similarity: torch.Tensor, bin_width: float | None = None):
    """Mean position-embedding similarity of patch pairs at each distance on the grid (in patches), the
    patch itself excluded: returns (distances, mean similarities, pair counts). With ``bin_width=None``
    one entry per distinct distance; with a width, distances are binned into [k w - w/2, k w + w/2)
    and reported at the bin centres k w (empty bins left out). A learned 2-D structure shows as
    similarity falling with distance; the counts say how much each point averages (the farthest
    distances have only a few pairs, the corners)."""
    g = similarity.shape[0]
    sim = similarity.reshape(g * g, g * g).cpu()
    dist = patch_distances(g, 1).round(decimals=4)
    if bin_width is not None:
        if bin_width <= 0:
            raise ValueError(f"bin_width must be positive (in patches), got {bin_width}")
        dist = torch.where(dist > 0, (dist / bin_width).round().clamp_min(1) * bin_width, dist)
    distances = sorted(d for d in dist.unique().tolist() if d > 0)
    return (distances, [sim[dist == d].mean().item() for d in distances],
            [int((dist == d).sum()) for d in distances])


def _pairwise(similarity: torch.Tensor) -> torch.Tensor:
    """(g, g, g, g) similarities -> (N, N) with the diagonal (a patch against itself) at -inf."""
    g = similarity.shape[0]
    sim = similarity.reshape(g * g, g * g).detach().float().cpu().clone()
    return sim.fill_diagonal_(float("-inf"))


def grid_neighbour_share(similarity: torch.Tensor) -> float:
    """The share of positions whose most similar other position embedding is one of its 4 grid
    neighbours (up, down, left, right). It measures the 2-D distance structure of ViT figure 7
    (centre): close patches have the most similar embeddings. By chance (random embeddings) about
    4/N of the positions pass (3.4 neighbours among 48 others on a 7x7 grid: 7%); a smooth 2-D
    embedding scores 1. Unlike a correlation over all pairs, it does not depend on how the far pairs
    happen to compare (e.g. border patches that all see the same black background)."""
    g = similarity.shape[0]
    nearest = _pairwise(similarity).argmax(-1)
    return (patch_distances(g, 1)[torch.arange(g * g), nearest] - 1).abs().lt(1e-4).float().mean().item()


def row_column_share(similarity: torch.Tensor) -> float:
    """For each position, the share of its k = 2(g - 1) most similar other positions that lie in its
    own row or column (there are exactly k such patches), averaged over positions: 1 for an
    embedding made of a row part plus a column part, about k / (N - 1) by chance (0.25 on 7x7)."""
    g = similarity.shape[0]
    k = 2 * (g - 1)
    top = _pairwise(similarity).topk(k, dim=-1).indices
    r, c = torch.arange(g * g) // g, torch.arange(g * g) % g
    same = (r[top] == r[:, None]) | (c[top] == c[:, None])
    return same.float().mean().item()


def sincos_2d_embedding(grid_size: int, dim: int) -> torch.Tensor:
    """A constructed (N, dim) 2-D sin-cos embedding (the fixed embedding of MAE and of ViT's appendix
    D.4 ablation): half of the channels encode the row with chapter 02's sinusoidal table, the other
    half the column. The structure a learned embedding would show at its best."""
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos embedding splits dim into sin and cos of rows and columns: dim must be "
                         f"a multiple of 4, got {dim}")
    from .nn.positional import sinusoidal_table
    table = sinusoidal_table(grid_size, dim // 2)
    r, c = torch.arange(grid_size).repeat_interleave(grid_size), torch.arange(grid_size).repeat(grid_size)
    return torch.cat([table[r], table[c]], dim=-1)


def row_column_embedding(grid_size: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A constructed (N, dim) embedding u_row + v_column with random u and v: a pure row/column
    structure, with no notion of distance within a row or column."""
    u = torch.randn(grid_size, dim, generator=generator)
    v = torch.randn(grid_size, dim, generator=generator)
    return (u[:, None] + v[None, :]).reshape(grid_size * grid_size, dim)


def embedding_similarity(embedding: torch.Tensor) -> torch.Tensor:
    """The (g, g, g, g) cosine-similarity grid of an (N, D) embedding without prefix tokens (a
    constructed one, or a model's patch positions)."""
    return position_embedding_similarity(0, embedding[None])


def random_embedding_shares(grid_size: int, dim: int, draws: int = 1000, seed: int = 0) -> dict:
    """The chance level of the two structure statistics: ``grid_neighbour_share`` and
    ``row_column_share`` of ``draws`` random Gaussian (N, dim) embeddings, as two tensors."""
    gen = torch.Generator().manual_seed(seed)
    sims = [embedding_similarity(torch.randn(grid_size * grid_size, dim, generator=gen)) for _ in range(draws)]
    return {"grid_neighbour_share": torch.tensor([grid_neighbour_share(s) for s in sims]),
            "row_column_share": torch.tensor([row_column_share(s) for s in sims])}


def attention_distance_correlation(attentions, model) -> torch.Tensor:
    """Per layer and head, the Pearson correlation between a patch's attention weight on another patch
    and their distance, over the keys of each query patch, averaged over queries and images:
    (layers, heads). Negative: the head prefers near patches (local); about 0: distance does not
    matter. A second view of mean attention distance, which mixes "where" with "how spread"."""
    num_prefix_tokens = _prefix(model)
    if isinstance(attentions, torch.Tensor):
        attentions = [attentions]
    out = []
    for weights in attentions:
        a = weights[..., num_prefix_tokens:, num_prefix_tokens:].float()  # (B, H, N, N)
        d = patch_distances(_grid(a.shape[-1]), 1).to(a.device)           # (N, N)
        a_c = a - a.mean(-1, keepdim=True)
        d_c = d - d.mean(-1, keepdim=True)
        cov = (a_c * d_c).sum(-1)
        corr = cov / (a_c.pow(2).sum(-1).sqrt() * d_c.pow(2).sum(-1).sqrt()).clamp_min(1e-12)
        out.append(corr.mean(dim=(0, 2)))
    return torch.stack(out)


@torch.no_grad()
def forward_flops(model, image_shape, device="cpu") -> int:
    """FLOPs of one forward pass on one image of ``image_shape`` (C, H, W), counted by
    torch.utils.flop_counter: matrix products, convolutions and attention (``vitcourse.flops``), 2 FLOPs
    per multiply-add (papers usually count multiply-adds: divide by 2 to compare). A fixed measure of
    cost, unlike seconds."""
    from .flops import flop_counter
    with evaluating(model), flop_counter() as counter:
        model(torch.zeros(1, *image_shape, device=device))
    return counter.get_total_flops()


# ---- plots --------------------------------------------------------------------------------------------
def to_display(image: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """(C, H, W) uint8 or normalised float -> (H, W) or (H, W, 3) floats in [0, 1] for imshow."""
    x = image.detach().float().cpu()
    if image.dtype == torch.uint8:
        x = x / 255
    elif mean is not None and std is not None:
        x = x * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    else:
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    x = x.clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else rearrange(x, "c h w -> h w c").numpy()


def _imshow(ax, img, **kw):
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, **kw)


def plot_patches(image: torch.Tensor, patch_size: int, mean=None, std=None, numbers: bool = True):
    """The first input step drawn: the image with its patch grid, and the patches pulled apart in the
    order they enter the Transformer (row-major, top-left to bottom-right)."""
    img = to_display(image, mean, std)
    h, w = img.shape[:2]
    gh, gw, p = h // patch_size, w // patch_size, patch_size
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4.5))
    _imshow(ax1, img)
    for k in range(1, gh):
        ax1.axhline(k * p - 0.5, color="red", lw=1)
    for k in range(1, gw):
        ax1.axvline(k * p - 0.5, color="red", lw=1)
    ax1.set(title=f"{h}x{w} image, {p}x{p} patches: N = {gh * gw}", xlabel="x (pixels)", ylabel="y (pixels)")
    # Pull the patches apart: pad each with a white border, then put them back on the grid.
    t = torch.as_tensor(img if img.ndim == 3 else img[..., None])
    t = rearrange(t, "(gh p1) (gw p2) c -> gh gw c p1 p2", p1=p, p2=p)
    t = F.pad(t, (1, 1, 1, 1), value=1.0)
    t = rearrange(t, "gh gw c p1 p2 -> (gh p1) (gw p2) c")
    _imshow(ax2, t[..., 0].numpy() if img.ndim == 2 else t.numpy())
    if numbers and gh * gw <= 64:
        for k in range(gh * gw):
            ax2.text((k % gw) * (p + 2) + 2, (k // gw) * (p + 2) + 2, str(k), color="yellow", fontsize=7,
                     va="top", bbox=dict(facecolor="black", alpha=0.5, pad=0.5, lw=0))
    ax2.set(title="patches in sequence order (row-major)", xlabel="patch column", ylabel="patch row")
    ax2.set_xticks([]), ax2.set_yticks([])
    fig.tight_layout()
    return fig


def plot_position_similarity(similarity: torch.Tensor, title: str = "position embedding similarity", ax=None):
    """ViT figure 7 (centre): tile (r, c) shows the cosine similarity of patch (r, c)'s position
    embedding to every other patch's. Draws on ``ax`` when given (several embeddings side by side)."""
    g = similarity.shape[0]
    tiles = F.pad(similarity.detach().cpu(), (0, 1, 0, 1), value=float("nan"))  # a gap between tiles
    mosaic = rearrange(tiles, "r c i j -> (r i) (c j)")
    fig, ax = plt.subplots(figsize=(5.5, 5)) if ax is None else (ax.figure, ax)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.35")           # diverging (0 white); gaps grey
    im = ax.imshow(mosaic.numpy(), cmap=cmap, vmin=-1, vmax=1)
    ax.set_xticks([(g + 1) * k + g / 2 - 0.5 for k in range(g)], range(1, g + 1))
    ax.set_yticks([(g + 1) * k + g / 2 - 0.5 for k in range(g)], range(1, g + 1))
    ax.set(title=title, xlabel="input patch column", ylabel="input patch row")
    fig.colorbar(im, ax=ax, label="cosine similarity", shrink=0.8)
    return fig


def plot_attention_distance(distance: torch.Tensor, patch_size: int | None = None, grid_size: int | None = None,
                            title: str = "mean attention distance per head"):
    """ViT figure 7 (right): one dot per head at each depth, each head's dots set a little apart
    sideways so that heads at the same distance do not hide each other. With the grid, a dashed line
    marks the distance of uniform attention (every patch equally)."""
    layers, heads = distance.shape
    fig, ax = plt.subplots(figsize=(6, 4))
    offsets = (np.arange(heads) - (heads - 1) / 2) * min(0.08, 0.6 / heads)
    for h in range(heads):
        ax.scatter(np.arange(1, layers + 1) + offsets[h], distance[:, h].cpu().numpy(), s=18, label=f"head {h + 1}")
    if patch_size is not None and grid_size is not None:
        ax.axhline(patch_distances(grid_size, patch_size).mean().item(), ls="--", color="gray",
                   label="uniform attention")
    ax.set(title=title, xlabel="network depth (layer)", ylabel="mean attention distance (pixels)")
    ax.set_ylim(bottom=0)                             # distances from 0: near-equal heads look near-equal
    ax.set_xticks(range(1, layers + 1))
    ax.legend(fontsize=7, ncol=2)
    return fig


def overlay(ax, image: torch.Tensor, heatmap: torch.Tensor, mean=None, std=None, alpha: float = 0.55,
            vmin=None, vmax=None):
    """Draw ``image`` with a (g, g) ``heatmap`` on top, one flat square per patch (no smoothing that
    would invent detail the grid does not have), in a perceptual colour map (magma: dark = little).
    Give several panels the same ``vmin``/``vmax`` to compare them; returns the heatmap's image (for a
    colour bar)."""
    img = to_display(image, mean, std)
    h, w = img.shape[:2]
    _imshow(ax, img)
    shown = ax.imshow(heatmap.float().cpu().numpy(), cmap="magma", alpha=alpha, interpolation="nearest",
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5), vmin=vmin, vmax=vmax)
    ax.set_xticks([]), ax.set_yticks([])
    return shown


def plot_attention_heads(image: torch.Tensor, maps: torch.Tensor, mean=None, std=None,
                         title: str = "class-token attention per head"):
    """One image and its (heads, g, g) attention maps, one overlay per head."""
    heads = maps.shape[0]
    fig, axes = plt.subplots(1, heads + 1, figsize=(2.2 * (heads + 1) + 0.8, 2.8))
    _imshow(axes[0], to_display(image, mean, std))
    axes[0].set(title="input", xticks=[], yticks=[])
    vmax = maps.max().item()                          # one colour scale for all heads
    for h in range(heads):
        shown = overlay(axes[h + 1], image, maps[h], mean, std, vmin=0, vmax=vmax)
        axes[h + 1].set_title(f"head {h + 1}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.colorbar(shown, ax=axes.tolist(), shrink=0.8, label="attention weight")
    return fig


def plot_rollout(images: torch.Tensor, maps: torch.Tensor, labels=None, mean=None, std=None,
                 title: str = "attention rollout (Abnar & Zuidema 2020)"):
    """Images (top row) and their rollout maps overlaid (bottom row); ``labels`` titles the columns."""
    n = images.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2 * n + 0.8, 4.3), squeeze=False)
    for k in range(n):
        _imshow(axes[0, k], to_display(images[k], mean, std))
        axes[0, k].set(xticks=[], yticks=[])
        axes[0, k].set_title(labels[k] if labels is not None else None, fontsize=8)
        shown = overlay(axes[1, k], images[k], maps[k], mean, std, vmin=0, vmax=1)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("rollout")
    fig.suptitle(title)
    fig.tight_layout()
    # The colour bar takes its room from both rows, so that each input stays above its own map.
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.6, label="share of the image's largest")
    return fig
