"""Building blocks: attention, positions, Transformer layers, stochastic depth."""
from .attention import (AdditiveAttention, MultiHeadAttention, causal_mask, check_heads, dot_product_attention,
                        padding_mask)
from .drop_path import DropPath
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_table
from .transformer import MLP, DecoderLayer, EncoderLayer, Transformer
from .slvit import LocalitySelfAttention, ShiftedPatchTokenization, receptive_field, token_receptive_field
