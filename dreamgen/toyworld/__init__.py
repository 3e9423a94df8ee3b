"""ToyWorld: the embedded MuJoCo tabletop world (scene, behaviors, gym env, experts, collect, eval).

Headless rendering uses EGL unless MUJOCO_GL says otherwise; it has to be chosen before `mujoco`
is first imported, hence here, at the top of the package.
"""

import logging
import os

os.environ.setdefault("MUJOCO_GL", "egl")
logging.getLogger("OpenGL").setLevel(logging.WARNING)  # PyOpenGL logs its accelerate probe at INFO

from dreamgen.toyworld.env import ToyWorldEnv, render_initial_frame  # noqa: E402
from dreamgen.toyworld.evaluate import evaluate, wilson_interval  # noqa: E402
from dreamgen.toyworld.experts import ExpertPolicy, ScriptedExpert  # noqa: E402
from dreamgen.toyworld.policies import Policy, RandomPolicy, builtin_policy  # noqa: E402
from dreamgen.toyworld.scene import ARM_STYLES, ENVIRONMENTS, OBJECT_NAMES  # noqa: E402
from dreamgen.toyworld.tasks import BEHAVIORS, WorldState, instruction_for, is_success  # noqa: E402

__all__ = [
    "ARM_STYLES",
    "BEHAVIORS",
    "ENVIRONMENTS",
    "OBJECT_NAMES",
    "ExpertPolicy",
    "Policy",
    "RandomPolicy",
    "ScriptedExpert",
    "ToyWorldEnv",
    "WorldState",
    "evaluate",
    "instruction_for",
    "is_success",
    "builtin_policy",
    "render_initial_frame",
    "wilson_interval",
]
