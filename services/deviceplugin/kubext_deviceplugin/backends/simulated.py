"""The seed's simulated devices (``gpu-0``, ``gpu-1`` ...), for demos and tests.

They have no device node: a container that gets one sees only the env listing its IDs, so a pod
runs on any node. All are healthy; allocation does not change that.
"""

from __future__ import annotations

from ..config import SimulatedConfig
from ..core import model


class Simulated:
    def __init__(self, cfg: SimulatedConfig) -> None:
        self._inventory = model.Inventory.of(
            [model.Device(f"{cfg.id_prefix}{i}") for i in range(cfg.count)]
        )

    def scan(self) -> model.Inventory:
        return self._inventory

    def close(self) -> None:
        pass
