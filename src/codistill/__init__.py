"""codistill: reasoning distillation and structural alignment for code models.

Importing this package is cheap on purpose: heavy libraries (torch, transformers, datasets,
tree-sitter) are imported inside the functions that use them.
"""

__version__ = "0.1.0"
