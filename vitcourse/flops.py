"""FLOPs counted by ``torch.utils.flop_counter``, attention products included on every device.

``FlopCounterMode`` counts matrix products, convolutions and, on a GPU, the fused attention kernels
(flash, memory-efficient, cuDNN). On a CPU ``F.scaled_dot_product_attention`` runs another fused kernel
that it does not know, so QK^T and AV would count as zero there: ``flop_counter()`` adds that kernel,
forward and backward, with torch's own attention formulas. 2 FLOPs per multiply-add.
"""
from __future__ import annotations

import torch
from torch.utils import flop_counter as _fc

_aten = torch.ops.aten


def _sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return _fc.sdpa_flop_count(query, key, value)


def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return _fc.sdpa_backward_flop_count(grad_out, query, key, value)


CPU_ATTENTION = {}
for _name, _formula in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu),
                        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward)):
    if hasattr(_aten, _name):  # present in every torch the course supports; checked, not assumed
        CPU_ATTENTION[getattr(_aten, _name)] = _formula


def flop_counter() -> _fc.FlopCounterMode:
    """A ``FlopCounterMode`` (no printed table) that also counts the CPU's fused attention."""
    return _fc.FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
