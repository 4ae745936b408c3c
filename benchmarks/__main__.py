"""``python -m benchmarks [items] [--repeats N] [--threads N] [--quick] [--no-save]``.

Items: train (1), attention (2), loader (3), utilisation (5), beside (6); default all five (``make bench``).
``accuracy`` (4) is separate because it trains for up to ~40 minutes (``make bench-accuracy``).
"""
from __future__ import annotations

import argparse
import time

import torch

from . import accuracy, attention, beside, loader, train_step, utilisation
from .common import header, load_average, report

ITEMS = {"train": train_step.run, "attention": attention.run, "loader": loader.run,
         "utilisation": utilisation.run, "beside": beside.run}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="*", metavar="item",
                   help=f"any of {', '.join([*ITEMS, 'accuracy'])} (default: {' '.join(ITEMS)})")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats per comparison")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice, one per core)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    p.add_argument("--no-save", action="store_true", help="print only; do not append to RESULTS.md")
    p.add_argument("--minutes", type=float, default=20.0,
                   help="accuracy: wall-clock budget per model (default 20)")
    p.add_argument("--models", default="vit,resnet",
                   help="accuracy: comma-separated runs among vit, resnet (default vit,resnet)")
    args = p.parse_args(argv)
    args.items = args.items or list(ITEMS)
    unknown = [i for i in args.items if i not in ITEMS and i != "accuracy"]
    if unknown:
        p.error(f"unknown item(s) {unknown}; choose from {', '.join([*ITEMS, 'accuracy'])}")
    if args.threads:
        torch.set_num_threads(args.threads)
    save = not args.no_save and not args.quick
    title = "make bench-accuracy" if args.items == ["accuracy"] else f"make bench ({' '.join(args.items)})"
    report(header(title + (" [quick]" if args.quick else "")), save)
    t0 = time.perf_counter()
    for item in args.items:
        kw = {} if args.repeats is None else {"repeats": args.repeats}
        if item == "accuracy":
            accuracy.run(save=save, quick=args.quick, minutes=args.minutes, models=args.models.split(","))
        else:
            ITEMS[item](save=save, quick=args.quick, **kw)
    report(f"_{time.perf_counter() - t0:.0f} s in all; load average at the end: {load_average()}_\n", save)


if __name__ == "__main__":
    main()
