"""`reasonlab ARGS` in one process of a CPU launch, with accelerate's FSDP switch open on CPU.

    python -m torch.distributed.run --standalone --nproc_per_node 2 bench/fsdp_on_cpu.py \
        train RECIPE.yaml --model ... --data ... --output-dir ...

accelerate (1.15) turns FSDP on only for GPU launches: on CPU its state says MULTI_CPU, the
Trainer drops the FSDP plugin and wraps the model in DDP (which `reasonlab train` refuses for
a sharded recipe: `training.engine.sharded.require_fsdp`). Torch's FSDP2 itself runs on CPU over
gloo, so for CPU checks of the sharded path (`bench/check_sharded_train.py --device cpu`,
which tests/test_sharded.py runs) this script marks the launch as FSDP once accelerate has
set it up. Nothing else is replaced: the CLI, the Trainer, accelerate's FSDP2 preparation
and checkpointing, and torch's FSDP2 run as on GPUs.
"""

from __future__ import annotations

import os

from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType

_accelerator_init = Accelerator.__init__


def _fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs) -> None:
    _accelerator_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.state.distributed_type == DistributedType.MULTI_CPU:
        # what AcceleratorState does for a GPU launch with an FSDP plugin, in both shared states
        self.state.distributed_type = DistributedType.FSDP
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.state.fsdp_plugin = fsdp_plugin


if __name__ == "__main__":
    os.environ["ACCELERATE_USE_CPU"] = "true"  # what `accelerate launch --cpu` sets: gloo, CPU
    Accelerator.__init__ = _fsdp_on_cpu
    from reasonlab.cli import main

    main()
