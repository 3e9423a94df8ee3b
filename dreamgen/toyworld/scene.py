"""The ToyWorld MuJoCo scene: a table, a visible 3-link arm with a two-finger gripper, four
coloured objects, a plate and a bin, seen by one fixed front camera.

The arm is kinematic: the gripper (palm + two fingers) is a set of mocap bodies that move by the
commanded end-effector delta and push objects through contacts; the arm links are mocap bodies
placed each step by closed-form inverse kinematics so the arm always reaches the gripper. Grasping
is a "magnet": closing the gripper over an object attaches it to the hand until the gripper opens.

Coordinates: metres, table top at z = 0, x to the camera's right, y away from the camera, z up.
"""

from __future__ import annotations

import atexit
import os
import weakref
from dataclasses import dataclass, field

os.environ.setdefault("MUJOCO_GL", "egl")  # must happen before mujoco picks a GL backend

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from dreamgen.errors import DreamgenError  # noqa: E402

# ----- geometry ---------------------------------------------------------------------------------
TABLE_HALF = (0.38, 0.29)
WORKSPACE_LOW = np.array([-0.26, -0.17, 0.004])  # end-effector (fingertip centre) limits
WORKSPACE_HIGH = np.array([0.26, 0.17, 0.30])
OBJECT_REGION = (np.array([-0.22, -0.13]), np.array([0.22, 0.13]))  # where objects/receptacles spawn
CUBE_HALF = 0.02
PLATE_RADIUS = 0.06
PLATE_TOP = 0.006
BIN_INNER_HALF = 0.065
BIN_WALL = 0.006
BIN_HEIGHT = 0.05
BIN_FLOOR_TOP = 0.004

ARM_BASE = np.array([0.0, 0.34, 0.0])
SHOULDER_HEIGHT = 0.22
UPPER_ARM = 0.30
FOREARM = 0.30
WRIST_ABOVE_EE = 0.11  # wrist joint height above the fingertips
PALM_Z = 0.062  # palm centre above the fingertips
FINGER_HALF = (0.006, 0.013, 0.026)
GRIPPER_OPEN_GAP = 0.076  # inner distance between open fingers
HOME_EE = np.array([0.0, 0.02, 0.16])
# The front camera frames the workspace (objects are tens of pixels, not a handful): it sits above
# the near table edge and looks down at the table centre.
CAMERA_POS = np.array([0.0, -0.36, 0.70])
CAMERA_TARGET = np.array([0.0, 0.02, 0.0])
CAMERA_FOVY = 40


def _camera_xyaxes() -> str:
    """MuJoCo's camera x and y axes for a level camera at CAMERA_POS looking at CAMERA_TARGET."""
    fwd = (CAMERA_TARGET - CAMERA_POS) / np.linalg.norm(CAMERA_TARGET - CAMERA_POS)
    x = np.array([1.0, 0.0, 0.0])
    y = np.cross(-fwd, x)
    return " ".join(f"{v:.5f}" for v in (*x, *y))

# object name -> (shape, rgba). Names are what instructions say ("the red cube").
OBJECTS: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "red cube": ("box", (0.85, 0.12, 0.10, 1.0)),
    "green cube": ("box", (0.15, 0.70, 0.20, 1.0)),
    "blue cube": ("box", (0.12, 0.30, 0.90, 1.0)),
    "yellow cylinder": ("cylinder", (0.95, 0.80, 0.10, 1.0)),
}
OBJECT_NAMES = list(OBJECTS)


def body_name(obj: str) -> str:
    return "obj_" + obj.replace(" ", "_")


# ----- visual environments ----------------------------------------------------------------------
@dataclass(frozen=True)
class VisualEnv:
    """A named look of the scene. Only appearance changes; physics and tasks are identical."""

    name: str
    description: str
    table_material: str
    backdrop_rgba: tuple[float, float, float, float]
    floor_rgba: tuple[float, float, float, float]
    light_diffuse: tuple[float, float, float]
    light_ambient: tuple[float, float, float]
    headlight: float
    distractors: bool = False


ENVIRONMENTS: dict[str, VisualEnv] = {
    e.name: e
    for e in [
        VisualEnv("default", "light wood table, grey-blue wall, neutral light", "wood",
                  (0.55, 0.62, 0.70, 1), (0.35, 0.35, 0.38, 1), (0.75, 0.75, 0.72), (0.25, 0.25, 0.25), 0.35),
        VisualEnv("dark_table", "dark slate table, beige wall, warm dim light", "slate",
                  (0.80, 0.74, 0.60, 1), (0.25, 0.20, 0.18, 1), (0.65, 0.55, 0.42), (0.18, 0.15, 0.12), 0.25),
        VisualEnv("checker", "grey/white checkered table, green wall", "checker",
                  (0.35, 0.60, 0.38, 1), (0.30, 0.30, 0.30, 1), (0.75, 0.75, 0.75), (0.25, 0.25, 0.25), 0.35),
        VisualEnv("distractors", "white table, bright light, three static distractor objects", "white",
                  (0.62, 0.55, 0.70, 1), (0.40, 0.40, 0.40, 1), (0.90, 0.90, 0.90), (0.30, 0.30, 0.30), 0.40,
                  distractors=True),
        VisualEnv("evening", "wood table in dim bluish light, dark wall", "wood",
                  (0.15, 0.17, 0.25, 1), (0.10, 0.10, 0.12, 1), (0.35, 0.40, 0.60), (0.10, 0.10, 0.18), 0.15),
    ]
}


# ----- arm styles (visually different embodiments with identical kinematics) --------------------
@dataclass(frozen=True)
class ArmStyle:
    name: str
    description: str
    link_group: int | None  # geom group drawn for the links (None: no arm, a floating gripper)
    gripper_rgba: tuple[float, float, float, float]
    palm_rgba: tuple[float, float, float, float]


ARM_STYLES: dict[str, ArmStyle] = {
    s.name: s
    for s in [
        ArmStyle("default", "grey capsule links, orange joints, dark gripper", 1, (0.15, 0.15, 0.17, 1),
                 (0.20, 0.20, 0.22, 1)),
        ArmStyle("blue_box", "blue boxy links, white joints, red-tipped gripper", 2, (0.85, 0.20, 0.20, 1),
                 (0.90, 0.90, 0.92, 1)),
        ArmStyle("floating", "no arm: a floating white gripper", None, (0.92, 0.92, 0.92, 1),
                 (0.70, 0.70, 0.72, 1)),
    ]
}
DISTRACTOR_GROUP = 3


@dataclass
class SceneHandles:
    """Ids of the things the env moves, resolved once per model."""

    model: mujoco.MjModel
    mocap: dict[str, int] = field(default_factory=dict)  # body name -> mocap index
    obj_qpos: dict[str, int] = field(default_factory=dict)  # object -> qpos address of its free joint
    obj_qvel: dict[str, int] = field(default_factory=dict)
    obj_body: dict[str, int] = field(default_factory=dict)
    table_geom: int = -1
    materials: dict[str, int] = field(default_factory=dict)

    @classmethod
    def resolve(cls, model: mujoco.MjModel) -> SceneHandles:
        h = cls(model)
        for b in range(model.nbody):
            if model.body_mocapid[b] >= 0:
                h.mocap[mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b)] = int(model.body_mocapid[b])
        for obj in OBJECT_NAMES:
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body_name(obj))
            jid = model.body_jntadr[bid]
            h.obj_body[obj] = bid
            h.obj_qpos[obj] = int(model.jnt_qposadr[jid])
            h.obj_qvel[obj] = int(model.jnt_dofadr[jid])
        h.table_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "table")
        for name in ("wood", "slate", "checker", "white"):
            h.materials[name] = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, "table_" + name)
        return h


def _link(name: str, length: float, radius: float, joint_rgba: str) -> str:
    """A link body centred on its midpoint, z along the link: capsule style (group 1), box style (2)."""
    half = length / 2
    return f"""
    <body name="{name}" mocap="true">
      <geom type="capsule" size="{radius} {half}" rgba="0.62 0.64 0.68 1" group="1" {_VIS}/>
      <geom type="sphere" size="{radius * 1.35}" pos="0 0 {-half}" rgba="0.95 0.50 0.10 1" group="1" {_VIS}/>
      <geom type="box" size="{radius * 1.1} {radius * 0.8} {half}" rgba="0.15 0.35 0.85 1" group="2" {_VIS}/>
      <geom type="box" size="{radius * 1.4} {radius * 1.4} {radius * 1.4}" pos="0 0 {-half}" rgba="{joint_rgba}"
            group="2" {_VIS}/>
    </body>"""


_VIS = 'contype="0" conaffinity="0"'


def _objects_xml() -> str:
    cubes = []
    for obj, (shape, rgba) in OBJECTS.items():
        size = f"{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" if shape == "box" else f"{CUBE_HALF} {CUBE_HALF}"
        cubes.append(f"""
    <body name="{body_name(obj)}" pos="0 0 {CUBE_HALF}">
      <freejoint/>
      <geom name="{body_name(obj)}" type="{shape}" size="{size}" rgba="{" ".join(map(str, rgba))}" mass="0.05"
            friction="0.7 0.01 0.001" condim="4"/>
    </body>""")
    return "".join(cubes)


def _bin_walls_xml() -> str:
    w, h_, t = BIN_INNER_HALF, BIN_HEIGHT / 2, BIN_WALL
    return "\n".join(
        f'<geom type="box" size="{sx} {sy} {h_}" pos="{px} {py} {h_}" rgba="0.30 0.30 0.33 1"/>'
        for sx, sy, px, py in [(t, w + 2 * t, w + t, 0), (t, w + 2 * t, -w - t, 0), (w, t, 0, w + t), (w, t, 0, -w - t)]
    )


def _header_xml(offscreen: int) -> str:
    """The model's options, rendering settings and table materials (everything before the worldbody)."""
    return f"""
<mujoco model="toyworld">
  <compiler angle="radian"/>
  <option timestep="0.004" gravity="0 0 -9.81" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{offscreen}" offheight="{offscreen}" fovy="40"/>
    <quality shadowsize="512" offsamples="4"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.35 0.35 0.35" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="wood" type="2d" builtin="flat" rgb1="0.66 0.52 0.38" rgb2="0.60 0.46 0.32" mark="random"
             random="0.08" markrgb="0.52 0.40 0.28" width="128" height="128"/>
    <texture name="checker" type="2d" builtin="checker" rgb1="0.88 0.88 0.88" rgb2="0.45 0.45 0.48" width="256"
             height="256"/>
    <material name="table_wood" texture="wood" texrepeat="2 2" rgba="1 1 1 1"/>
    <material name="table_slate" rgba="0.22 0.24 0.27 1" specular="0.2"/>
    <material name="table_checker" texture="checker" texrepeat="6 4" rgba="1 1 1 1"/>
    <material name="table_white" rgba="0.82 0.84 0.80 1"/>
  </asset>"""


def _room_xml() -> str:
    """Light, floor, backdrop, table and the front camera."""
    sx, sy = TABLE_HALF
    return f"""    <light name="key" pos="0.3 -0.5 1.2" dir="-0.25 0.4 -1" directional="true" castshadow="true"
           diffuse="0.75 0.75 0.72"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" rgba="0.35 0.35 0.38 1" {_VIS}/>
    <geom name="backdrop" type="box" size="3 0.02 1.5" pos="0 1.1 0" rgba="0.55 0.62 0.70 1" {_VIS}/>
    <geom name="table" type="box" size="{sx} {sy} 0.03" pos="0 0.07 -0.03" material="table_wood"/>
    <geom name="table_leg1" type="box" size="0.03 0.03 0.36" pos="{sx - 0.05} {sy + 0.01} -0.4"
          rgba="0.3 0.3 0.3 1" {_VIS}/>
    <geom name="table_leg2" type="box" size="0.03 0.03 0.36" pos="{-sx + 0.05} {sy + 0.01} -0.4"
          rgba="0.3 0.3 0.3 1" {_VIS}/>
    <camera name="front" pos="{CAMERA_POS[0]} {CAMERA_POS[1]} {CAMERA_POS[2]}" xyaxes="{_camera_xyaxes()}" fovy="{CAMERA_FOVY}"/>"""


def _robot_xml() -> str:
    """The fixed base and column, the mocap links, palm and fingers."""
    fx, fy, fz = FINGER_HALF
    return f"""    <!-- robot base and column (fixed); the yawing shoulder and links are mocap bodies -->
    <geom type="cylinder" size="0.07 0.02" pos="{ARM_BASE[0]} {ARM_BASE[1]} 0.02" rgba="0.2 0.2 0.22 1" group="1" {_VIS}/>
    <geom type="box" size="0.07 0.07 0.02" pos="{ARM_BASE[0]} {ARM_BASE[1]} 0.02" rgba="0.9 0.9 0.92 1" group="2" {_VIS}/>
    <geom type="cylinder" size="0.04 {SHOULDER_HEIGHT / 2}" pos="{ARM_BASE[0]} {ARM_BASE[1]} {SHOULDER_HEIGHT / 2}"
          rgba="0.62 0.64 0.68 1" group="1" {_VIS}/>
    <geom type="box" size="0.045 0.045 {SHOULDER_HEIGHT / 2}" pos="{ARM_BASE[0]} {ARM_BASE[1]} {SHOULDER_HEIGHT / 2}"
          rgba="0.15 0.35 0.85 1" group="2" {_VIS}/>
    {_link("upper_arm", UPPER_ARM, 0.026, "0.92 0.92 0.92 1")}
    {_link("forearm", FOREARM, 0.021, "0.92 0.92 0.92 1")}
    {_link("wrist", WRIST_ABOVE_EE - PALM_Z - 0.012, 0.015, "0.92 0.92 0.92 1")}
    <body name="palm" mocap="true" pos="{HOME_EE[0]} {HOME_EE[1]} {HOME_EE[2] + PALM_Z}">
      <geom name="palm" type="box" size="{GRIPPER_OPEN_GAP / 2 + 2 * fx} 0.018 0.012" rgba="0.2 0.2 0.22 1"/>
    </body>
    <body name="finger_left" mocap="true">
      <geom name="finger_left" type="box" size="{fx} {fy} {fz}" rgba="0.15 0.15 0.17 1" friction="1.0 0.02 0.001"
                solref="0.008 1"/>
    </body>
    <body name="finger_right" mocap="true">
      <geom name="finger_right" type="box" size="{fx} {fy} {fz}" rgba="0.15 0.15 0.17 1" friction="1.0 0.02 0.001"
                solref="0.008 1"/>
    </body>"""


def _fixtures_xml(cubes: str, bin_geoms: str) -> str:
    """The plate, the bin and the cubes."""
    w, t = BIN_INNER_HALF, BIN_WALL
    return f"""    <body name="plate" mocap="true" pos="0 0 0">
      <geom name="plate" type="cylinder" size="{PLATE_RADIUS} {PLATE_TOP / 2}" pos="0 0 {PLATE_TOP / 2}"
            rgba="0.55 0.62 0.80 1"/>
      <geom type="cylinder" size="{PLATE_RADIUS * 0.75} 0.0005" pos="0 0 {PLATE_TOP + 0.0005}" rgba="0.97 0.97 0.97 1"
            {_VIS}/>
    </body>
    <body name="bin" mocap="true" pos="0 0 0">
      <geom name="bin_floor" type="box" size="{w + 2 * t} {w + 2 * t} {BIN_FLOOR_TOP / 2}" pos="0 0 {BIN_FLOOR_TOP / 2}"
            rgba="0.25 0.25 0.28 1"/>
      {bin_geoms}
    </body>
    {cubes}"""


def _distractors_xml() -> str:
    return f"""    <!-- distractors: static, never touched, drawn only in the 'distractors' environment -->
    <geom type="sphere" size="0.03" pos="-0.33 0.22 0.03" rgba="0.6 0.2 0.7 1" group="{DISTRACTOR_GROUP}" {_VIS}/>
    <geom type="box" size="0.025 0.04 0.035" pos="0.33 0.20 0.035" rgba="1.0 0.5 0.1 1" group="{DISTRACTOR_GROUP}"
          {_VIS}/>
    <geom type="cylinder" size="0.025 0.05" pos="-0.34 -0.18 0.05" rgba="0.1 0.7 0.7 1" group="{DISTRACTOR_GROUP}"
          {_VIS}/>
    <geom type="box" size="0.05 0.03 0.008" pos="0.32 -0.20 0.008" rgba="0.9 0.9 0.2 1" group="{DISTRACTOR_GROUP}"
          {_VIS}/>"""


def build_xml(offscreen: int = 512) -> str:
    body = "\n\n".join([_room_xml(), _robot_xml(), _fixtures_xml(_objects_xml(), _bin_walls_xml()),
                         _distractors_xml()])
    return f"""{_header_xml(offscreen)}
  <worldbody>
{body}
  </worldbody>
</mujoco>
"""


def build_model(offscreen: int = 512) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(build_xml(offscreen))


def apply_visual_env(model: mujoco.MjModel, handles: SceneHandles, env: VisualEnv) -> None:
    model.geom_matid[handles.table_geom] = handles.materials[env.table_material]
    model.geom_rgba[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "backdrop")] = env.backdrop_rgba
    model.geom_rgba[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")] = env.floor_rgba
    model.light_diffuse[0] = env.light_diffuse
    model.light_ambient[0] = env.light_ambient
    model.vis.headlight.diffuse[:] = env.headlight
    model.vis.headlight.ambient[:] = env.headlight * 0.8


def apply_arm_style(model: mujoco.MjModel, style: ArmStyle) -> None:
    for name in ("finger_left", "finger_right"):
        model.geom_rgba[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)] = style.gripper_rgba
    model.geom_rgba[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "palm")] = style.palm_rgba


def scene_option(env: VisualEnv, style: ArmStyle) -> mujoco.MjvOption:
    opt = mujoco.MjvOption()
    opt.geomgroup[:] = 0
    opt.geomgroup[0] = 1
    if style.link_group is not None:
        opt.geomgroup[style.link_group] = 1
    opt.geomgroup[DISTRACTOR_GROUP] = 1 if env.distractors else 0
    return opt


# ----- kinematics -------------------------------------------------------------------------------
def arm_pose(ee: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Closed-form IK (base yaw + 2-link elbow-up arm + vertical wrist): link name -> (pos, quat)."""
    shoulder = ARM_BASE + np.array([0.0, 0.0, SHOULDER_HEIGHT])
    wrist = ee + np.array([0.0, 0.0, WRIST_ABOVE_EE])
    horiz = wrist[:2] - shoulder[:2]
    r = float(np.linalg.norm(horiz))
    u = horiz / r if r > 1e-9 else np.array([0.0, -1.0])
    dz = wrist[2] - shoulder[2]
    d = min(float(np.hypot(r, dz)), UPPER_ARM + FOREARM - 1e-6)
    d = max(d, abs(UPPER_ARM - FOREARM) + 1e-6)
    cos_b = (UPPER_ARM**2 + d**2 - FOREARM**2) / (2 * UPPER_ARM * d)
    theta = np.arctan2(dz, r) + np.arccos(np.clip(cos_b, -1.0, 1.0))
    elbow = shoulder + UPPER_ARM * np.array([np.cos(theta) * u[0], np.cos(theta) * u[1], np.sin(theta)])
    # the forearm ends at the wrist when reachable; otherwise it points at it (never happens in the workspace)
    fdir = wrist - elbow
    fdir = fdir / max(np.linalg.norm(fdir), 1e-9)
    wrist_reached = elbow + FOREARM * fdir
    palm_top = ee + np.array([0.0, 0.0, PALM_Z + 0.012])
    out = {}
    for name, a, b in (("upper_arm", shoulder, elbow), ("forearm", elbow, wrist_reached), ("wrist", wrist, palm_top)):
        quat = np.zeros(4)
        vec = (b - a).astype(np.float64)
        mujoco.mju_quatZ2Vec(quat, vec / max(np.linalg.norm(vec), 1e-9))
        out[name] = ((a + b) / 2.0, quat)
    return out


def gripper_pose(ee: np.ndarray, gap: float) -> dict[str, np.ndarray]:
    half = gap / 2 + FINGER_HALF[0]
    fz = FINGER_HALF[2]
    return {
        "palm": ee + np.array([0.0, 0.0, PALM_Z]),
        "finger_left": ee + np.array([-half, 0.0, fz]),
        "finger_right": ee + np.array([half, 0.0, fz]),
    }


# ----- rendering --------------------------------------------------------------------------------
def make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """An offscreen renderer, with an actionable error when no GL backend is available."""
    backend = os.environ.get("MUJOCO_GL", "")
    try:
        renderer = mujoco.Renderer(model, height=height, width=width)
        if not _LIVE_RENDERERS_HOOKED:
            # registered after EGL's own eglTerminate hook, so it runs first (atexit is LIFO)
            atexit.register(_close_renderers)
            _LIVE_RENDERERS_HOOKED.append(True)
        _LIVE_RENDERERS.add(renderer)
        return renderer
    except ValueError as exc:  # size larger than the offscreen buffer
        raise DreamgenError(f"ToyWorld image size {height}x{width} is not supported: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - GL/EGL failures come as many types
        raise DreamgenError(
            f"ToyWorld could not open an offscreen OpenGL context (MUJOCO_GL={backend or 'unset'}): {exc}. "
            "Headless rendering needs EGL: install it (Debian/Ubuntu: `apt-get install libegl1 libgl1-mesa-dri`) "
            "and set MUJOCO_GL=egl before anything imports mujoco, or install OSMesa (`apt-get install libosmesa6`) "
            "and set MUJOCO_GL=osmesa."
        ) from None


_LIVE_RENDERERS: weakref.WeakSet = weakref.WeakSet()
_LIVE_RENDERERS_HOOKED: list[bool] = []


def _close_renderers() -> None:
    # GL contexts freed during interpreter teardown print EGL errors: free them while EGL is still loaded
    for r in list(_LIVE_RENDERERS):
        try:
            r.close()
        except Exception:  # noqa: BLE001
            pass
