import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vitcourse import analysis as A  # noqa: E402
from vitcourse.models.vit import ViT, ViTConfig  # noqa: E402


def random_attention(layers=3, batch=2, heads=4, tokens=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, heads, tokens, tokens, generator=g) * 3, -1) for _ in range(layers)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ViT(ViTConfig(image_size=16, patch_size=4, in_channels=1, num_classes=3, dim=16, depth=2, num_heads=2))


def test_rollout_rows_sum_to_one():
    rollout = A.attention_rollout(random_attention())
    assert rollout.shape == (2, 17, 17)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 17))
    assert (rollout >= 0).all()


def test_rollout_of_one_layer_is_half_attention_half_identity():
    att = random_attention(layers=1)
    expected = 0.5 * att[0].mean(1) + 0.5 * torch.eye(17)   # rows of A sum to 1, so (A + I)/2
    torch.testing.assert_close(A.attention_rollout(att), expected)


def test_rollout_multiplies_later_layers_on_the_left():
    a1, a2 = random_attention(layers=2)
    step = lambda a: (a.mean(1) + torch.eye(17)) / 2  # noqa: E731
    torch.testing.assert_close(A.attention_rollout([a1, a2]), step(a2) @ step(a1))
    maps = A.rollout_map(A.attention_rollout([a1, a2]), 1)
    assert maps.shape == (2, 4, 4) and torch.allclose(maps.amax((1, 2)), torch.ones(2))


def test_mean_attention_distance_self_only_is_zero():
    eye = torch.eye(17).expand(2, 3, 17, 17)
    dist = A.mean_attention_distance([eye, eye], 1, patch_size=8)
    assert dist.shape == (2, 3)
    assert torch.equal(dist, torch.zeros(2, 3))


def test_mean_attention_distance_uniform_is_mean_pairwise_distance():
    uniform = torch.full((1, 2, 17, 17), 1 / 17)
    dist = A.mean_attention_distance(uniform, 1, patch_size=8)
    # Mean pairwise distance between the centres of a 4x4 grid of 8-pixel patches, by brute force.
    centres = [(8 * r, 8 * c) for r in range(4) for c in range(4)]
    pairwise = sum(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5 for a in centres for b in centres) / 256
    torch.testing.assert_close(dist, torch.full((1, 2), pairwise))


def test_mean_attention_distance_to_right_neighbour_is_one_patch():
    # Each patch attends to the patch on its right (the last column to its left): one patch away.
    a = torch.zeros(1, 1, 17, 17)
    for k in range(16):
        r, c = divmod(k, 4)
        a[0, 0, 1 + k, 1 + r * 4 + (c + 1 if c < 3 else c - 1)] = 1.0
    a[0, 0, 0, 0] = 1.0
    assert A.mean_attention_distance(a, 1, patch_size=5).item() == pytest.approx(5.0)


def test_patches_apart_counts_rows_or_columns_whichever_is_more():
    apart = A.patches_apart(3)
    assert apart.shape == (9, 9) and torch.equal(apart, apart.T) and torch.equal(apart.diagonal(), torch.zeros(9, dtype=apart.dtype))
    assert apart[0, 8].item() == 2 and apart[0, 4].item() == 1 and apart[4, 1].item() == 1   # corner, diagonal, edge
    assert (apart[4] <= 1).all()                       # the centre's 3x3 neighbourhood is the whole 3x3 grid
    assert (A.patches_apart(7)[0] <= 1).sum().item() == 4   # a corner's 3x3 neighbourhood is cut to 2x2


def test_position_similarity_of_structured_embedding():
    # Embeddings that encode (row, column) smoothly: neighbours are more similar than far patches.
    g = 5
    r, c = torch.meshgrid(torch.arange(g).float(), torch.arange(g).float(), indexing="ij")
    freqs = torch.arange(1, 5).float() * 0.5
    feats = torch.cat([torch.sin(r.flatten()[:, None] * freqs), torch.cos(r.flatten()[:, None] * freqs),
                       torch.sin(c.flatten()[:, None] * freqs), torch.cos(c.flatten()[:, None] * freqs)], -1)
    pos = torch.cat([torch.randn(1, 16), feats])[None]
    sim = A.position_embedding_similarity(1, pos)
    assert sim.shape == (g, g, g, g)
    torch.testing.assert_close(sim[2, 3, 2, 3], torch.tensor(1.0))
    s = A.position_structure(sim)
    assert s["same_row_or_column"] > s["elsewhere"]
    assert s["distance_correlation"] < -0.5
    # A random embedding has no such structure.
    s_rand = A.position_structure(A.position_embedding_similarity(1, torch.randn(1, 1 + g * g, 64)))
    assert abs(s_rand["distance_correlation"]) < 0.3


def test_maps_from_a_model(model):
    x = torch.randn(3, 1, 16, 16)
    attentions = A.attention_maps(model, x)
    assert model.training  # the mode is restored
    assert len(attentions) == 2 and attentions[0].shape == (3, 2, 17, 17)
    assert A.cls_attention(attentions[0], model).shape == (3, 2, 4, 4)
    dist = A.mean_attention_distance(attentions, model)
    assert dist.shape == (2, 2) and (dist > 0).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="square grid"):
        A.mean_attention_distance(torch.full((1, 1, 13, 13), 1 / 13), 1, patch_size=4)
    with pytest.raises(ValueError, match="patch_size"):
        A.mean_attention_distance(random_attention(), 1)
    with pytest.raises(TypeError, match="prefix tokens"):
        A.cls_attention(random_attention()[0], "one")
    with pytest.raises(ValueError, match="at least one layer"):
        A.attention_rollout([])


def test_plots_have_titles_and_labels(model):
    x = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    figs = [A.plot_patches(x[0], 4),
            A.plot_position_similarity(A.position_embedding_similarity(model)),
            A.plot_attention_distance(torch.rand(2, 2) * 8, patch_size=4, grid_size=4)]
    attentions = A.attention_maps(model, x.float() / 255)
    figs.append(A.plot_attention_heads(x[0], A.cls_attention(attentions[-1], model)[0]))
    figs.append(A.plot_rollout(x, A.rollout_map(A.attention_rollout(attentions), model), labels=["a", "b"]))
    for fig in figs:
        ax = fig.axes[0]
        assert ax.get_title() or fig._suptitle is not None
    assert figs[2].axes[0].get_xlabel() and figs[2].axes[0].get_ylabel()
    plt.close("all")


class TwoTokens(torch.nn.Module):
    """A test prefix of two learned tokens (a class token and a second one, as DeiT's)."""
    num_tokens = 2

    def __init__(self, dim):
        super().__init__()
        self.tokens = torch.nn.Parameter(torch.randn(1, 2, dim))

    def forward(self, x):
        return torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], 1)

    def output(self, logits, tokens):
        return logits


@pytest.fixture
def two_prefix_model(monkeypatch):
    from vitcourse.models.parts import PREFIXES
    monkeypatch.setitem(PREFIXES._items, "two_test_tokens", lambda c: TwoTokens(c.dim))
    torch.manual_seed(0)
    return ViT(ViTConfig(image_size=16, patch_size=4, in_channels=1, num_classes=3, dim=16, depth=2,
                         num_heads=2, prefix="two_test_tokens"))


def test_numbers_with_one_prefix_token_are_unchanged(model):
    """The model-based calls give what the explicit one-prefix-token calls give (the old defaults)."""
    x = torch.randn(2, 1, 16, 16)
    att = A.attention_maps(model, x)
    torch.testing.assert_close(A.cls_attention(att[-1], model), A.cls_attention(att[-1], 1))
    torch.testing.assert_close(A.cls_attention(att[-1], model), att[-1][:, :, 0, 1:].reshape(2, 2, 4, 4))
    torch.testing.assert_close(A.mean_attention_distance(att, model), A.mean_attention_distance(att, 1, patch_size=4))
    torch.testing.assert_close(A.position_embedding_similarity(model),
                               A.position_embedding_similarity(1, model.pos_embed))


def test_shapes_with_two_prefix_tokens(two_prefix_model):
    m = two_prefix_model
    assert m.num_prefix_tokens == 2 and m.pos_embed.shape == (1, 2 + 16, 16)
    x = torch.randn(3, 1, 16, 16)
    att = A.attention_maps(m, x)
    assert att[0].shape == (3, 2, 18, 18)
    assert A.cls_attention(att[-1], m).shape == (3, 2, 4, 4)
    assert A.rollout_map(A.attention_rollout(att), m).shape == (3, 4, 4)
    assert A.mean_attention_distance(att, m).shape == (2, 2)
    assert A.position_embedding_similarity(m).shape == (4, 4, 4, 4)
    # Reading the patches as if there were one prefix token is caught: 17 tokens are no square grid.
    with pytest.raises(ValueError, match="square grid"):
        A.cls_attention(att[-1], 1)
    m.set_image_size(24)
    assert m.pos_embed.shape == (1, 2 + 36, 16) and m(torch.randn(1, 1, 24, 24)).shape == (1, 3)


def test_attention_entropy_of_uniform_and_one_hot_rows():
    uniform = torch.full((2, 3, 5, 5), 0.2)
    one_hot = torch.eye(5).expand(2, 3, 5, 5)
    ent = A.attention_entropy([uniform, one_hot])
    assert ent.shape == (2, 3)
    torch.testing.assert_close(ent[0], torch.full((3,), torch.log(torch.tensor(5.0)).item()))
    assert torch.equal(ent[1], torch.zeros(3))
    # One query's row: the class token (row 0) attends uniformly, every other row to one token.
    mixed = torch.eye(5).expand(2, 3, 5, 5).clone()
    mixed[:, :, 0] = 0.2
    torch.testing.assert_close(A.attention_entropy([mixed], query=0)[0], ent[0])
    assert A.attention_entropy([mixed], query=1).abs().max() < 1e-6


def test_row_and_column_structure_are_told_apart():
    # An embedding that encodes only the column: patches in one column are identical, rows share nothing.
    g = 4
    cols = torch.randn(g, 32)
    pos = torch.cat([torch.zeros(1, 32), cols.repeat(g, 1)])[None]  # row-major: patch k has column k % g
    s = A.position_structure(A.position_embedding_similarity(1, pos))
    assert s["same_column"] == pytest.approx(1.0, abs=1e-5)
    assert s["same_row"] < 0.9
    distances, sims, counts = A.similarity_by_distance(A.position_embedding_similarity(1, pos))
    assert distances[0] == pytest.approx(1.0) and len(distances) == len(sims) == len(counts)
    assert sum(counts) == g * g * (g * g - 1)  # every ordered pair of distinct patches, once
    assert distances == sorted(distances) and len(set(distances)) == len(distances)


def test_similarity_by_distance_falls_for_a_smooth_embedding():
    g = 5
    r, c = torch.meshgrid(torch.arange(g).float(), torch.arange(g).float(), indexing="ij")
    freqs = torch.arange(1, 5).float() * 0.3
    feats = torch.cat([f(v.flatten()[:, None] * freqs) for v in (r, c) for f in (torch.sin, torch.cos)], -1)
    distances, sims, _ = A.similarity_by_distance(A.position_embedding_similarity(1, torch.cat([feats[:1], feats])[None]))
    assert sims[0] > sims[-1] + 0.3


def test_similarity_by_distance_bins_and_counts():
    g = 4
    sim = A.embedding_similarity(torch.randn(g * g, 16))
    distances, sims, counts = A.similarity_by_distance(sim, bin_width=1)
    # On 4x4 the distances 1, 1.41, 2, 2.24, 2.83, 3, 3.16, 3.61, 4.24 round to the bins 1..4.
    assert distances == [1.0, 2.0, 3.0, 4.0]
    assert sum(counts) == g * g * (g * g - 1)
    exact, exact_sims, exact_counts = A.similarity_by_distance(sim)
    assert counts[0] == exact_counts[0] + exact_counts[1]           # 1 and sqrt(2) share the first bin
    assert sims[0] == pytest.approx((exact_sims[0] * exact_counts[0] + exact_sims[1] * exact_counts[1]) / counts[0])
    with pytest.raises(ValueError, match="bin_width"):
        A.similarity_by_distance(sim, bin_width=0)


def test_structure_statistics_on_constructed_embeddings():
    g, d = 7, 64
    sincos = A.embedding_similarity(A.sincos_2d_embedding(g, d))
    assert A.grid_neighbour_share(sincos) == 1.0                   # the nearest is always a grid neighbour
    rowcol = A.embedding_similarity(A.row_column_embedding(g, d, torch.Generator().manual_seed(0)))
    assert A.row_column_share(rowcol) > 0.95                       # the row and column mates are the most similar
    assert A.grid_neighbour_share(rowcol) < 0.5                    # but nothing orders them by distance
    null = A.random_embedding_shares(g, d, draws=200, seed=0)
    assert null["grid_neighbour_share"].shape == (200,)
    # Chance levels: 4 neighbours (fewer at the border) among 48 others; 12 row/column mates among 48.
    chance = (A.patch_distances(g, 1) - 1).abs().lt(1e-4).sum().item() / (g * g) / (g * g - 1)
    assert null["grid_neighbour_share"].mean().item() == pytest.approx(chance, abs=0.02)
    assert null["row_column_share"].mean().item() == pytest.approx(12 / 48, abs=0.02)
    with pytest.raises(ValueError, match="multiple of 4"):
        A.sincos_2d_embedding(g, 30)


def test_grid_neighbour_share_counts_only_the_four_neighbours():
    # Each patch is made most similar to the patch two columns away in its row: near, not a neighbour.
    g = 4
    sim = A.embedding_similarity(torch.randn(g * g, 32)).reshape(g * g, g * g).clone()
    for k in range(g * g):
        sim[k, k + 2 if k % g < g - 2 else k - 2] = 2.0
    assert A.grid_neighbour_share(sim.reshape(g, g, g, g)) == 0.0


def test_attention_distance_correlation_local_and_uniform_heads():
    n, g = 16, 4
    d = A.patch_distances(g, 1)
    local = torch.softmax(-3 * d, -1)                       # weights fall with distance
    far = torch.softmax(3 * d, -1)                          # weights grow with distance
    w = torch.zeros(1, 3, n + 1, n + 1)
    w[0, 0, 1:, 1:], w[0, 1, 1:, 1:] = local, far
    w[0, 2] = 1 / (n + 1)                                   # uniform: no relation to distance
    corr = A.attention_distance_correlation([w], 1)
    assert corr.shape == (1, 3)
    assert corr[0, 0] < -0.5 and corr[0, 1] > 0.5 and abs(corr[0, 2]) < 1e-4


def test_object_patches_marks_the_bright_patches():
    x = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    x[0, :, :4, :4] = 200                     # top-left patch of image 0 is the object
    mask = A.object_patches(x, 4)
    assert mask.shape == (2, 2, 2) and mask[0, 0, 0] and mask.sum() == 1
    with pytest.raises(TypeError, match="uint8"):
        A.object_patches(x.float(), 4)


def test_forward_flops_counts_two_per_multiply_add():
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    assert A.forward_flops(lin, (3, 2, 2)) == 2 * 12 * 5
    was_training = lin.training
    A.forward_flops(lin, (3, 2, 2))
    assert lin.training == was_training          # evaluated in eval mode, mode restored
