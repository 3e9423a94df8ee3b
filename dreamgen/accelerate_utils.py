"""The one way the three training stages (world model, IDM, policy) make their `accelerate.Accelerator`.

accelerate keeps one process-wide state: a second `Accelerator` with another mixed precision (or another
cpu flag) raises "AcceleratorState has already been initialized and cannot be changed". The experiment
trains the world model, the IDM and the policies one after the other in one process, each with its own
precision, so every stage starts from fresh precision and gradient-accumulation states. The distributed set-up (process group,
this process's device) is kept when one exists: torchrun / `accelerate launch` fix it for the process.
"""

from __future__ import annotations

from typing import Any


def make_accelerator(**kwargs: Any) -> Any:
    """`accelerate.Accelerator(**kwargs)`, after forgetting the precision settings of an earlier one."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, DistributedType, GradientState, PartialState

    if AcceleratorState._shared_state:  # an Accelerator was made before in this process
        distributed = PartialState._shared_state.get("distributed_type", DistributedType.NO) != DistributedType.NO
        AcceleratorState._reset_state(reset_partial_state=not distributed)
        GradientState._reset_state()
    return Accelerator(**kwargs)
