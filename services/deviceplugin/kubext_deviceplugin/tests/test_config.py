"""Bad config stops the plugin with one line naming the key; the health and metrics endpoints."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import prometheus_client
import pytest

from kubext import config as kconfig
from kubext import health

from .. import __main__ as entry
from .. import config
from .fake_kubelet import FakeKubelet


@pytest.mark.parametrize(
    ("data", "says"),
    [
        pytest.param(
            {"resources": [{"name": "example.com/gpu"}, {"name": "example.com/gpu"}]},
            "duplicate resource names: example.com/gpu",
            id="duplicate-names",
        ),
        pytest.param({"resources": [{"name": "gpu"}]}, "resources.0.name", id="bad-name"),
        pytest.param(
            {"resources": [{"simulated": {"count": 0}}]}, "simulated.count", id="zero-count"
        ),
        pytest.param(
            {"resources": [{"simulated": {"id_prefix": "x" * 63}}]},
            "longer than 63",
            id="id-over-63",
        ),
        pytest.param(
            {"resources": [{"backend": "generic"}]}, "needs at least one group", id="no-groups"
        ),
        pytest.param(
            {"resources": [{"backend": "generic", "generic": {"groups": [{"name": "a", "paths": [{"path": "dev/x"}]}]}}]},
            "absolute path",
            id="relative-path",
        ),
        pytest.param({"scan_interval": 5}, "scan_interval", id="slow-scan"),
    ],
)  # fmt: skip
def test_bad_config_is_one_line_naming_it(tmp_path: Path, data: dict, says: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(kconfig.ConfigError) as err:
        kconfig.load(config.Config, path=path)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_path_pattern_matching_nothing_stops_the_plugin(tmp_path: Path, capsys) -> None:
    cfg = config.Config.model_validate(
        {
            "resources": [
                {
                    "backend": "generic",
                    "generic": {"root": str(tmp_path), "groups": [{"name": "x", "paths": [{"path": "/dev/nope*"}]}]},
                }
            ]
        }
    )  # fmt: skip
    assert entry.serve(cfg) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such path: /dev/nope*" in err


def test_readiness_and_metrics_follow_registration() -> None:
    root = Path(tempfile.mkdtemp(prefix="dp-", dir="/tmp"))
    try:
        cfg = config.Config.model_validate({"device_plugin_dir": str(root)})
        plugins = entry.build_plugins(cfg)
        stop = threading.Event()
        server = health.HealthServer(port=0, ready=entry.readiness(plugins)).start()
        url = f"http://127.0.0.1:{server.port}"
        threads = entry.start(plugins, stop)
        try:
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + "/readyz", timeout=5)
            assert err.value.code == 503
            assert b"not registered with the kubelet: example.com/gpu" in err.value.read()
            kubelet = FakeKubelet(root).start()
            kubelet.next_registration()
            assert plugins[0].registered.wait(2)
            assert urllib.request.urlopen(url + "/readyz", timeout=5).status == 200
            kubelet.stop()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5)
            server.stop()
        sample = prometheus_client.REGISTRY.get_sample_value
        labels = {"resource": "example.com/gpu"}
        assert sample("kubext_deviceplugin_devices", {**labels, "health": "Healthy"}) == 2
        assert sample("kubext_deviceplugin_registrations_total", {**labels, "result": "ok"}) >= 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
