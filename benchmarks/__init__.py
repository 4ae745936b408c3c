"""Benchmarks of the course package: is it as fast as the reference implementations, and how far
is it from what the machine can do?

    python -m benchmarks            # items 1-3, 5 and 6 (``make bench``)
    python -m benchmarks accuracy   # item 4, time to accuracy (``make bench-accuracy``)

One module per item: ``train_step`` (ours vs timm), ``attention`` (ours vs torch.nn.MultiheadAttention),
``loader`` (DeviceLoader vs DataLoader), ``utilisation`` (model FLOP/s over measured matmul peak),
``accuracy`` (time to 90% on Fashion-MNIST), ``beside`` (two seeds one after the other against side by
side in two processes). ``common`` holds the timing and the report. Every comparison runs both sides
in one session, interleaved, and reports medians and the ratio.
"""
