"""reasonlab: from a reasoning-puzzle competition's CSV to a scored LoRA submission.

The core (puzzle families, the metric, CSV handling) imports no ML library, so
classifying, solving and scoring run in milliseconds without torch installed.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
