"""The built-in world-model backbones, found by name: `backbone_class("cosmos2")`.

Each backbone module registers its class (`@register_backbone`) when imported; this module imports the
built-in ones (Cosmos-Predict2 Video2World, Cosmos-Predict2.5, Wan 2.1 I2V) on first use, so that `import dreamgen` stays
free of diffusers until a model is built or loaded.
"""

from __future__ import annotations

from dreamgen.worldmodel.backbone import Backbone, registered_backbone


def backbone_class(kind: str) -> type[Backbone]:
    from dreamgen.worldmodel import cosmos2, cosmos2_5, wan  # noqa: F401  (importing registers them)

    return registered_backbone(kind)
