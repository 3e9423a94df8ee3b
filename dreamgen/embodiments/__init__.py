from dreamgen.embodiments.embodiment import Embodiment, IDMDataConfig
from dreamgen.embodiments.registry import (
    builtin_names,
    get_embodiment,
    load_embodiment_file,
    load_embodiment_folder,
)

__all__ = [
    "Embodiment",
    "IDMDataConfig",
    "builtin_names",
    "get_embodiment",
    "load_embodiment_file",
    "load_embodiment_folder",
]
