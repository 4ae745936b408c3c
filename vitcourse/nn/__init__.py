"""Building blocks: attention, positions, Transformer layers, stochastic depth."""
from .attention import MultiHeadAttention, causal_mask, dot_product_attention, padding_mask
from .drop_path import DropPath
from .transformer import MLP, EncoderLayer
