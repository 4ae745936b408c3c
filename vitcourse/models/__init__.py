"""Models by name: ``create_model(name, **kwargs)``; ``list_models()`` lists the names.

Each module registers its constructors when imported, so importing this package fills the registry.
"""
from .registry import create_model, list_models, register_model
from . import resnet  # noqa: F401  (registers models)
from . import seq2seq  # noqa: F401  (registers models)
from . import swin  # noqa: F401  (registers models)
from . import vit  # noqa: F401  (registers models)
