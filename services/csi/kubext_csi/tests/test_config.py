"""Config keys of the driver: sizes as Kubernetes quantities, endpoint and node id fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubext import config as kconfig

from .. import __main__ as entry
from .. import config


def test_sizes_are_quantities() -> None:
    cfg = config.Config.model_validate({"pool_size": "2Ti", "default_volume_size": "512Mi"})
    assert cfg.pool_size == 2 << 40 and cfg.default_volume_size == 512 << 20


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"pool_size": "lots"}, "pool_size"),
        ({"pool_size": "0"}, "pool_size"),
        ({"endpoint": "tcp://1.2.3.4:5"}, "endpoint"),
        ({"driver_name": "Not_A_Name"}, "driver_name"),
        ({"path_roots": ["relative"]}, "path_roots"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: dict, key: str) -> None:
    path = tmp_path / "c.json"
    import json

    path.write_text(json.dumps(data))
    with pytest.raises(kconfig.ConfigError) as err:
        kconfig.load(config.Config, path=path)
    assert f": {key}" in str(err.value)


def test_node_id_falls_back_to_the_environment() -> None:
    cfg = config.Config()
    assert entry.settings_from(cfg, {"NODE_ID": "n1", "KUBE_NODE_NAME": "n2"}).node_id == "n1"
    assert entry.settings_from(cfg, {"KUBE_NODE_NAME": "n2"}).node_id == "n2"
    assert entry.settings_from(config.Config(node_id="x"), {"NODE_ID": "n1"}).node_id == "x"
    settings = entry.settings_from(cfg, {})
    assert settings.max_volume_bytes == cfg.pool_size
    assert settings.topology == {"topology.csi.kubext.io/node": settings.node_id}


def test_missing_endpoint_is_one_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv("CSI_ENDPOINT", raising=False)
    assert entry.serve(config.Config()) == 2
    assert "CSI_ENDPOINT" in capsys.readouterr().err


def test_attachable_node_ids_reach_the_driver() -> None:
    cfg = config.Config(node_id="a", attachable_node_ids=["b", "c"])
    settings = entry.settings_from(cfg, {})
    assert settings.attachable_node_ids == ("b", "c")
    assert [settings.knows_node(n) for n in ("a", "b", "z")] == [True, True, False]
