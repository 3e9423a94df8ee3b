"""ToyWorld: the embedded MuJoCo tabletop world (scene, behaviors, gym env, experts, collect, eval).

Headless rendering uses EGL unless MUJOCO_GL says otherwise; it has to be chosen before `mujoco`
is first imported, hence here, at the top of the package.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
