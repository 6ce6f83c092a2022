"""Make every `checkpoint-N/` as exportable as the final adapter.

The Trainer saves the PEFT adapter into each checkpoint, but not the files that
`reasonlab export` needs beside it (`lora_parameters.json`: which 3-D parameter each
nested expert wrapper holds). Users export intermediate checkpoints to pick the best
one, so the same files are written into every checkpoint as it is saved.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasonlab.formats.files import atomic_write

__all__ = ["write_beside_checkpoints"]


def write_beside_checkpoints(files: dict[str, object]):
    """A TrainerCallback writing each `{file name: JSON value}` into every checkpoint it saves."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class WriteBesideCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:  # one writer under multi-GPU launchers
                return
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            for name, value in files.items():
                with atomic_write(folder / name) as f:
                    json.dump(value, f, indent=2)
                    f.write("\n")

    return WriteBesideCheckpoints()
