# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 01 · Sequence to sequence, the context bottleneck, and attention
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/01_seq2seq_attention.ipynb)
#
# A translation model reads a sentence and writes another. The first neural ones (Sutskever et al.
# 2014; Cho et al. 2014) compress the whole input into **one fixed-size context vector** and
# decode from it. Bahdanau, Cho and Bengio (2015) let the decoder **look back at every input word**
# at every step, with weights it computes itself: *attention*, the idea the rest of this course
# (Transformer, ViT, DeiT, Swin) is built on.
#
# **Learning goals**
# 1. See why one context vector is a bottleneck, and measure it: accuracy against input length.
# 2. Compute Bahdanau attention by hand: energies $e_{ij} = a(s_{i-1}, h_j)$, weights
#    $\alpha_{ij} = \mathrm{softmax}_j(e_{ij})$, context $c_i = \sum_j \alpha_{ij} h_j$.
# 3. Reproduce the worked example of the lecture slides (source 003) to three decimals.
# 4. Mask padded positions, and read an alignment heatmap.
#
# Claim to reproduce (**C1**): *with attention, accuracy on the longest sequences stays high
# where the fixed-context model collapses.*

# %%
# Setup, the same cell in every chapter. On Colab, it installs the course package from the course
# repository at this notebook's branch (only when it is not installed yet; Colab's own torch,
# torchvision, numpy and ipywidgets are kept), then vitcourse.setup() mounts Google Drive so that runs
# survive a runtime reset. Elsewhere it installs and mounts nothing.
COURSE_REPO, COURSE_BRANCH = "https://github.com/vitcourse/vitcourse", "main"
try:
    import vitcourse
except ImportError:
    import subprocess, sys
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{COURSE_REPO}@{COURSE_BRANCH}"],
                   check=True)
    import vitcourse
vitcourse.setup()

# %%
# This chapter in the gpu profile, as `make rehearsal` planned it (the plan ships with the package):
# its time on a T4 and on the GPU found here, and its peak memory.
from vitcourse.plan import projected

print(projected("01_seq2seq_attention"))

# %%
import matplotlib.pyplot as plt
import torch

from vitcourse import budget
from vitcourse.claims import Claims
from vitcourse.data import SequenceLoader, make_task
from vitcourse.models import create_model
from vitcourse.models.seq2seq import exact_match_by_bin, exact_match_by_length, length_bins
from vitcourse.study import run_dir
from vitcourse.nn import AdditiveAttention, dot_product_attention, padding_mask
from vitcourse.train import fit

DEVICE = vitcourse.device()

# Every run size comes from the profile (smoke: CI seconds; cpu: minutes; gpu: the full run).
MAX_LEN = budget(smoke=12, cpu=40, gpu=50)          # longest source sentence
N_TRAIN = budget(smoke=384, cpu=4000, gpu=40000)    # training sentences
N_TEST = budget(smoke=128, cpu=1000, gpu=4000)
EPOCHS = budget(smoke=2, cpu=10, gpu=15)
HIDDEN = budget(smoke=32, cpu=128, gpu=256)         # GRU width (the context vector is 2x this)
BATCH = budget(smoke=64, cpu=128, gpu=256)
LR = 3e-3
vitcourse.seed_everything(0)

# %% [markdown]
# ## 1. The task: a synthetic "translation" with a known alignment
#
# Source sentences are random strings of 20 symbols, 3 to `MAX_LEN` long; the "translation" is the
# string **reversed**. It is a stand-in for real translation with two useful properties: the right
# answer is known (so we can score *exact match*, the whole output right), and so is the
# alignment (target word $i$ comes from source word $L-1-i$: an anti-diagonal, not the identity).
# The lengths reach `MAX_LEN` so that the range holds both the short sentences the fixed-context
# model reverses well and the long ones where it fails (section 5 shows where that happens).

# %%
task = make_task("reverse", num_symbols=20, min_len=3, max_len=MAX_LEN)
train_pairs, test_pairs = task.sample(N_TRAIN, seed=0), task.sample(N_TEST, seed=1)
for src, tgt in train_pairs[:3]:
    print(f"{task.decode(src):>42}  ->  {task.decode(tgt)}")
print("vocabulary:", task.vocab)

train_loader = SequenceLoader(train_pairs, BATCH, bucket=True, seed=0, device=DEVICE)
test_loader = SequenceLoader(test_pairs, 250, shuffle=False, device=DEVICE)
(src, src_lengths, tgt_in), tgt_out = next(iter(test_loader))
print("src", tuple(src.shape), "tgt_in", tuple(tgt_in.shape), "tgt_out", tuple(tgt_out.shape))
print("tgt_in[0] ", tgt_in[0, :8].tolist(), "(starts with <bos>=1)")
end = int((tgt_out[0] != -100).sum())                    # where sentence 0's target ends
print("tgt_out[0]", tgt_out[0, max(0, end - 4):end + 3].tolist(),
      f"(the last words, then <eos>={task.vocab.index('<eos>')}, then -100 = padding, ignored by the loss)")

# %% [markdown]
# ## 2. The fixed-context encoder-decoder and its bottleneck
#
# The encoder, a bidirectional GRU, reads $x_1 \dots x_L$ and produces one *annotation*
# $h_j$ per word. The classic decoder sees only a summary $c$ (the two final states): it starts
# from $s_0 = \tanh(W_s c)$ and at every step reads $[y_{i-1}; c]$. Whatever the length of the
# sentence, $c$ has `2 * HIDDEN` numbers. Reversing 40 symbols from 20 means storing
# $40 \log_2 20 \approx 173$ bits in it, *and* in a form from which the last word can be read first.
# Bits are not the limit: `2 * HIDDEN` floats can hold far more than 173 bits. The limit is
# learning: the encoder must learn to pack every word into $c$ and the decoder to unpack them in
# reverse, with gradients that pass through every step of both recurrences and shrink on the way
# (the vanishing gradients of source 000). Section 5 measures at what length this breaks down.
#
# ## 3. Bahdanau attention, step by step
#
# Instead of one $c$, the decoder computes a fresh context at every step $i$ from all annotations:
#
# $$e_{ij} = v^\top \tanh(W s_{i-1} + U h_j), \qquad \alpha_{ij} = \frac{\exp e_{ij}}{\sum_k \exp e_{ik}},
# \qquad c_i = \sum_j \alpha_{ij} h_j .$$
#
# The energy $e_{ij}$ scores how well source word $j$ fits what the decoder needs next; the softmax
# turns the scores into weights that sum to one. From scratch, for one decoder state and five
# annotations:

# %%
torch.manual_seed(0)
d_s, d_h, d_a = 4, 6, 5                                   # decoder, annotation, attention widths
s_prev, h = torch.randn(d_s), torch.randn(5, d_h)         # s_{i-1} and h_1..h_5
W, U, v = torch.randn(d_a, d_s), torch.randn(d_a, d_h), torch.randn(d_a)

energies = torch.stack([v @ torch.tanh(W @ s_prev + U @ h[j]) for j in range(5)])
alpha = energies.exp() / energies.exp().sum()
context = (alpha[:, None] * h).sum(0)
print("energies e_ij:", energies.numpy().round(3))
print("weights alpha:", alpha.numpy().round(3), "sum =", round(alpha.sum().item(), 6))
print("context c_i:  ", context.numpy().round(3))

# The package's AdditiveAttention is the same computation, batched (and masked, below).
attn = AdditiveAttention(d_s, d_h, d_a)
with torch.no_grad():
    attn.W.weight.copy_(W)
    attn.U.weight.copy_(U)
    attn.U.bias.zero_()
    attn.v.weight.copy_(v[None])
c_pkg, alpha_pkg = attn(s_prev[None], h[None])
assert torch.allclose(alpha_pkg[0], alpha, atol=1e-6) and torch.allclose(c_pkg[0], context, atol=1e-6)

# %% [markdown]
# ### The worked example of the lecture (source 003)
#
# The slides use the simplest score, a dot product (Luong et al. 2015): the decoder state
# $g^5 = (0.2, 0.9, 0.0)$ is the *query* $q$ (in the notation above, the $s_{i-1}$ of the step that
# is about to write the next word: the state the decoder is in *before* emitting it), the five encoder states are both *keys* $K$ and
# *values* $V$, and $c = \mathrm{softmax}(qK^\top)V$. No $1/\sqrt{d}$ scaling here (chapter 02
# explains why the Transformer adds it), so the package call uses `scale=1.0`.

# %%
q = torch.tensor([0.2, 0.9, 0.0])
K = V = torch.tensor([[0.1, 0.0, 0.8], [0.1, 0.9, 0.0], [0.0, 0.1, 0.8], [0.2, 0.1, 0.6], [0.9, 0.0, 0.1]])

scores = K @ q                                  # q K^T: one similarity per encoder state
weights = scores.exp() / scores.exp().sum()     # softmax
c = weights @ V                                 # weighted sum of the values
print("q K^T   =", scores.numpy().round(3))
print("weights =", weights.numpy().round(3))
print("c       =", c.numpy().round(3))
assert torch.allclose(weights, torch.tensor([0.151, 0.340, 0.162, 0.169, 0.178]), atol=5e-4)
assert torch.allclose(c, torch.tensor([0.243, 0.339, 0.370]), atol=5e-4)

c_pkg, w_pkg = dot_product_attention(q[None], K, V, scale=1.0)
assert torch.allclose(c_pkg[0], c, atol=1e-6) and torch.allclose(w_pkg[0], weights, atol=1e-6)

# %% [markdown]
# Word 2, $h^2 = (0.1, 0.9, 0.0)$, is the most similar to the query and gets the largest weight
# (0.340), yet the weights are far from one-hot: with scores this small the softmax stays soft.
#
# ### Masks: padded positions must get zero weight
#
# Sentences in a batch have different lengths, so the shorter ones are padded. Padding is not a
# word: its energy is set to $-\infty$ before the softmax, so $\exp(-\infty) = 0$ weight. A mask is
# boolean, **True where attending is allowed** (the convention of `F.scaled_dot_product_attention`).

# %%
lengths = torch.tensor([5, 3, 1])
mask = padding_mask(lengths)
print(mask.int())
_, w = attn(torch.randn(3, d_s), torch.randn(3, 5, d_h), mask=mask)
print(w.detach().numpy().round(3))
assert (w[1, 3:] == 0).all() and (w[2, 1:] == 0).all()
assert torch.allclose(w.sum(-1), torch.ones(3))

# %% [markdown]
# ### The decoder's loop
#
# One decoder step uses the three equations above and a GRU: attend with the previous state
# $s_{i-1}$, then update the state from the previous word and the context,
# $s_i = \mathrm{GRU}([y_{i-1}; c_i], s_{i-1})$, and predict word $i$ from $[s_i; c_i]$. During
# training the previous word is the true one (*teacher forcing*). The whole decoder is this loop;
# written out with the package's layers, and checked against the package's model:

# %%
def decode_by_hand(model, src, src_lengths, tgt_in):
    annotations, summary = model.encoder(src, src_lengths)        # h_j (B, S, 2H); [forward last; backward first]
    dec, mask = model.decoder, padding_mask(src_lengths, src.shape[1])
    state = torch.tanh(dec.init_state(summary))                   # s_0
    logits = []
    for i in range(tgt_in.shape[1]):
        context, _ = dec.attention(state, annotations, mask=mask)  # alpha_i from s_{i-1}, c_i = sum alpha_ij h_j
        state = dec.cell(torch.cat([dec.embed(tgt_in[:, i]), context], -1), state)  # s_i = GRU([y_{i-1}; c_i], s_{i-1})
        logits.append(dec.out(torch.cat([state, context], -1)))    # scores of word i from [s_i; c_i]
    return torch.stack(logits, dim=1)                             # (B, T, vocab)


demo = create_model("seq2seq_attention", vocab_size=task.vocab_size, hidden=16).eval()
(src_d, len_d, tgt_d), _ = next(iter(test_loader))
with torch.no_grad():
    assert torch.allclose(decode_by_hand(demo, src_d.cpu(), len_d.cpu(), tgt_d.cpu()),
                          demo(src_d.cpu(), len_d.cpu(), tgt_d.cpu()), atol=1e-5)
print(f"the loop above = vitcourse's Seq2Seq with attention, on a batch of {src_d.shape[0]} sentences")

# %% [markdown]
# ## 4. Training both models on the same task
#
# Same encoder, same data, same epochs and learning rate; the only difference is the decoder.
# Training uses *teacher forcing* (the decoder reads the true previous word); evaluation uses
# *greedy decoding* (it reads its own previous output), and a sentence counts as right only if
# every word and the final `<eos>` are right.

# %%
results = {}
for name in ("seq2seq_context", "seq2seq_attention"):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=task.vocab_size, hidden=HIDDEN)
    run = run_dir("01_seq2seq", {"model": name, "task": "reverse", "max_len": MAX_LEN, "n_train": N_TRAIN,
                                 "epochs": EPOCHS, "lr": LR, "hidden": HIDDEN, "batch": BATCH})  # found on a re-run
    history = fit(model, train_loader, test_loader, epochs=EPOCHS, lr=LR, weight_decay=0.0,
                  warmup_epochs=0.5, device=DEVICE, val_name="test", checkpoint=run / "checkpoint.pt")
    seconds = sum(e["seconds"] for e in history.epochs)  # training time, also when the run is loaded
    lengths, correct = exact_match_by_length(model, test_loader)
    results[name] = dict(model=model, history=history, seconds=seconds, lengths=lengths, correct=correct)
    print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, {seconds:.0f} s, "
          f"token accuracy {history.last['test_acc']:.3f}, exact match {correct.float().mean():.3f}")

# %%
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
for name, r in results.items():
    epochs = [e["epoch"] for e in r["history"].epochs]
    ax[0].plot(epochs, [e["train_loss"] for e in r["history"].epochs], marker="o", label=name)
    ax[1].plot(epochs, [e["test_acc"] for e in r["history"].epochs], marker="o", label=name)
ax[0].set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
ax[1].set(xlabel="epoch", ylabel="token accuracy (teacher forcing)", title="Test token accuracy")
for a in ax:
    a.legend()
fig.tight_layout()
plt.show()
drops = [(e["epoch"], p_["test_acc"] - e["test_acc"]) for name, r in results.items()
         for p_, e in zip(r["history"].epochs, r["history"].epochs[1:]) if p_["test_acc"] - e["test_acc"] > 0.05]
print("test accuracy fell by more than 5 points at: " + (", ".join(f"epoch {ep} (-{d:.2f})" for ep, d in drops) or "no epoch"))

# %% [markdown]
# Both curves come from the same epochs and learning rate. A sudden fall of the test accuracy that
# recovers in the next epoch (printed above, if any) is a step too large for the loss surface at that
# moment: training at a learning rate of 3e-3 without clipping is fast but not always smooth.
#
# ## 5. Accuracy against input length
#
# The test set is split into length bins; in each we count the sentences reversed exactly.

# %%
bins = length_bins(task.min_len, MAX_LEN)          # (3, 7), (8, 12), ... for lengths 3-40


def accuracy_by_bin(r):
    return exact_match_by_bin(r["lengths"], r["correct"], bins)


fig, ax = plt.subplots(figsize=(7, 4))
for name, r in results.items():
    ax.plot([f"{lo}-{hi}" for lo, hi in bins], accuracy_by_bin(r), marker="o", label=name)
ax.set(xlabel="source length (words)", ylabel="exact match", ylim=(-0.03, 1.03),
       title="Exact-match accuracy against input length")
ax.legend()
fig.tight_layout()
for name, r in results.items():
    print(f"{name:18s}", " ".join(f"{a:.2f}" for a in accuracy_by_bin(r)))

# %% [markdown]
# The lines are exact-match rates per length bin: where the fixed-context curve falls, its single
# vector no longer carries the sentence. Why does learning fail there? Every source word reaches the
# loss of the fixed-context model only through the recurrences, step by step; with attention it also
# has a direct path, through its annotation and $\alpha_{ij}$. We measure the gradient of the loss
# with respect to each source word's embedding, on the longest test sentences, in both models **at
# initialisation** (where learning has to start, and where both losses are alike, so the gradients
# are comparable):

# %%
def embedding_gradient_norms(model, length):
    """Mean ||dL/d embedding(x_j)|| per source position j over the test sentences of `length` words."""
    store, norms = {}, []

    def keep_embeddings(module, inputs, output):    # remember the embeddings and ask for their gradient
        output.retain_grad()
        store["emb"] = output

    handle = model.encoder.embed.register_forward_hook(keep_embeddings)
    for (src, src_lengths, tgt_in), tgt_out in test_loader:
        keep = src_lengths == length + 1                                     # + <eos>
        if keep.any():
            model.zero_grad()
            logits = model(src[keep], src_lengths[keep], tgt_in[keep])
            torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt_out[keep], ignore_index=-100).backward()
            norms.append(store["emb"].grad[:, :length].norm(dim=-1).cpu())
    handle.remove()
    return torch.cat(norms).mean(0)


grad_len = max(len(src_) for src_, _ in test_pairs) - 1                    # the longest test length (without <eos>)
emb_grads = {}
for name in results:
    torch.manual_seed(0)
    fresh = create_model(name, vocab_size=task.vocab_size, hidden=HIDDEN).to(DEVICE)
    emb_grads[name] = embedding_gradient_norms(fresh, grad_len)
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, g in emb_grads.items():
    ax.plot(range(1, grad_len + 1), g, marker="o", ms=3, label=name)
ax.set(yscale="log", xlabel="source position j", ylabel="mean gradient norm at the word's embedding",
       title=f"How much each source word hears from the loss (sentences of {grad_len} words)")
ax.legend()
plt.show()
for name, g in emb_grads.items():
    lo, hi = int(g.argmin()), int(g.argmax())
    print(f"{name:18s} weakest at word {lo + 1} ({g[lo]:.1e}), strongest at word {hi + 1} ({g[hi]:.1e}): "
          f"{g[hi] / g[lo]:.1f}x apart; middle word {g[grad_len // 2]:.1e}")

# %% [markdown]
# Read the printed lines: in the fixed-context model a word far from both ends of the sentence (the
# two ends are where the bidirectional encoder's final states are read) reaches the loss only through
# a long chain of recurrent steps, and the spread between the best- and worst-heard words says how
# much that chain weakens the signal; with attention every word is one step from the output. What
# matters is the *flatness* of each curve across positions, not its height (the two models'
# gradients have different overall scales). These are sentences of the longest length; at the
# lengths where the fixed-context model starts to fail (section 5's first bins) the chain is
# shorter, and a model trained longer than this cpu run might hold out a few words more.
#
# ## 6. What the attention model looks at: alignment heatmaps
#
# Row $i$ of a heatmap is $\alpha_{i\cdot}$, the weights of output word $i$ over the source words.
# For a reversal the right alignment is the anti-diagonal; nobody told the model that.

# %%
att_model = results["seq2seq_attention"]["model"].eval()
(src, src_lengths, tgt_in), tgt_out = next(iter(test_loader))
with torch.no_grad():
    alignment = att_model.attention_weights(src, src_lengths, tgt_in).cpu()
pick = [int(src_lengths.argmin()), int((src_lengths - 16).abs().argmin()), int(src_lengths.argmax())]
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
for ax, b in zip(axes, pick):
    n = int(src_lengths[b])
    src_words = [task.vocab[t] for t in src[b, :n].tolist()]
    out_words = [task.vocab[t] for t in tgt_out[b, :n].tolist()]   # y_1 .. y_L <eos>
    im = ax.imshow(alignment[b, :n, :n], cmap="viridis", vmin=0, vmax=1)
    every = 1 if n <= 20 else 3                                    # readable labels on long sentences
    ax.set_xticks(range(0, n, every), src_words[::every], fontsize=7)
    ax.set_yticks(range(0, n, every), out_words[::every], fontsize=7)
    ax.set(xlabel="source word j", title=f"alignment, length {n - 1}")
axes[0].set_ylabel("output word i")
fig.colorbar(im, ax=axes, shrink=0.8, label="attention weight $\\alpha_{ij}$")

plt.show()

# Over the whole test set: for output word i < L the aligned source word is j* = L-1-i. Where is the
# largest weight, relative to j* (offset = argmax_j - j*), and how much weight lies within +-1 of j*?
offsets, near, total = [], 0.0, 0
for (src, src_lengths, tgt_in), tgt_out in test_loader:
    with torch.no_grad():
        a = att_model.attention_weights(src, src_lengths, tgt_in).cpu()
    for b, n in enumerate((src_lengths - 1).tolist()):
        i = torch.arange(n)
        aligned = n - 1 - i
        offsets.append(a[b, i].argmax(-1) - aligned)
        window = torch.stack([a[b, i, (aligned + k).clamp(0, n)] * ((aligned + k >= 0) & (aligned + k <= n))
                              for k in (-1, 0, 1)])
        near += window.sum().item()
        total += n
offsets = torch.cat(offsets)
share = {k: (offsets == k).float().mean().item() for k in range(-3, 4)}
alignment_hits, next_word, alignment_mass = share[0], share[1], near / total

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.bar(list(share), list(share.values()), color=["gray"] * 3 + ["tab:green", "tab:orange"] + ["gray"] * 2)
ax.set(xlabel="offset of the largest weight from the aligned word (+1 = the word emitted at the previous step)",
       ylabel="share of output words", title="where the attention peaks, whole test set")
plt.show()
print(f"largest weight on the aligned source word: {alignment_hits:.2f} of output words; on the next one "
      f"(offset +1): {next_word:.2f}; elsewhere: {1 - alignment_hits - next_word:.2f}")
print(f"weight within +-1 of the aligned word: {alignment_mass:.2f} on average")

# %% [markdown]
# Green is the aligned word $x_{j^*}$, orange the source word one place further right, which in a
# reversal is the word the decoder **emitted at the previous step** ($y_{i-1} = x_{j^*+1}$). The
# printed lines give both shares and the weight near the anti-diagonal. When the peak sits on orange
# more often than on green, the attention *lags* by one word, and this is not a bug. A likely
# explanation (a hypothesis these numbers do not test; exercise 5 does) follows. The query is
# $s_{i-1}$, the decoder state that has just emitted $y_{i-1}$; matching its own last output is the
# easiest thing for it to find. And because the encoder is bidirectional, the annotation $h_{j^*+1}$
# also carries its neighbour $x_{j^*}$ (the forward GRU read $x_{j^*}$ one step before it), so reading
# $h_{j^*+1}$ still tells the decoder which word to write. The alignment is the anti-diagonal up to
# this one-word shift; claim C1b, written before the run as "the largest weight on the aligned
# word", measures the strict version.

# %% [markdown]
# ## 7. Claims

# %%
ctx, att = results["seq2seq_context"], results["seq2seq_attention"]
long_lo = MAX_LEN - 9                      # the longest sentences: the top 10 lengths
short_hi = 3 + 9                           # the shortest: lengths 3..12


def rate(r, lo, hi):
    keep = (r["lengths"] >= lo) & (r["lengths"] <= hi)
    return r["correct"][keep].float().mean().item()


ctx_short, ctx_long = rate(ctx, 3, short_hi), rate(ctx, long_lo, MAX_LEN)
att_short, att_long = rate(att, 3, short_hi), rate(att, long_lo, MAX_LEN)
claims = Claims("01_seq2seq_attention")
claims.add("C1", "with attention, accuracy on the longest sequences stays high where the "
           "fixed-context model collapses",
           measured=(f"exact match, lengths {long_lo}-{MAX_LEN}: attention {att_long:.2f}, fixed context "
                     f"{ctx_long:.2f} (lengths 3-{short_hi}: {att_short:.2f} / {ctx_short:.2f})"),
           holds=att_long >= 0.75 and ctx_long <= 0.5 * ctx_short and att_long > ctx_long + 0.25)
claims.add("C1b", "the learned alignment of a reversal is the anti-diagonal",
           measured=(f"largest weight on the aligned source word for {alignment_hits:.2f} of output words, "
                     f"on the next one for {next_word:.2f}; weight within +-1 of the anti-diagonal "
                     f"{alignment_mass:.2f}"),
           holds=alignment_hits >= 0.5)
claims.show()

# %% [markdown]
# "Holds" is decided by fixed thresholds written before the run: attention keeps at least 75 %
# exact match on the longest sentences, the fixed-context model loses at least half of its
# short-sentence accuracy there, and the gap is over 25 points; for at least half of the output
# words the largest attention weight is on the right source word. In the smoke profile the runs
# are too short for any of this to mean anything.

# %% [markdown]
# ## Checked exercises
#
# Each cell below holds a function for you to write: it raises `NotImplementedError` until you do,
# and the check under it then reports "not attempted yet". Once written, the check runs your function
# on several inputs (odd sizes and a batch of one among them) and compares it with the course's
# reference solution. It prints the first difference it finds: the case, a wrong type or shape (with
# the formula of the right one), how many values differ and where, and, when your answer is a known
# mistake, what that mistake is. For help, in a new cell:
#
# * `ex.additive_attention.hint()` prints a hint, another on each call;
# * `ex.additive_attention.solution()` prints the reference solution.
#
# Try before you ask for a hint: the messages are part of the lesson.

# %%
from vitcourse.exercises import ch01 as ex

# %% tags=["exercise"]
def additive_attention(query, keys, W_q, W_k, v):
    """Bahdanau attention: e_j = v . tanh(W_q query + W_k key_j), weights = softmax over j,
    context = sum_j weights_j key_j. query (B, Dq), keys (B, T, Dk), W_q (A, Dq), W_k (A, Dk), v (A,) -> (context (B, Dk), weights (B, T))."""
    raise NotImplementedError("write additive_attention, then run this cell")


ex.additive_attention.check(additive_attention)

# %% tags=["exercise"]
def padding_mask(lengths, max_len):
    """(B,) lengths -> (B, max_len) bool mask, True on real tokens, False on padding."""
    raise NotImplementedError("write padding_mask, then run this cell")


ex.padding_mask.check(padding_mask)

# %% tags=["exercise"]
def masked_softmax(scores, mask):
    """Softmax over the last dimension of (B, T) scores, where positions with mask False get weight
    exactly 0 and the others still sum to 1."""
    raise NotImplementedError("write masked_softmax, then run this cell")


ex.masked_softmax.check(masked_softmax)

# %% [markdown]
# ## More exercises (experiments to run)
# 1. Train on `make_task("copy")` and `make_task("swap")`. What do the heatmaps look like? Which task
#    is hardest for the fixed-context model, and why?
# 2. Double `HIDDEN` for the fixed-context model only. Does the collapse move to longer sentences?
#    What does that say about the size of $c$?
# 3. Replace the additive score by a dot product $e_{ij} = s_{i-1}^\top W h_j$ (Luong et al. 2015).
#    Does it learn as fast?
# 4. Multiply the source-003 scores by 10 before the softmax. What happens to the weights? (Chapter 02
#    picks this up: why the Transformer divides by $\sqrt{d_k}$.)
# 5. Train the attention model with a one-direction (forward only) encoder. Does the one-word lag of
#    section 6 change? What does that say about the explanation given there?
