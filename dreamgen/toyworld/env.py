"""`ToyWorldEnv`: the gymnasium environment.

Observation: {"image": uint8 (H, W, 3) from the front camera, "state": float32 (4,) =
[ee_x, ee_y, ee_z, gripper]} where gripper is the closure in [0, 1] (0 open, 1 closed).
Action: float (4,) in [-1, 1] = [dx, dy, dz, grip]: the end-effector moves by `MAX_STEP` * dxyz
metres per step (clipped to the workspace); grip > 0 closes the gripper, grip <= 0 opens it.
The gripper takes 3 steps to close; an object comes within the fingers' reach at any step while they
are closing attaches it to the hand ("magnet" grasp), so a grasp commanded a step early still holds;
opening releases it.
10 control steps per second; the episode is truncated at the behavior's time limit.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from dreamgen.errors import DreamgenError
from dreamgen.toyworld import scene as S
from dreamgen.toyworld.tasks import (
    BEHAVIORS,
    Layout,
    WorldState,
    check_name,
    get_behavior,
    instruction_for,
    is_success,
    sample_task,
)

FPS = 10
IMAGE_SIZE = 96  # default square frame side: a 4 cm cube is ~8 px wide, the grasp radius ~3 px
MAX_STEP = 0.05  # metres per control step at |action| = 1
GRIPPER_SPEED = 1 / 3  # closure change per step: closing takes 3 steps
STATE_NAMES = ["ee_x", "ee_y", "ee_z", "gripper"]
ACTION_NAMES = ["dx", "dy", "dz", "grip"]
GRASP_XY = 0.025  # an object's centre must be this close (xy) to the fingertip centre to be grasped
GRASP_Z = (-0.012, 0.05)  # and this far above the fingertips


class ActionError(DreamgenError, ValueError):
    """An action of the wrong shape or with non-finite values."""


def _size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        h = w = image_size
    else:
        h, w = (int(x) for x in image_size)
    if not (8 <= h <= 512 and 8 <= w <= 512):
        raise DreamgenError(f"ToyWorld image size must be within 8..512 pixels, got {h}x{w}")
    return h, w


class ToyWorldEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(
        self,
        behavior: str = "pick_place",
        env: str = "default",
        image_size: int | tuple[int, int] = IMAGE_SIZE,
        arm_style: str = "default",
        max_episode_steps: int | None = None,
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
    ) -> None:
        self.behavior = get_behavior(behavior).name
        self.env_name = check_name("environment", env, list(S.ENVIRONMENTS))
        self.arm_style = check_name("arm_style", arm_style, list(S.ARM_STYLES))
        self.height, self.width = _size(image_size)
        self.max_episode_steps = max_episode_steps
        self.terminate_on_success = terminate_on_success
        self.render_mode = render_mode
        self.model = S.build_model(offscreen=max(self.height, self.width))  # small buffer: faster
        self.data = mujoco.MjData(self.model)
        self.handles = S.SceneHandles.resolve(self.model)
        self._n_sub = int(round(1.0 / FPS / self.model.opt.timestep))
        self._renderer: mujoco.Renderer | None = None
        self._scene_option = S.scene_option(S.ENVIRONMENTS[self.env_name], S.ARM_STYLES[self.arm_style])
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (self.height, self.width, 3), np.uint8),
                "state": gym.spaces.Box(-np.inf, np.inf, (len(STATE_NAMES),), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (len(ACTION_NAMES),), np.float32)
        self.task_params: dict[str, Any] = {}
        self.layout: Layout | None = None
        self.instruction = ""
        self.ee = S.HOME_EE.copy()
        self.closure = 0.0
        self.held: str | None = None
        self._held_offset = np.zeros(3)
        self._held_quat = np.array([1.0, 0, 0, 0])
        self._steps = 0
        self._last_image: np.ndarray | None = None

    # ----- gym API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"behavior", "env", "arm_style", "task"}
        if unknown:
            raise DreamgenError(f"unknown ToyWorld reset option(s) {sorted(unknown)}; valid: behavior, env, "
                                "arm_style, task")
        if "behavior" in options:
            self.behavior = get_behavior(options["behavior"]).name
        if "env" in options or "arm_style" in options:
            self.env_name = check_name("environment", options.get("env", self.env_name), list(S.ENVIRONMENTS))
            self.arm_style = check_name("arm_style", options.get("arm_style", self.arm_style), list(S.ARM_STYLES))
            self._scene_option = S.scene_option(S.ENVIRONMENTS[self.env_name], S.ARM_STYLES[self.arm_style])
        S.apply_visual_env(self.model, self.handles, S.ENVIRONMENTS[self.env_name])
        S.apply_arm_style(self.model, S.ARM_STYLES[self.arm_style])

        self.layout, self.task_params = sample_task(self.behavior, self.np_random)
        if "task" in options:  # explicit parameters (tests, replays) override the sampled ones
            self.task_params = {**self.task_params, **options["task"]}
        self.instruction = instruction_for(self.behavior, self.task_params)

        m, d, h = self.model, self.data, self.handles
        mujoco.mj_resetData(m, d)
        for obj, pos in self.layout.objects.items():
            a = h.obj_qpos[obj]
            yaw = float(self.np_random.uniform(-0.6, 0.6))
            d.qpos[a : a + 3] = pos
            d.qpos[a + 3 : a + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        d.mocap_pos[h.mocap["plate"]] = self.layout.plate
        d.mocap_pos[h.mocap["bin"]] = self.layout.bin
        self.ee = S.HOME_EE.copy()
        self.closure, self.held, self._steps = 0.0, None, 0
        self._place_gripper(self.ee, self._gap())
        self._place_arm()
        mujoco.mj_forward(m, d)
        for _ in range(5):  # let objects settle onto the table
            mujoco.mj_step(m, d)
        obs = self._observe()
        return obs, self._info(False)

    def step(self, action):
        a = self._check_action(action)
        if self.layout is None:
            raise DreamgenError("ToyWorldEnv.step() called before reset()")
        m, d, h = self.model, self.data, self.handles
        start = self.ee.copy()
        target = np.clip(start + a[:3] * MAX_STEP, S.WORKSPACE_LOW, S.WORKSPACE_HIGH)
        close = bool(a[3] > 0)
        if close and self.held is None and self.closure < 1.0:  # the fingers are still closing
            self.held = self._graspable(start)
            if self.held is not None:
                qa = h.obj_qpos[self.held]
                self._held_offset = d.qpos[qa : qa + 3] - start
                self._held_offset[:2] *= 0.5  # the fingers centre the object a little as they close
                self._held_quat = d.qpos[qa + 3 : qa + 7].copy()
        if not close:
            self.held = None
        gap0 = self._gap()
        self.closure = float(np.clip(self.closure + (GRIPPER_SPEED if close else -GRIPPER_SPEED), 0.0, 1.0))
        gap1 = self._gap()
        for k in range(1, self._n_sub + 1):
            f = k / self._n_sub
            ee = start + (target - start) * f
            self._place_gripper(ee, gap0 + (gap1 - gap0) * f)
            if self.held is not None:
                qa, va = h.obj_qpos[self.held], h.obj_qvel[self.held]
                d.qpos[qa : qa + 3] = ee + self._held_offset
                d.qpos[qa + 3 : qa + 7] = self._held_quat
                d.qvel[va : va + 6] = 0.0
            mujoco.mj_step(m, d)
        self.ee = target
        self._place_arm()
        self._steps += 1
        obs = self._observe()
        success = is_success(self.behavior, self.world_state(), self.task_params)
        terminated = success and self.terminate_on_success
        truncated = self._steps >= self.time_limit and not terminated
        return obs, float(success), terminated, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        return None if self._last_image is None else self._last_image.copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ----- privileged access (experts, tests, evaluation) ------------------------------------
    @property
    def time_limit(self) -> int:
        return self.max_episode_steps or BEHAVIORS[self.behavior].max_steps

    @property
    def steps(self) -> int:
        return self._steps

    def object_position(self, obj: str) -> np.ndarray:
        a = self.handles.obj_qpos[obj]
        return self.data.qpos[a : a + 3].copy()

    def world_state(self) -> WorldState:
        objects, upright = {}, {}
        for obj in S.OBJECT_NAMES:
            a = self.handles.obj_qpos[obj]
            objects[obj] = self.data.qpos[a : a + 3].copy()
            w, x, y, z = self.data.qpos[a + 3 : a + 7]
            upright[obj] = float(1 - 2 * (x * x + y * y))
        return WorldState(objects, self.layout.plate.copy(), self.layout.bin.copy(), self.held, self.ee.copy(),
                          upright)

    def state_vector(self) -> np.ndarray:
        return np.array([*self.ee, self.closure], dtype=np.float32)

    # ----- internals -------------------------------------------------------------------------
    def _check_action(self, action) -> np.ndarray:
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ActionError(f"ToyWorld action must be 4 numbers {ACTION_NAMES}, got {action!r}") from None
        if a.shape != (len(ACTION_NAMES),):
            raise ActionError(f"ToyWorld action must have shape (4,) {ACTION_NAMES}, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ActionError(f"ToyWorld action has non-finite values: {a.tolist()}")
        return np.clip(a, -1.0, 1.0)

    def _gap(self) -> float:
        gap = S.GRIPPER_OPEN_GAP * (1.0 - self.closure)
        if self.held is not None:
            gap = max(gap, 2 * S.CUBE_HALF + 0.002)
        return gap

    def _graspable(self, ee: np.ndarray) -> str | None:
        best, best_d = None, GRASP_XY
        for obj in S.OBJECT_NAMES:
            p = self.object_position(obj)
            dxy = float(np.linalg.norm(p[:2] - ee[:2]))
            if dxy <= best_d and GRASP_Z[0] <= p[2] - ee[2] <= GRASP_Z[1]:
                best, best_d = obj, dxy
        return best

    def _place_gripper(self, ee: np.ndarray, gap: float) -> None:
        for name, pos in S.gripper_pose(ee, gap).items():
            self.data.mocap_pos[self.handles.mocap[name]] = pos

    def _place_arm(self) -> None:
        for name, (pos, quat) in S.arm_pose(self.ee).items():
            i = self.handles.mocap[name]
            self.data.mocap_pos[i] = pos
            self.data.mocap_quat[i] = quat

    def _observe(self) -> dict[str, np.ndarray]:
        if self._renderer is None:
            self._renderer = S.make_renderer(self.model, self.height, self.width)
        mujoco.mj_forward(self.model, self.data)
        self._renderer.update_scene(self.data, camera="front", scene_option=self._scene_option)
        self._last_image = self._renderer.render().copy()
        return {"image": self._last_image, "state": self.state_vector()}

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "success": bool(success),
            "behavior": self.behavior,
            "env": self.env_name,
            "arm_style": self.arm_style,
            "instruction": self.instruction,
            "task": dict(self.task_params),
            "step": self._steps,
        }

    def __del__(self) -> None:  # free the GL context deterministically, not at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def render_initial_frame(
    behavior: str, env: str = "default", seed: int = 0, size: int | tuple[int, int] = IMAGE_SIZE, arm_style: str = "default"
) -> tuple[np.ndarray, str]:
    """The first camera frame of episode (behavior, env, seed) and its instruction, without running the expert.

    Identical to what `ToyWorldEnv.reset(seed=seed, options={"behavior": ..., "env": ...})` observes, so a
    world model can dream the episode that collection or evaluation would start from.
    """
    e = ToyWorldEnv(behavior=behavior, env=env, image_size=size, arm_style=arm_style)
    try:
        obs, info = e.reset(seed=seed)
        return obs["image"], info["instruction"]
    finally:
        e.close()
