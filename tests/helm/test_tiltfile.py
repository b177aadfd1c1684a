"""The Tiltfile, run with recording stand-ins for Tilt's builtins: for every service it builds
the pex with Pants, the image from the service's Dockerfile over dist/, and deploys the chart
with that image, waiting for the pex before the workloads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


def run_tiltfile(**given: Any) -> Recorder:
    recorder = Recorder()

    def fail(message: str) -> None:
        raise TiltFail(message)

    builtins = {
        "config": FakeConfig(given),
        "read_file": read_file,
        "blob": lambda text: text,
        "fail": fail,
        "helm": recorder.builtin("helm", lambda path, **kw: ("rendered", path)),
        **{
            name: recorder.builtin(name)
            for name in (
                "local",
                "watch_file",
                "watch_settings",
                "local_resource",
                "docker_build",
                "k8s_yaml",
                "k8s_resource",
                "allow_k8s_contexts",
            )
        },
    }
    exec(compile(TILTFILE.read_text(), str(TILTFILE), "exec"), builtins)
    return recorder


@pytest.mark.parametrize("svc", CHARTS)
def test_every_service_builds_its_pex_its_image_and_deploys_its_chart(svc: str) -> None:
    tilt = run_tiltfile()
    pex = f"kubext-{svc}.pex"  # the output_path of services/<svc>:bin, which the Dockerfile copies
    (local,) = (k for a, k in tilt.of("local_resource") if a == (f"{svc}-pex",))
    assert local["cmd"] == f"./pants package services/{svc}:bin"
    assert f"services/{svc}" in local["deps"] and "libs" in local["deps"]

    (image,) = (k for a, k in tilt.of("docker_build") if a == (f"kubext/{svc}",))
    assert image["context"] == "dist"
    assert image["dockerfile"] == f"services/{svc}/Dockerfile"
    assert image["only"] == [pex]
    assert image["build_args"] == {"VERSION": cli.read_version(f"kubext_{svc}")}

    (chart,) = (k | {"path": a[0]} for a, k in tilt.of("helm") if a == (f"helm/{svc}",))
    assert (REPO / chart["path"] / "Chart.yaml").is_file()
    assert f"image.repository=kubext/{svc}" in chart["set"]
    assert ("rendered", f"helm/{svc}") in [a[0] for a, _ in tilt.of("k8s_yaml")]


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


def test_tilt_waits_for_the_pex_before_each_workload_the_charts_render(helm: Helm) -> None:
    tilt = run_tiltfile()
    resources = {a[0]: k for a, k in tilt.of("k8s_resource")}
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
        for name in named:
            assert resources[name]["resource_deps"] == [f"{svc}-pex"]


def test_services_can_be_chosen_and_a_typo_is_refused() -> None:
    tilt = run_tiltfile(services=["operator", "webhooks"], namespace="dev")
    assert [a[0] for a, _ in tilt.of("helm")] == ["helm/operator", "helm/webhooks"]
    assert {k["namespace"] for _, k in tilt.of("helm")} == {"dev"}
    with pytest.raises(TiltFail, match="unknown service 'operater'"):
        run_tiltfile(services=["operater"])


def test_the_charts_directory_has_a_chart_per_service_and_the_library() -> None:
    charts = {p.name for p in CHARTS_DIR.iterdir() if (p / "Chart.yaml").is_file()}
    assert charts == {*CHARTS, helmcharts.LIBRARY}
