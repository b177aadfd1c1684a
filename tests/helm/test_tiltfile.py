"""The Tiltfile, run with recording stand-ins for Tilt's builtins (helm() renders with the real
helm where a test asks): for every service Pants builds the image and tools/tilt/image.sh pushes
it, the chart is deployed with that image and with the dev loop (tools/tilt/dev_loop.py) in front
of the service's pex, Python sources live-update, the operator waits for the webhooks. The real
tilt runs it in test_tilt_real_node.py."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helmcharts  # pants: no-infer-dep
import pytest
from helmcharts import CHARTS, CHARTS_DIR, REPO, Helm  # pants: no-infer-dep

from kubext import cli

TILTFILE = REPO / "Tiltfile"


class TiltFail(Exception):
    pass


@dataclass
class FakeConfig:
    """Tilt's `config` module: the args given after `tilt up --`."""

    given: dict[str, Any]
    defined: list[str] = field(default_factory=list)

    def define_string_list(self, name: str, args: bool = False, usage: str = "") -> None:
        self.defined.append(name)

    def define_string(self, name: str, args: bool = False, usage: str = "") -> None:
        self.defined.append(name)

    def parse(self) -> dict[str, Any]:
        unknown = set(self.given) - set(self.defined)
        assert not unknown, f"the Tiltfile does not define {unknown}"
        return dict(self.given)


@dataclass
class Recorder:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def builtin(self, name: str, result: Any = None) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return result(*args, **kwargs) if callable(result) else result

        return call

    def of(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, k) for n, a, k in self.calls if n == name]


VERSION_FILE = re.compile(r"services/(\w+)/kubext_\1/VERSION")


def read_file(path: str) -> str:
    """Tilt's read_file, from the checkout. A service's VERSION is read through its package:
    it ships as a resource, which is not where the checkout has it in a Pants sandbox."""
    found = VERSION_FILE.fullmatch(path)
    if found:
        return cli.read_version(f"kubext_{found.group(1)}") + "\n"
    return (REPO / path).read_text()


def run_tiltfile(helm: Helm | None = None, **given: Any) -> Recorder:
    """Runs the Tiltfile; with ``helm``, its helm() calls render the charts for real."""
    recorder = Recorder()

    def fail(message: str) -> None:
        raise TiltFail(message)

    def render(path: str, name: str, namespace: str, set: list[str]) -> Any:
        if helm is None:
            return [{"kind": "Rendered", "path": path}]
        chart = path.removeprefix("helm/")
        extra = [f"--set={v}" for v in set]
        return helm.template(chart, release=name, namespace=namespace, extra=extra).objects

    builtins = {
        "config": FakeConfig(given),
        "read_file": read_file,
        "blob": lambda text: text,
        "fail": fail,
        "helm": recorder.builtin("helm", render),
        "decode_yaml_stream": copy.deepcopy,
        "encode_yaml": lambda obj: obj,
        "encode_yaml_stream": lambda objs: ("stream", objs),
        "sync": lambda local, remote: ("sync", local, remote),
        "run": lambda cmd, **kw: ("run", cmd),
        "port_forward": lambda local, container, **kw: ("forward", local, container),
        **{
            name: recorder.builtin(name)
            for name in (
                "local",
                "watch_file",
                "watch_settings",
                "custom_build",
                "k8s_yaml",
                "k8s_resource",
                "allow_k8s_contexts",
                "default_registry",
                "update_settings",
            )
        },
    }
    exec(compile(TILTFILE.read_text(), str(TILTFILE), "exec"), builtins)
    return recorder


def deployed(tilt: Recorder, svc: str) -> list[dict[str, Any]]:
    """What the Tiltfile gave k8s_yaml for ``svc``'s chart (rendered, then dev-looped)."""
    streams = [a[0][1] for a, _ in tilt.of("k8s_yaml") if isinstance(a[0], tuple)]
    objs = [o for objs in streams for o in objs if o.get("metadata", {}).get("labels")]
    return [o for o in objs if o["metadata"]["labels"].get("app.kubernetes.io/name") == svc]


@pytest.mark.parametrize("svc", CHARTS)
def test_every_service_image_is_built_by_pants_pushed_and_live_updated(svc: str) -> None:
    tilt = run_tiltfile()
    version = cli.read_version(f"kubext_{svc}")
    (image,) = (k for a, k in tilt.of("custom_build") if a == (f"kubext/{svc}",))
    # image.sh runs `./pants package services/<svc>:image` and pushes localhost/kubext/<svc>:<v>.
    assert image["command"] == f"tools/tilt/image.sh {svc} {version}"
    assert {f"services/{svc}", "libs", "proto", "tools/tilt/image.sh"} <= set(image["deps"])
    assert image["skips_local_docker"] and image["disable_push"]
    assert image["live_update"] == [
        ("sync", f"services/{svc}/kubext_{svc}", f"/opt/kubext-dev/kubext_{svc}"),
        ("sync", "libs/kubext", "/opt/kubext-dev/kubext"),
        ("run", "touch /opt/kubext-dev/.restart"),
    ]
    (chart,) = (k | {"path": a[0]} for a, k in tilt.of("helm") if a == (f"helm/{svc}",))
    assert (REPO / chart["path"] / "Chart.yaml").is_file()
    assert f"image.repository=kubext/{svc}" in chart["set"]
    # One build at a time: every build is a `./pants` in the same checkout.
    assert tilt.of("update_settings") == [((), {"max_parallel_updates": 1})]


def test_the_dev_loop_runs_each_service_pex_from_its_configmap(helm: Helm) -> None:
    tilt = run_tiltfile(helm)
    (loop,) = (a[0] for a, _ in tilt.of("k8s_yaml") if isinstance(a[0], dict))
    assert loop["kind"] == "ConfigMap" and loop["metadata"]["name"] == "kubext-dev-loop"
    assert loop["data"]["dev_loop.py"] == (REPO / "tools/tilt/dev_loop.py").read_text()
    for svc in CHARTS:
        workloads = [o for o in deployed(tilt, svc) if o["kind"] in ("Deployment", "DaemonSet")]
        assert workloads, svc
        for w in workloads:
            pod = w["spec"]["template"]["spec"]
            ours = [c for c in pod["containers"] if c["image"].startswith(f"kubext/{svc}:")]
            others = [c for c in pod["containers"] if c not in ours]
            assert len(ours) == 1, (svc, [c["image"] for c in pod["containers"]])
            (c,) = ours
            assert c["command"] == [
                "python3.11",
                "/opt/kubext-dev-loop/dev_loop.py",
                "--pex",
                f"/app/kubext-{svc}.pex",
                "--src",
                "/opt/kubext-dev",
                "--",
            ]
            assert c["args"][:2] == ["--config", "/etc/kubext/config.yaml"]  # the chart's, kept
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert mounts["/opt/kubext-dev"] == "kubext-dev-src"
            assert mounts["/opt/kubext-dev-loop"] == "kubext-dev-loop"
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert volumes["kubext-dev-src"] == {"name": "kubext-dev-src", "emptyDir": {}}
            assert volumes["kubext-dev-loop"]["configMap"] == {"name": "kubext-dev-loop"}
            assert all("command" not in o for o in others), svc  # sidecars run as they are
            # Release "kubext": a Service kubext-<svc> would set KUBEXT_<SVC>_PORT=tcp://...
            assert pod["enableServiceLinks"] is False, svc
            assert "nodeSelector" not in pod or "kubernetes.io/hostname" not in pod["nodeSelector"]


def test_node_pins_every_pod_and_tolerates_its_taints(helm: Helm) -> None:
    tilt = run_tiltfile(helm, node="kubext-node-0", services=["operator", "scheduler"])
    for svc in ("operator", "scheduler"):
        for w in [o for o in deployed(tilt, svc) if o["kind"] == "Deployment"]:
            pod = w["spec"]["template"]["spec"]
            assert pod["nodeSelector"] == {"kubernetes.io/hostname": "kubext-node-0"}
            assert {"operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_registry_and_context_are_the_users(helm: Helm) -> None:
    tilt = run_tiltfile(registry="registry.example.com:5000", **{"allow-context": "mine"})
    assert tilt.of("default_registry") == [(("registry.example.com:5000",), {})]
    assert tilt.of("allow_k8s_contexts") == [(("mine",), {})]
    assert run_tiltfile().of("default_registry") == []  # else the cluster's advertised one


def test_the_operator_waits_for_the_webhooks_and_health_is_forwarded(helm: Helm) -> None:
    tilt = run_tiltfile(helm)
    resources = {a[0]: k for a, k in tilt.of("k8s_resource") if a}
    assert set(resources["kubext-operator"]["resource_deps"]) == {
        "kubext-dev-loop",
        "kubext-webhooks",
    }
    assert resources["kubext-webhooks"]["resource_deps"] == ["kubext-dev-loop"]
    forwards = [f for k in resources.values() for f in k["port_forwards"]]
    assert all(f[2] == 8080 for f in forwards)
    assert len({f[1] for f in forwards}) == len(forwards)  # a local port each
    for svc in CHARTS:
        chart = next(k for a, k in tilt.of("helm") if a == (f"helm/{svc}",))
        values = dict(s.split("=", 1) for s in chart["set"])
        rendered = helm.template(
            svc,
            release=chart["name"],
            namespace=chart["namespace"],
            extra=[f"--set={k}={v}" for k, v in values.items()],
        )
        workloads = {w["metadata"]["name"] for w in rendered.workloads()}
        named = {name for name, k in resources.items() if k["labels"] == [svc]}
        assert named == workloads, svc
    # Without the webhooks the operator waits only for the dev loop.
    alone = run_tiltfile(services=["operator"])
    ((_, op),) = ((a, k) for a, k in alone.of("k8s_resource") if a == ("kubext-operator",))
    assert op["resource_deps"] == ["kubext-dev-loop"]


def test_each_chart_has_the_library_built_in_before_tilt_renders_it() -> None:
    """Tilt's helm() reads the chart directory as it is: the library must already be in its
    charts/, and a change to the library must run the Tiltfile (and so the build) again."""
    tilt = run_tiltfile()
    for svc in CHARTS:
        build = ("local", (f"helm dependency build --skip-refresh helm/{svc}",))
        calls = [(name, args) for name, args, _ in tilt.calls]
        assert build in calls, svc
        render = next(i for i, (name, args) in enumerate(calls) if args == (f"helm/{svc}",))
        assert calls.index(build) < render, svc
    assert ((f"helm/{helmcharts.LIBRARY}",), {}) in tilt.of("watch_file")
    # What the build writes into the charts is ignored, so it does not run the Tiltfile again.
    ((_, settings),) = tilt.of("watch_settings")
    assert {"helm/*/charts", "helm/*/Chart.lock"} <= set(settings["ignore"])


def test_services_can_be_chosen_and_a_typo_is_refused() -> None:
    tilt = run_tiltfile(services=["operator", "webhooks"], namespace="dev")
    assert [a[0] for a, _ in tilt.of("helm")] == ["helm/operator", "helm/webhooks"]
    assert {k["namespace"] for _, k in tilt.of("helm")} == {"dev"}
    with pytest.raises(TiltFail, match="unknown service 'operater'"):
        run_tiltfile(services=["operater"])


def test_the_charts_directory_has_a_chart_per_service_and_the_library() -> None:
    charts = {p.name for p in CHARTS_DIR.iterdir() if (p / "Chart.yaml").is_file()}
    assert charts == {*CHARTS, helmcharts.LIBRARY}


FAKE_TOOLS = {
    "pants": '#!/bin/sh\necho "pants $*" >> "$LOG"\n',
    "bin/podman": '#!/bin/sh\necho "podman $*" >> "$LOG"\n',
}


def _image_sh(tmp_path: Path, ref: str | None) -> tuple[subprocess.CompletedProcess[str], str]:
    """tools/tilt/image.sh with stand-ins for ./pants and podman that log their arguments."""
    for name, text in FAKE_TOOLS.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    env = {**os.environ, "LOG": str(log), "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    env.pop("EXPECTED_REF", None)
    if ref:
        env["EXPECTED_REF"] = ref
    script = REPO / "tools" / "tilt" / "image.sh"
    res = subprocess.run(
        ["bash", str(script), "operator", "0.1.0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    return res, log.read_text()


@pytest.mark.parametrize(
    ("ref", "tls"),
    [
        ("127.0.0.1:16000/kubext_operator:tilt-build-1", "false"),  # the rig's, plain HTTP
        ("localhost:5001/kubext_operator:tilt-build-1", "false"),  # kind's local registry
        ("registry.example.com/team/kubext_operator:tilt-build-1", "true"),
    ],
)
def test_image_sh_builds_with_pants_tags_and_pushes_the_expected_ref(
    tmp_path: Path, ref: str, tls: str
) -> None:
    res, log = _image_sh(tmp_path, ref)
    assert res.returncode == 0, res.stderr
    assert log.splitlines() == [
        "pants --no-dynamic-ui -lerror package services/operator:image",
        f"podman tag localhost/kubext/operator:0.1.0 {ref}",
        f"podman push --quiet --tls-verify={tls} {ref}",
    ]


def test_image_sh_refuses_a_ref_without_a_registry(tmp_path: Path) -> None:
    res, log = _image_sh(tmp_path, "kubext/operator:tilt-build-1")
    assert res.returncode == 2 and "names no registry" in res.stderr
    assert log == ""  # nothing built, nothing pushed to docker.io
    res, _ = _image_sh(tmp_path, None)
    assert res.returncode != 0 and "EXPECTED_REF" in res.stderr
