"""Data: image sets as tensors (``load``), stratified subsets, the on-device loader, sequence tasks."""
from .images import ImageData, data_root, dataset_for_profile, holdout, load, subset, synthetic
from .loader import DeviceLoader, FixedSteps, Resized, random_crop, random_resized_crop, random_flip
from .sequences import (BOS, EOS, IGNORE_INDEX, PAD, TASKS, SequenceLoader, SequenceTask, collate, exact_match, make_task)
