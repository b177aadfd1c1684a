"""Every chart lints strictly and renders, with its defaults and with non-default values, into
objects that follow the project's conventions and stay in step with the services' code."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import helmcharts  # pants: no-infer-dep
import pytest
import values_schema  # pants: no-infer-dep
import yaml
from helmcharts import CHARTS, CHARTS_DIR, REPO, Helm, HelmError, Rendered  # pants: no-infer-dep

from kubext import cli
from kubext_cni import config as cni_config
from kubext_cni import install as cni_install
from kubext_csi import config as csi_config
from kubext_csi import provisioner as csi_provisioner
from kubext_csi import validation as csi_validation
from kubext_deviceplugin import config as deviceplugin_config
from kubext_operator import config as operator_config
from kubext_rig import node as rig_node
from kubext_rig import releases
from kubext_scheduler import config as scheduler_config
from kubext_scheduler import profiles_file as scheduler_profiles
from kubext_webhooks import config as webhooks_config
from kubext_webhooks import manifests as webhook_manifests
from kubext_webhooks import policy as webhooks_policy

CONFIG_MODELS = {
    "operator": operator_config.Config,
    "webhooks": webhooks_config.Config,
    "scheduler": scheduler_config.Config,
    "cni": cni_config.Config,
    "csi": csi_config.Config,
    "deviceplugin": deviceplugin_config.Config,
}

# Values that move every knob the templates read, per chart.
CUSTOM: dict[str, dict[str, Any]] = {
    "operator": {
        "replicas": 3,
        "image": {"tag": "dev-1"},
        "config": {
            "log_level": "debug",
            "health": {"port": 9090},
            "namespaces": ["team-a", "team-b"],
            "leader_election": {"lease_duration_seconds": 30, "renew_deadline_seconds": 20},
        },
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/team": "platform"},
    },
    "webhooks": {
        "replicas": 3,
        "config": {"log_level": "debug", "port": 9443, "health": {"port": 9090}},
        "webhooks": {
            "databases": {"enabled": False},
            "excludeNamespaces": ["monitoring"],
            "namespaceSelector": {"matchLabels": {"kubext.io/webhooks": "enabled"}},
            "failurePolicy": "Ignore",
            "timeoutSeconds": 3,
        },
        "conversion": {"injectCABundle": False},
    },
    "scheduler": {
        "image": {"tag": "dev-2"},
        "config": {"log_level": "debug", "health": {"port": 9092}},
        "schedulerName": "team-scheduler",
        "mode": "extender",
        "extender": {"port": 9888, "weight": 5, "managedResources": [{"name": "example.com/gpu"}]},
        "profiles": [
            {
                "schedulerName": "team-scheduler",
                "plugins": {"filter": {"enabled": [{"name": "NodeResourceFit"}]}},
            }
        ],
    },
    "cni": {
        "config": {"health": {"port": 9190}, "socket_path": "/var/run/kubext/cni.sock"},
        "hostPID": False,
        "cni": {
            "binDir": "/usr/libexec/cni",
            "hostPython": "/usr/local/bin/python3.12",
            "confName": "05-kubext.conflist",
            "plugin": {
                "bridge": "kube0",
                "mtu": 9000,
                "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"},
            },
            "chain": [],
        },
    },
    "csi": {
        "config": {"driver_name": "local.csi.example.org", "state_dir": "/data/kubext-csi"},
        "kubeletDir": "/var/lib/k0s/kubelet",
        "csiDriver": {"attachRequired": True, "storageCapacity": False},
        "storageClass": {"name": "fast-local", "isDefault": True, "allowVolumeExpansion": True},
        "sidecars": {"snapshotter": {"enabled": False}, "resizer": {"enabled": True}},
    },
    "deviceplugin": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "config": {"health": {"port": 9091}},
        "nodeSelector": {"accelerator": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}
# The containers of each chart that run the service itself (the rest are upstream sidecars).
SERVICE_CONTAINERS = {"operator", "webhooks", "scheduler", "cni", "csi-driver", "deviceplugin"}
# Workloads whose service container must be privileged; every other one is restricted.
PRIVILEGED = {"cni": {"DaemonSet"}, "csi": {"DaemonSet"}, "deviceplugin": {"DaemonSet"}}
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "StorageClass",
    "VolumeSnapshotClass",
    "VolumeAttributesClass",
    "VolumeGroupSnapshotClass",
    "CSIDriver",
}
VARIANTS = [(chart, variant) for chart in CHARTS for variant in ("default", "custom")]
RELEASE, NAMESPACE = "rel", "ns-charts"


def render(helm: Helm, chart: str, variant: str) -> Rendered:
    return helm.template(
        chart,
        release=RELEASE,
        namespace=NAMESPACE,
        values=CUSTOM[chart] if variant == "custom" else None,
    )


def service_config(rendered: Rendered, chart: str) -> Any:
    """The rendered config.yaml, validated by the service's own model (as the service would)."""
    data = rendered.config(f"{RELEASE}-{chart}-config")
    return CONFIG_MODELS[chart].model_validate(data)


def pod_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def service_container(workload: dict[str, Any]) -> dict[str, Any]:
    (found,) = (
        c
        for c in workload["spec"]["template"]["spec"]["containers"]
        if c["name"] in SERVICE_CONTAINERS
    )
    return found


def rules_allow(
    rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str | None = None
) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and resource in r.get("resources", [])
        and verb in r.get("verbs", [])
        and (not r.get("resourceNames") or name in r["resourceNames"])
        for r in rules
    )


# --- metadata, lint, shared helpers ----------------------------------------------------------


@pytest.mark.parametrize("chart", CHARTS)
def test_chart_version_is_the_service_version(chart: str) -> None:
    meta = yaml.safe_load((CHARTS_DIR / chart / "Chart.yaml").read_text())
    version = cli.read_version(f"kubext_{chart}")
    assert (meta["apiVersion"], meta["name"]) == ("v2", chart)
    assert meta["version"] == version
    assert meta["appVersion"] == version
    assert meta["kubeVersion"] == ">=1.30.0-0"


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_lint_strict(helm: Helm, chart: str, variant: str) -> None:
    out = helm.lint(chart, CUSTOM[chart] if variant == "custom" else None)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_the_library_chart_is_a_library() -> None:
    meta = yaml.safe_load((CHARTS_DIR / helmcharts.LIBRARY / "Chart.yaml").read_text())
    assert (meta["apiVersion"], meta["name"], meta["type"]) == ("v2", helmcharts.LIBRARY, "library")
    assert "dependencies" not in meta


def test_the_library_lints_strict(helm: Helm) -> None:
    assert "1 chart(s) linted, 0 chart(s) failed" in helm.lint(helmcharts.LIBRARY)


# A chart's own templates define only its hooks into the library, never a helper of its own.
OWN_DEFINE = re.compile(r'define "(?!kubext\.wiring")(kubext\.[^"]*)"')


@pytest.mark.parametrize("chart", CHARTS)
def test_every_chart_takes_the_shared_helpers_from_the_library(helm: Helm, chart: str) -> None:
    meta = yaml.safe_load((CHARTS_DIR / chart / "Chart.yaml").read_text())
    library = yaml.safe_load((CHARTS_DIR / helmcharts.LIBRARY / "Chart.yaml").read_text())
    assert meta["dependencies"] == [
        {
            "name": helmcharts.LIBRARY,
            "version": library["version"],
            "repository": f"file://../{helmcharts.LIBRARY}",
        }
    ]
    own = {
        f"{path.name}: {name}"
        for path in (CHARTS_DIR / chart / "templates").iterdir()
        for name in OWN_DEFINE.findall(path.read_text())
    }
    assert own == set()
    # Rendered with the library resolved: its helpers name and label every object.
    rendered = helm.template(chart, release=RELEASE, namespace=NAMESPACE)
    assert rendered.one("ConfigMap", f"{RELEASE}-{chart}-config")
    for obj in rendered.objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubext"


def undocumented_keys(text: str) -> list[str]:
    """Keys of values.yaml without a comment above them (a run of one-line sibling keys may
    share one comment)."""
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    missing = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        opaque = any(key in values_schema.OPAQUE for _, key in stack)
        stack.append((indent, stripped.split(":")[0]))
        if opaque:
            continue
        j = i - 1
        while (
            not stripped.endswith(":")  # a block key needs its own comment
            and j >= 0
            and lines[j].strip()
            and not lines[j].strip().startswith("#")
            and len(lines[j]) - len(lines[j].lstrip()) == indent
            and not lines[j].rstrip().endswith(":")
        ):
            j -= 1
        if j < 0 or not lines[j].strip().startswith("#"):
            missing.append(".".join(key for _, key in stack))
    return missing


def test_the_documentation_check_finds_an_undocumented_key() -> None:
    text = "# Documented.\na: 1\nb:\n  # Documented.\n  c: 2\n\nd: 3\n"
    assert undocumented_keys(text) == ["b", "d"]


@pytest.mark.parametrize("chart", CHARTS)
def test_every_values_key_is_documented(chart: str) -> None:
    assert undocumented_keys((CHARTS_DIR / chart / "values.yaml").read_text()) == []


@pytest.mark.parametrize("chart", CHARTS)
def test_values_schema_is_generated_from_values_yaml(chart: str) -> None:
    committed = (CHARTS_DIR / chart / "values.schema.json").read_text()
    assert committed == values_schema.render(chart), "run `python tests/helm/values_schema.py`"


@pytest.mark.parametrize("chart", CHARTS)
def test_a_misspelt_value_is_refused(helm: Helm, chart: str) -> None:
    with pytest.raises(HelmError, match="additional properties 'replica' not allowed"):
        helm.template(chart, values={"replica": 3})
    with pytest.raises(HelmError, match="additional properties 'tags' not allowed"):
        helm.template(chart, values={"image": {"tags": "1.0"}})


# --- what every chart renders --------------------------------------------------------------


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_every_object_carries_the_standard_labels(helm: Helm, chart: str, variant: str) -> None:
    rendered = render(helm, chart, variant)
    for obj in rendered.objects:
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']} {obj['metadata']['name']}"
        assert labels.get("app.kubernetes.io/name") == chart, where
        assert labels.get("app.kubernetes.io/instance") == RELEASE, where
        assert labels.get("app.kubernetes.io/version") == cli.read_version(f"kubext_{chart}"), where
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", where
        assert labels.get("helm.sh/chart", "").startswith(f"{chart}-"), where
        if obj["kind"] not in CLUSTER_SCOPED:
            # Limited to config.namespaces, the operator reads Secrets through a Role in each.
            home = {NAMESPACE}
            if obj["metadata"]["name"] == f"{RELEASE}-operator-secrets":
                home = set(CUSTOM["operator"]["config"]["namespaces"])
            assert obj["metadata"]["namespace"] in home, where


@pytest.mark.parametrize("chart", CHARTS)
def test_cluster_scoped_names_belong_to_the_release(helm: Helm, chart: str) -> None:
    rendered = render(helm, chart, "default")
    for obj in rendered.objects:
        if obj["kind"] in CLUSTER_SCOPED and obj["kind"] != "CSIDriver":
            assert obj["metadata"]["name"].startswith(
                RELEASE
            ), f"{obj['kind']} {obj['metadata']['name']}"
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in rendered.of_kind(kind):
            for subject in binding["subjects"]:
                assert subject["namespace"] == NAMESPACE
                assert subject["name"] in {
                    sa["metadata"]["name"] for sa in rendered.of_kind("ServiceAccount")
                }


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_workloads_run_the_service_with_its_config(helm: Helm, chart: str, variant: str) -> None:
    rendered = render(helm, chart, variant)
    cfg = service_config(rendered, chart)
    version = cli.read_version(f"kubext_{chart}")
    values = CUSTOM[chart] if variant == "custom" else {}
    image = values.get("image", {})
    expected_image = (
        f"kubext/{chart}@{image['digest']}"
        if "digest" in image
        else f"kubext/{chart}:{image.get('tag', version)}"
    )
    assert rendered.workloads()
    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        container = service_container(workload)
        assert container["image"] == expected_image
        assert container["args"][:2] == ["--config", "/etc/kubext/config.yaml"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert (
            volumes[mounts["/etc/kubext"]["name"]]["configMap"]["name"]
            == f"{RELEASE}-{chart}-config"
        )
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # PEX_ROOT=/tmp/.pex
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == cfg.health.port
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert len(annotations["checksum/config"]) == 64
        if pod.get("serviceAccountName"):
            assert pod["serviceAccountName"] in {
                sa["metadata"]["name"] for sa in rendered.of_kind("ServiceAccount")
            }


# The ports each service's container listens on; the others serve only health (so far).
SERVED_PORTS = {"webhooks": {"health", "https"}, "scheduler": {"health", "extender"}}


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_every_container_port_is_one_the_service_serves(
    helm: Helm, chart: str, variant: str
) -> None:
    rendered = render(helm, chart, variant)
    for workload in rendered.workloads():
        ports = {p["name"] for p in service_container(workload)["ports"]}
        assert ports == SERVED_PORTS.get(chart, {"health"}), workload["metadata"]["name"]
    served = {
        (s["metadata"]["name"], p["targetPort"])
        for s in rendered.of_kind("Service")
        for p in s["spec"]["ports"]
    }
    assert {port for _, port in served} <= SERVED_PORTS.get(chart, {"health"}) - {"health"}


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_every_container_has_requests_and_limits(helm: Helm, chart: str, variant: str) -> None:
    for workload in render(helm, chart, variant).workloads():
        for container in pod_containers(workload):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{container['name']} {kind}"


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_pods_get_no_service_link_variables(helm: Helm, chart: str, variant: str) -> None:
    # Release "kubext" makes Service kubext-webhooks, whose link variable KUBEXT_WEBHOOKS_PORT
    # (tcp://...) lands in the service's own settings prefix and stops it at start.
    for workload in render(helm, chart, variant).workloads():
        spec = workload["spec"]["template"]["spec"]
        assert spec.get("enableServiceLinks") is False, workload["metadata"]["name"]


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_security_context_is_restricted_unless_the_service_needs_the_host(
    helm: Helm, chart: str, variant: str
) -> None:
    for workload in render(helm, chart, variant).workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = service_container(workload)
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        if workload["kind"] in PRIVILEGED.get(chart, set()):
            assert ctx["privileged"] is True
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        for c in pod_containers(workload):  # sidecars too
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert not sc.get("privileged"), c["name"]


@pytest.mark.parametrize(("chart", "variant"), VARIANTS)
def test_rbac_names_every_resource_and_verb(helm: Helm, chart: str, variant: str) -> None:
    for kind in ("ClusterRole", "Role"):
        for role in render(helm, chart, variant).of_kind(kind):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[key], f"{role['metadata']['name']}: wildcard {key}"


@pytest.mark.parametrize("chart", CHARTS)
def test_a_config_change_rolls_the_pods(helm: Helm, chart: str) -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        rendered = helm.template(chart, release=RELEASE, namespace=NAMESPACE, values=values)
        return {
            w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for w in rendered.workloads()
        }

    assert checksums({}).isdisjoint(checksums({"config": {"log_level": "warning"}}))


# The config keys each chart sets itself, to match the objects it creates or mounts.
WIRED_KEYS = {
    "operator": {"leader_election"},
    "webhooks": {"namespace", "service_name", "tls"},
    "cni": {"cni_bin_dir", "plugin_python"},
    "scheduler": {"leader_election", "scheduler_config"},
    "deviceplugin": {"device_plugin_dir"},
}


@pytest.mark.parametrize("chart", CHARTS)
def test_empty_config_means_the_service_defaults(helm: Helm, chart: str) -> None:
    rendered = helm.template(chart, release=RELEASE, namespace=NAMESPACE)
    data = rendered.config(f"{RELEASE}-{chart}-config")
    assert set(data) == WIRED_KEYS.get(chart, set())
    # Everything else is the service's own default.
    model = CONFIG_MODELS[chart]
    defaults = model().model_dump()
    rendered_cfg = model.model_validate(data).model_dump()
    assert {k: v for k, v in rendered_cfg.items() if k not in data} == {
        k: v for k, v in defaults.items() if k not in data
    }


# --- operator ------------------------------------------------------------------------------


def test_operator_crds_are_the_services_crds() -> None:
    source = REPO / "services" / "operator" / "deploy" / "crds"
    copies = CHARTS_DIR / "operator" / "crds"
    generated = sorted(p.name for p in source.glob("*.yaml"))
    assert generated, "services/operator/deploy/crds has no CRDs"
    drifted = [
        n
        for n in generated
        if not (copies / n).is_file() or (copies / n).read_bytes() != (source / n).read_bytes()
    ]
    assert (
        drifted == []
    ), f"copy services/operator/deploy/crds/{{{','.join(drifted)}}} into helm/operator/crds/"
    assert sorted(p.name for p in copies.iterdir()) == generated  # nothing else ships as a CRD


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, name or "") for every combination a rule list allows."""
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
        for name in rule.get("resourceNames") or [""]
    }


def test_operator_rights_are_the_services_own(helm: Helm) -> None:
    """The ClusterRole grants what services/operator/deploy/operator.yaml grants, and the Lease
    Role only the Lease the operator is configured to elect in."""
    rendered = render(helm, "operator", "default")
    deploy = [
        d
        for d in yaml.safe_load_all(
            (REPO / "services" / "operator" / "deploy" / "operator.yaml").read_text()
        )
        if d
    ]
    (service_role,) = (d for d in deploy if d["kind"] == "ClusterRole")
    name = f"{RELEASE}-operator"
    assert grants(rendered.rules("ClusterRole", name)) == grants(service_role["rules"])
    cfg = service_config(rendered, "operator")
    assert (cfg.leader_election.namespace, cfg.leader_election.name) == (NAMESPACE, name)
    lease_role = rendered.one("Role", f"{name}-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert grants(lease_role["rules"]) == {
        ("coordination.k8s.io", "leases", "create", ""),
        ("coordination.k8s.io", "leases", "get", name),
        ("coordination.k8s.io", "leases", "update", name),
    }
    assert rendered.one("Deployment")["spec"]["replicas"] == 2
    assert rendered.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_operator_custom_config_keeps_the_wiring(helm: Helm) -> None:
    cfg = service_config(render(helm, "operator", "custom"), "operator")
    assert cfg.namespaces == ["team-a", "team-b"]
    assert cfg.leader_election.lease_duration_seconds == 30
    assert cfg.leader_election.name == f"{RELEASE}-operator"


# --- webhooks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "namespace", "url"),
    [("kubext", "kubext-system", None), (RELEASE, NAMESPACE, "https://127.0.0.1:8443")],
)
def test_webhook_configurations_are_the_services_manifests(
    helm: Helm, release: str, namespace: str, url: str | None
) -> None:
    values = {"webhooks": {"url": url}} if url else None
    rendered = helm.template("webhooks", release=release, namespace=namespace, values=values)
    name = f"{release}-webhooks"
    where = {"namespace": namespace, "service": name, "name": name, "url": url}
    expected = {
        "ValidatingWebhookConfiguration": webhook_manifests.validating(**where),
        "MutatingWebhookConfiguration": webhook_manifests.mutating(**where),
    }
    for kind, manifest in expected.items():
        obj = rendered.one(kind, name)
        assert json.loads(json.dumps(obj["webhooks"])) == manifest["webhooks"]


def test_webhooks_config_is_wired_to_the_release_objects(helm: Helm) -> None:
    rendered = render(helm, "webhooks", "default")
    cfg = service_config(rendered, "webhooks")
    name = f"{RELEASE}-webhooks"
    service = rendered.one("Service", cfg.service_name)
    assert cfg.effective_namespace() == NAMESPACE
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    ports = {
        p["name"]: p["containerPort"]
        for p in service_container(rendered.one("Deployment"))["ports"]
    }
    assert ports["https"] == cfg.port
    assert cfg.tls.mode == "self-managed"
    assert cfg.tls.inject.validating_webhook_configurations == [
        rendered.one("ValidatingWebhookConfiguration")["metadata"]["name"]
    ]
    assert cfg.tls.inject.mutating_webhook_configurations == [
        rendered.one("MutatingWebhookConfiguration")["metadata"]["name"]
    ]
    assert cfg.tls.inject.custom_resource_definitions == ["databases.db.example.com"]
    assert cfg.cert_settings().dns_names[0] == f"{name}.{NAMESPACE}.svc"
    cluster = rendered.rules("ClusterRole", name)
    assert rules_allow(
        cluster, "admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch", name
    )
    assert not rules_allow(
        cluster, "admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch", "other"
    )
    assert rules_allow(
        cluster,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "patch",
        "databases.db.example.com",
    )
    assert rules_allow(cluster, "", "namespaces", "get")
    local = rendered.rules("Role", name)
    assert rules_allow(local, "", "secrets", "update", cfg.tls.secret_name)
    assert not rules_allow(local, "", "secrets", "get", "other")


def test_webhooks_are_fail_closed_and_never_see_their_own_namespace(helm: Helm) -> None:
    for variant in ("default", "custom"):
        rendered = render(helm, "webhooks", variant)
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for hook in rendered.one(kind)["webhooks"]:
                assert hook["sideEffects"] == "None"
                assert hook["failurePolicy"] == ("Fail" if variant == "default" else "Ignore")
                assert hook["timeoutSeconds"] == (5 if variant == "default" else 3)
                (exclusion,) = (
                    e
                    for e in hook["namespaceSelector"]["matchExpressions"]
                    if e["operator"] == "NotIn"
                )
                assert {"kube-system", NAMESPACE} <= set(exclusion["values"])
                if hook["name"].startswith("pods.mutate"):
                    assert hook["reinvocationPolicy"] == "IfNeeded"
    custom = render(helm, "webhooks", "custom")
    hooks = custom.one("ValidatingWebhookConfiguration")["webhooks"]
    assert [h["name"] for h in hooks] == ["pods.validate.webhooks.kubext.io"]  # databases off
    assert hooks[0]["namespaceSelector"]["matchLabels"] == {"kubext.io/webhooks": "enabled"}
    assert "monitoring" in hooks[0]["namespaceSelector"]["matchExpressions"][0]["values"]
    cfg = service_config(custom, "webhooks")
    assert cfg.tls.inject.custom_resource_definitions == []
    assert not rules_allow(
        custom.rules("ClusterRole", f"{RELEASE}-webhooks"),
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "patch",
        "databases.db.example.com",
    )


def test_webhooks_config_cannot_contradict_the_chart(helm: Helm) -> None:
    with pytest.raises(
        HelmError, match=r"config\.tls\.secret_name: the chart sets it to \"rel-webhooks-tls\""
    ):
        helm.template(
            "webhooks", release=RELEASE, values={"config": {"tls": {"secret_name": "mine"}}}
        )
    # Restating what the chart sets is fine.
    helm.template(
        "webhooks",
        release=RELEASE,
        namespace=NAMESPACE,
        values={"config": {"service_name": "rel-webhooks"}},
    )


def test_webhooks_policy_value_replaces_the_built_in_policy(helm: Helm) -> None:
    default = render(helm, "webhooks", "default")
    assert service_config(default, "webhooks").policy.path is None  # the built-in policy
    assert not [o for o in default.objects if o["metadata"]["name"] == f"{RELEASE}-webhooks-policy"]

    policy = yaml.safe_load((REPO / "services/webhooks/deploy/policy.yaml").read_text())
    policy["spec"]["rules"]["allowedRegistries"]["registries"].append("registry.example:5000")
    rendered = helm.template(
        "webhooks", release=RELEASE, namespace=NAMESPACE, values={"policy": policy}
    )
    cfg = service_config(rendered, "webhooks")
    text = rendered.one("ConfigMap", f"{RELEASE}-webhooks-policy")["data"]["policy.yaml"]
    # The service's own parser reads what it will find there.
    parsed = webhooks_policy.parse_policy(text, source="policy.yaml")
    assert "registry.example:5000" in parsed.spec.rules.allowed_registries.registries
    deployment = rendered.one("Deployment")
    (mount,) = (m for m in service_container(deployment)["volumeMounts"] if m["name"] == "policy")
    assert cfg.policy.path == f"{mount['mountPath']}/policy.yaml"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["policy"]["configMap"]["name"] == f"{RELEASE}-webhooks-policy"
    # A config.policy.path of the user's own would be ignored: refused instead.
    with pytest.raises(HelmError, match=r"config\.policy\.path: the chart sets it"):
        helm.template(
            "webhooks",
            release=RELEASE,
            values={"policy": policy, "config": {"policy": {"path": "/mine.yaml"}}},
        )


def test_webhooks_with_cert_manager(helm: Helm) -> None:
    values = {"certManager": {"enabled": True}, "config": {"tls": {"cert_dir": "/run/tls"}}}
    rendered = helm.template(
        "webhooks",
        release=RELEASE,
        namespace=NAMESPACE,
        values=values,
        extra=["--api-versions", "cert-manager.io/v1"],
    )
    name = f"{RELEASE}-webhooks"
    cert = rendered.one("Certificate", name)
    assert cert["spec"]["dnsNames"][0] == f"{name}.{NAMESPACE}.svc"
    assert cert["spec"]["issuerRef"]["name"] == rendered.one("Issuer")["metadata"]["name"]
    assert "selfSigned" in rendered.one("Issuer")["spec"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        annotations = rendered.one(kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{name}"
    cfg = service_config(rendered, "webhooks")
    assert cfg.tls.mode == "cert-manager"
    deployment = rendered.one("Deployment")
    mounts = {m["mountPath"]: m["name"] for m in service_container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts[cfg.tls.cert_dir]]["secret"]["secretName"] == cert["spec"]["secretName"]
    assert rendered.of_kind("Role") == []  # no Secret of its own to write
    assert [r["resources"] for r in rendered.rules("ClusterRole", name)] == [["namespaces"]]
    # An issuer of the user's.
    values["certManager"]["issuerRef"] = {
        "name": "corp-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    rendered = helm.template(
        "webhooks",
        release=RELEASE,
        namespace=NAMESPACE,
        values=values,
        extra=["--api-versions", "cert-manager.io/v1"],
    )
    assert rendered.of_kind("Issuer") == []
    assert rendered.one("Certificate")["spec"]["issuerRef"]["kind"] == "ClusterIssuer"


def test_webhooks_cert_manager_without_cert_manager_is_a_clear_error(helm: Helm) -> None:
    with pytest.raises(
        HelmError, match=r"certManager\.enabled needs cert-manager \(API cert-manager\.io/v1\)"
    ):
        helm.template("webhooks", values={"certManager": {"enabled": True}})


# --- scheduler -----------------------------------------------------------------------------


def test_scheduler_is_bound_like_kube_scheduler(helm: Helm) -> None:
    rendered = render(helm, "scheduler", "default")
    sa = rendered.one("ServiceAccount")["metadata"]["name"]
    bound = {
        b["roleRef"]["name"]
        for b in rendered.of_kind("ClusterRoleBinding")
        if {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE} in b["subjects"]
    }
    assert bound == {"system:kube-scheduler", "system:volume-scheduler"}
    assert rendered.of_kind("ClusterRole") == []  # nothing beyond kube-scheduler's own rights
    lease = rendered.rules("Role", f"{RELEASE}-scheduler-leader-election")
    assert rules_allow(lease, "coordination.k8s.io", "leases", "update", "kubext-scheduler")
    assert rules_allow(lease, "coordination.k8s.io", "leases", "create")


def test_scheduler_standalone_elects_in_the_lease_its_role_covers(helm: Helm) -> None:
    rendered = render(helm, "scheduler", "default")
    cfg = service_config(rendered, "scheduler")
    assert cfg.standalone.enabled and cfg.leader_election.enabled
    assert (cfg.leader_election.namespace, cfg.leader_election.name) == (
        NAMESPACE,
        "kubext-scheduler",
    )
    assert rendered.of_kind("Service") == []  # no extender Service in standalone mode
    profiles = yaml.safe_load(
        rendered.one("ConfigMap", f"{RELEASE}-scheduler-profiles")["data"]["scheduler.yaml"]
    )
    assert profiles["kind"] == "KubeSchedulerConfiguration"
    [profile] = profiles["profiles"]
    assert profile["schedulerName"] == "kubext-scheduler"
    assert cfg.scheduler_config == "/etc/kubext-profiles/scheduler.yaml"


def scheduler_frameworks(rendered: Rendered, tmp_path: Any) -> dict[str, Any]:
    """The rendered profiles file, loaded by the service's own loader (as it would at start)."""
    path = tmp_path / "scheduler.yaml"
    path.write_text(
        rendered.one("ConfigMap", f"{RELEASE}-scheduler-profiles")["data"]["scheduler.yaml"]
    )
    return dict(scheduler_profiles.load(str(path)).frameworks)


def test_scheduler_values_set_the_default_profiles_plugins_weights_and_args(
    helm: Helm, tmp_path: Any
) -> None:
    framework = scheduler_frameworks(render(helm, "scheduler", "default"), tmp_path)[
        "kubext-scheduler"
    ]
    assert framework.score_weights["PodTopologySpread"] == 2
    assert framework.score_weights["InterPodAffinity"] == 2
    [preemption] = framework.plugins["postFilter"]
    assert preemption.name == "DefaultPreemption"
    assert preemption.args.minCandidateNodesAbsolute == 100
    [volumes] = framework.plugins["preBind"]
    assert (volumes.name, volumes.bind_timeout_s) == ("VolumeBinding", 600)
    assert [p.name for p in framework.plugins["filter"]][-2:] == [
        "PodTopologySpread",
        "InterPodAffinity",
    ]
    changed = helm.template(
        "scheduler",
        release=RELEASE,
        namespace=NAMESPACE,
        values={
            "plugins": {
                "score": {"enabled": [{"name": "InterPodAffinity", "weight": 7}]},
                "postFilter": {"disabled": [{"name": "DefaultPreemption"}]},
            },
            # Args of a plugin not enabled stop the service: DefaultPreemption's go with it.
            "pluginConfig": [{"name": "InterPodAffinity", "args": {"hardPodAffinityWeight": 9}}],
        },
    )
    framework = scheduler_frameworks(changed, tmp_path)["kubext-scheduler"]
    assert framework.score_weights["InterPodAffinity"] == 7
    assert list(framework.plugins["postFilter"]) == []
    [affinity] = [p for p in framework.plugins["filter"] if p.name == "InterPodAffinity"]
    assert affinity.args.hardPodAffinityWeight == 9
    # A bad arg from values stops the service at start, naming the field.
    too_heavy = [{"name": "InterPodAffinity", "args": {"hardPodAffinityWeight": 101}}]
    bad = helm.template("scheduler", release=RELEASE, values={"pluginConfig": too_heavy})
    with pytest.raises(ValueError, match="hardPodAffinityWeight"):
        scheduler_frameworks(bad, tmp_path)


def test_scheduler_extender_mode_is_what_kube_scheduler_calls(helm: Helm) -> None:
    rendered = render(helm, "scheduler", "custom")
    cfg = service_config(rendered, "scheduler")
    assert not cfg.standalone.enabled and cfg.extender.enabled and cfg.extender.port == 9888
    (service,) = rendered.of_kind("Service")
    assert service["spec"]["ports"] == [
        {"name": "extender", "port": 9888, "targetPort": "extender", "protocol": "TCP"}
    ]
    container = service_container(rendered.one("Deployment"))
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["extender"] == 9888
    kube = rendered.config(f"{RELEASE}-scheduler-kube-scheduler")  # kube-scheduler's --config
    assert kube["leaderElection"]["resourceName"] == "team-scheduler"
    assert kube["extenders"] == [
        {
            "urlPrefix": "http://127.0.0.1:9888",  # our container, in the same pod
            "filterVerb": "filter",
            "prioritizeVerb": "prioritize",
            "bindVerb": "bind",
            "preemptVerb": "preempt",
            "weight": 5,
            "nodeCacheCapable": True,
            "enableHTTPS": False,
            "managedResources": [{"name": "example.com/gpu"}],
        }
    ]
    # Seed 12.5.2's shape: kube-scheduler runs beside the extender, on that config.
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    [kube_scheduler] = [c for c in pod["containers"] if c["name"] == "kube-scheduler"]
    assert kube_scheduler["image"] == "registry.k8s.io/kube-scheduler:v1.35.4"
    assert kube_scheduler["command"] == [
        "kube-scheduler",
        "--config=/etc/kubernetes/kube-scheduler/config.yaml",
    ]
    [mount] = kube_scheduler["volumeMounts"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == f"{RELEASE}-scheduler-kube-scheduler"
    profiles = yaml.safe_load(
        rendered.one("ConfigMap", f"{RELEASE}-scheduler-profiles")["data"]["scheduler.yaml"]
    )
    assert profiles["profiles"] == CUSTOM["scheduler"]["profiles"]
    lease = rendered.rules("Role", f"{RELEASE}-scheduler-leader-election")
    assert rules_allow(lease, "coordination.k8s.io", "leases", "update", "team-scheduler")
    with pytest.raises(HelmError, match="mode"):
        helm.template("scheduler", values={"mode": "both"})


# --- cni -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_cni_daemon_shares_the_hosts_paths_with_the_launcher(helm: Helm, variant: str) -> None:
    values = CUSTOM["cni"]["cni"] if variant == "custom" else {}
    bin_dir = values.get("binDir", "/opt/cni/bin")
    conf_name = values.get("confName", "10-kubext.conflist")
    rendered = render(helm, "cni", variant)
    cfg = service_config(rendered, "cni")
    assert cfg.cni_bin_dir == bin_dir
    assert cfg.plugin_python == values.get("hostPython", "/usr/bin/python3")
    daemonset = rendered.one("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True  # the daemon refuses calls from another netns
    assert pod["hostPID"] is (variant == "default")
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m for m in service_container(daemonset)["volumeMounts"]}
    # The launcher on the host and the daemon in the pod see the same paths.
    for volume in ("cni-bin", "socket-dir", "netns", "cni-state"):
        assert mounts[volume]["mountPath"] == host[volume], volume
    assert host["cni-bin"] == cfg.cni_bin_dir
    assert host["socket-dir"] == cfg.socket_path.rsplit("/", 1)[0]
    assert mounts["netns"]["mountPropagation"] == "HostToContainer"
    (install,) = pod["initContainers"]
    conf_mount = {m["name"]: m["mountPath"] for m in install["volumeMounts"]}["cni-net"]
    assert host["cni-net"] == "/etc/cni/net.d"
    assert f"mv -f {conf_mount}/.{conf_name}.tmp {conf_mount}/{conf_name}" in install["command"][-1]
    conflist = json.loads(rendered.one("ConfigMap", f"{RELEASE}-cni-network")["data"][conf_name])
    assert (conflist["cniVersion"], conflist["name"]) == ("1.1.0", "kubext")
    plugin = conflist["plugins"][0]
    assert plugin["type"] == "kubext-bridge"
    assert plugin["ipam"]["type"] == "host-local"
    if variant == "custom":
        assert (plugin["bridge"], plugin["mtu"], len(conflist["plugins"])) == ("kube0", 9000, 1)
    else:
        assert conflist["plugins"][1]["type"] == "portmap"
        assert {"operator": "Exists"} in pod["tolerations"]
    assert rendered.of_kind("ClusterRole") == rendered.of_kind("Role") == []
    assert rendered.one("ServiceAccount")["automountServiceAccountToken"] is False


def test_cni_plugin_name_is_the_services(helm: Helm) -> None:
    conflist = render(helm, "cni", "default").one("ConfigMap", f"{RELEASE}-cni-network")["data"]
    assert (
        json.loads(conflist["10-kubext.conflist"])["plugins"][0]["type"] == cni_install.PLUGIN_NAME
    )


# --- csi -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_csi_driver_objects_follow_the_driver_name(helm: Helm, variant: str) -> None:
    rendered = render(helm, "csi", variant)
    cfg = service_config(rendered, "csi")
    kubelet = "/var/lib/k0s/kubelet" if variant == "custom" else "/var/lib/kubelet"
    driver = rendered.one("CSIDriver")
    assert driver["metadata"]["name"] == cfg.driver_name
    assert driver["spec"]["podInfoOnMount"] is True
    assert driver["spec"]["attachRequired"] is (variant == "custom")
    storage_class = rendered.one("StorageClass")
    assert storage_class["provisioner"] == cfg.driver_name
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    node = rendered.one("DaemonSet", f"{RELEASE}-csi-node")
    pod = node["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host["plugin-dir"] == f"{kubelet}/plugins/{cfg.driver_name}"
    assert host["registration-dir"] == f"{kubelet}/plugins_registry"
    assert host["state"] == cfg.state_dir
    containers = {c["name"]: c for c in pod["containers"]}
    registrar = containers["node-driver-registrar"]
    assert (
        f"--kubelet-registration-path={kubelet}/plugins/{cfg.driver_name}/csi.sock"
        in registrar["args"]
    )
    driver_mounts = {m["mountPath"]: m for m in containers["csi-driver"]["volumeMounts"]}
    for path in (f"{kubelet}/pods", f"{kubelet}/plugins"):
        assert driver_mounts[path]["mountPropagation"] == "Bidirectional"
    assert driver_mounts[cfg.state_dir]["name"] == "state"
    env = {e["name"]: e for e in containers["csi-driver"]["env"]}
    assert env["CSI_ENDPOINT"]["value"] == "unix:///csi/csi.sock"
    assert env["NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


# The sidecars that call the API server (the registrar talks only to the kubelet).
CSI_API_SIDECARS = {"csi-provisioner", "csi-snapshotter", "csi-resizer", "csi-attacher"}


def csi_node_containers(rendered: Rendered) -> dict[str, dict[str, Any]]:
    pod = rendered.one("DaemonSet", f"{RELEASE}-csi-node")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_csi_runs_every_sidecar_in_the_node_pod_per_node(helm: Helm, variant: str) -> None:
    """The distributed layout: no controller workload; the driver's node pod provisions (and
    snapshots) for its own node, told which one by the downward API."""
    rendered = render(helm, "csi", variant)
    assert rendered.of_kind("Deployment") == rendered.of_kind("StatefulSet") == []
    containers = csi_node_containers(rendered)
    expected = {"csi-driver", "node-driver-registrar", "csi-provisioner", "csi-snapshotter"}
    if variant == "custom":  # attachRequired and the resizer; no snapshotter
        expected = expected - {"csi-snapshotter"} | {"csi-resizer", "csi-attacher"}
    assert set(containers) == expected
    for name in set(containers) & CSI_API_SIDECARS:
        container = containers[name]
        args = container["args"]
        assert container["image"].startswith(f"registry.k8s.io/sig-storage/{name}:v"), name
        assert "--csi-address=$(ADDRESS)" in args, name
        # The driver refuses CreateVolume/CreateSnapshot parameters it does not know.
        assert "--extra-create-metadata" not in args, name
        env = {e["name"]: e for e in container["env"]}
        assert env["ADDRESS"]["value"] == "/csi/csi.sock"
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        for var in ("NAMESPACE", "POD_NAMESPACE"):
            assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/csi"] == "plugin-dir"  # the driver's socket, as the kubelet sees it
        per_node = name in ("csi-provisioner", "csi-snapshotter")
        assert ("--node-deployment=true" in args) is per_node, name
        # Per-node instances each own their node; the others elect one leader.
        assert ("--leader-election" in args) is not per_node, name
        if not per_node:
            assert "--leader-election-namespace=$(POD_NAMESPACE)" in args
    provisioner = containers["csi-provisioner"]["args"]
    assert {"--feature-gates=Topology=true", "--strict-topology=true"} <= set(provisioner)
    capacity = variant == "default"
    assert rendered.one("CSIDriver")["spec"]["storageCapacity"] is capacity
    assert ("--enable-capacity" in provisioner) is capacity
    # The DaemonSet (one level up from the pod) owns each node's CSIStorageCapacity objects.
    assert ("--capacity-ownerref-level=1" in provisioner) is capacity
    assert rendered.one("StorageClass")["allowVolumeExpansion"] is (variant == "custom")


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_csi_only_the_api_sidecars_get_the_token_and_they_run_restricted(
    helm: Helm, variant: str
) -> None:
    rendered = render(helm, "csi", variant)
    pod = rendered.one("DaemonSet")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert rendered.one("ServiceAccount")["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    sources = volumes["kube-api-access"]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    for name, container in csi_node_containers(rendered).items():
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert (token_dir in mounts) is (name in CSI_API_SIDECARS), name
        if name not in CSI_API_SIDECARS:
            continue
        assert mounts[token_dir]["readOnly"] is True
        ctx = container["securityContext"]
        assert (ctx["runAsNonRoot"], ctx["runAsUser"]) == (True, 10001), name
        assert ctx["runAsGroup"] == 0, name  # the driver's socket is root:root 0660
        assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"] and not ctx.get("privileged"), name


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_csi_rbac_is_what_the_node_sidecars_need(helm: Helm, variant: str) -> None:
    rendered = render(helm, "csi", variant)
    name = f"{RELEASE}-csi-node"
    cluster = rendered.rules("ClusterRole", name)
    default = variant == "default"
    for resource, verb in [
        ("persistentvolumes", "create"),
        ("persistentvolumes", "delete"),
        ("persistentvolumeclaims", "update"),
        ("events", "create"),
    ]:
        assert rules_allow(cluster, "", resource, verb), (resource, verb)
    assert rules_allow(cluster, "storage.k8s.io", "storageclasses", "watch")
    assert rules_allow(cluster, "snapshot.storage.k8s.io", "volumesnapshots", "get")
    # --node-deployment takes its Node and CSINode from the local driver, watches neither.
    for verb in ("get", "list", "watch"):
        assert not rules_allow(cluster, "", "nodes", verb)
    assert rules_allow(cluster, "storage.k8s.io", "csinodes", "list") is not default  # attacher
    assert not rules_allow(cluster, "storage.k8s.io", "volumeattributesclasses", "list")
    assert not rules_allow(cluster, "", "secrets", "get")
    assert (
        rules_allow(cluster, "snapshot.storage.k8s.io", "volumesnapshotcontents/status", "update")
        is default
    )
    assert rules_allow(cluster, "", "persistentvolumeclaims/status", "patch") is not default
    assert rules_allow(cluster, "storage.k8s.io", "volumeattachments/status", "patch") is (
        not default
    )
    local = rendered.rules("Role", name)
    assert rendered.one("Role")["metadata"]["namespace"] == NAMESPACE
    assert rules_allow(local, "storage.k8s.io", "csistoragecapacities", "create") is default
    assert rules_allow(local, "", "pods", "get") is default  # the capacity owner lookup
    if default:  # nothing elects a leader
        assert not rules_allow(local, "coordination.k8s.io", "leases", "create")
        return
    assert rules_allow(local, "coordination.k8s.io", "leases", "create")
    # csi-lib-utils' lock names: the sidecar's prefix and the sanitised driver name.
    for lease in (
        "external-resizer-local-csi-example-org",
        "external-attacher-leader-local-csi-example-org",
    ):
        assert rules_allow(local, "coordination.k8s.io", "leases", "update", lease), lease
    assert not rules_allow(local, "coordination.k8s.io", "leases", "update", "other")
    assert not rules_allow(local, "coordination.k8s.io", "leases", "delete", "other")


def test_csi_without_capacity_or_leader_election_has_no_role(helm: Helm) -> None:
    rendered = helm.template(
        "csi",
        release=RELEASE,
        namespace=NAMESPACE,
        values={"csiDriver": {"storageCapacity": False}},
    )
    assert rendered.of_kind("Role") == rendered.of_kind("RoleBinding") == []
    assert rendered.one("ClusterRoleBinding")["subjects"][0]["name"] == f"{RELEASE}-csi-node"
    none = helm.template("csi", release=RELEASE, values={"rbac": {"create": False}})
    assert none.of_kind("ClusterRole") == none.of_kind("Role") == []


# No image from registry.k8s.io in the node pod: the driver registers with the kubelet and
# provisions itself (what tests/helm/test_releases_real_node.py installs on the real node).
CSI_WITHOUT_SIDECARS: dict[str, Any] = {
    "kubeletDir": "/var/lib/k0s/kubelet/",
    "config": {"state_dir": "/data/kubext-csi"},
    "csiDriver": {"storageCapacity": False},
    "sidecars": {
        "nodeDriverRegistrar": {"enabled": False},
        "provisioner": {"enabled": False},
        "snapshotter": {"enabled": False},
    },
}


def test_csi_without_sidecars_the_driver_registers_and_provisions_itself(helm: Helm) -> None:
    rendered = helm.template(
        "csi", release=RELEASE, namespace=NAMESPACE, values=CSI_WITHOUT_SIDECARS
    )
    pod = rendered.one("DaemonSet", f"{RELEASE}-csi-node")["spec"]["template"]["spec"]
    (driver,) = pod["containers"]  # the driver alone: no upstream image to pull
    assert driver["name"] == "csi-driver" and driver["image"].startswith("kubext/csi:")
    cfg = service_config(rendered, "csi")
    kubelet = "/var/lib/k0s/kubelet"
    assert cfg.registration.enabled and cfg.provisioner.enabled
    assert cfg.registration.kubelet_dir == kubelet
    host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in driver["volumeMounts"]}
    # The registration socket goes where the config says, which is the host's plugins_registry.
    assert mounts["registration-dir"] == host["registration-dir"] == f"{kubelet}/plugins_registry"
    # What the driver tells the kubelet is the socket it serves, as the host sees it.
    env = {e["name"]: e.get("value") for e in driver["env"]}
    served = env["CSI_ENDPOINT"].removeprefix("unix://")
    assert served == f"{mounts['plugin-dir']}/csi.sock"
    assert cfg.registration.kubelet_csi_path == f"{host['plugin-dir']}/csi.sock"
    assert host["plugin-dir"] == f"{kubelet}/plugins/{cfg.driver_name}"
    assert host["state"] == mounts["state"] == cfg.state_dir == "/data/kubext-csi"
    # The built-in provisioner calls the API server: the driver (only) gets the token.
    assert mounts["kube-api-access"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    # One sidecar left out, the other kept: each part follows its own value.
    only_registrar_off = helm.template(
        "csi",
        release=RELEASE,
        namespace=NAMESPACE,
        values={"sidecars": {"nodeDriverRegistrar": {"enabled": False}}},
    )
    assert set(csi_node_containers(only_registrar_off)) == {
        "csi-driver",
        "csi-provisioner",
        "csi-snapshotter",
    }
    cfg = service_config(only_registrar_off, "csi")
    assert cfg.registration.enabled and not cfg.provisioner.enabled
    assert cfg.registration.kubelet_csi_path == "/var/lib/kubelet/plugins/csi.kubext.io/csi.sock"
    # The default keeps the registrar, and the driver's own registration off.
    default = helm.template("csi", release=RELEASE, namespace=NAMESPACE)
    assert not service_config(default, "csi").registration.enabled
    driver_mounts = {m["name"] for m in csi_node_containers(default)["csi-driver"]["volumeMounts"]}
    assert "registration-dir" not in driver_mounts
    with pytest.raises(HelmError, match=r"config\.registration\.kubelet_dir: the chart sets it"):
        helm.template(
            "csi",
            values={**CSI_WITHOUT_SIDECARS, "config": {"registration": {"kubelet_dir": "/k"}}},
        )


def _api_calls(source: str) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every ``self.core.<call>`` and ``self.storage.<call>`` in
    the built-in provisioner's source, watch for the listers it streams (its ``watched``)."""
    groups = {"core": "", "storage": "storage.k8s.io"}
    verbs = {"list": "list", "read": "get", "create": "create", "patch": "patch"}
    verbs |= {"delete": "delete", "replace": "update"}
    tree = ast.parse(source)
    watched = {
        node.attr
        for assign in ast.walk(tree)
        if isinstance(assign, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "watched" for t in assign.targets)
        for node in ast.walk(assign.value)
        if isinstance(node, ast.Attribute)
    }
    calls = set()
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in groups
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            continue
        verb, _, kind = node.attr.partition("_")
        kind = kind.removeprefix("namespaced_").removesuffix("_for_all_namespaces")
        plural = kind.replace("_", "") + ("es" if kind.endswith("s") else "s")
        group = groups[node.value.attr]
        calls.add((group, plural, verbs[verb]))
        if node.attr in watched:
            calls.add((group, plural, "watch"))
    return calls


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for r in rules
        for group in r["apiGroups"]
        for resource in r["resources"]
        for verb in r["verbs"]
    }


def test_csi_builtin_provisioner_rbac_is_exactly_the_calls_it_makes(helm: Helm) -> None:
    """The ClusterRole with the built-in provisioner in place of csi-provisioner grants what
    kubext_csi/provisioner.py calls, and nothing more (no VolumeAttachments or snapshots, which
    only csi-provisioner reads)."""
    calls = _api_calls(Path(csi_provisioner.__file__).read_text())
    assert ("", "persistentvolumeclaims", "watch") in calls  # the source was read
    assert ("", "persistentvolumes", "delete") in calls
    rendered = helm.template(
        "csi", release=RELEASE, namespace=NAMESPACE, values=CSI_WITHOUT_SIDECARS
    )
    assert _granted(rendered.rules("ClusterRole", f"{RELEASE}-csi-node")) == calls
    assert rendered.one("ClusterRoleBinding")["subjects"][0]["name"] == f"{RELEASE}-csi-node"
    assert rendered.of_kind("Role") == []  # no capacity objects, no Lease
    # With csi-provisioner (and the registrar off, which needs no API) the sidecar's rules.
    sidecar = helm.template(
        "csi",
        release=RELEASE,
        namespace=NAMESPACE,
        values={**CSI_WITHOUT_SIDECARS, "sidecars": {"nodeDriverRegistrar": {"enabled": False}}},
    )
    granted = _granted(sidecar.rules("ClusterRole", f"{RELEASE}-csi-node"))
    assert calls < granted
    assert ("storage.k8s.io", "volumeattachments", "watch") in granted


def test_csi_values_that_cannot_work_stop_the_render(helm: Helm) -> None:
    with pytest.raises(
        HelmError, match=r"storageClass\.allowVolumeExpansion needs sidecars\.resizer\.enabled"
    ):
        helm.template("csi", values={"storageClass": {"allowVolumeExpansion": True}})
    with pytest.raises(
        HelmError, match=r"snapshotClass\.create needs sidecars\.snapshotter\.enabled"
    ):
        helm.template(
            "csi",
            values={
                "snapshotClass": {"create": True},
                "sidecars": {"snapshotter": {"enabled": False}},
            },
            extra=["--api-versions", "snapshot.storage.k8s.io/v1/VolumeSnapshotClass"],
        )
    with pytest.raises(HelmError, match=r"config\.node_id: leave it unset"):
        helm.template("csi", values={"config": {"node_id": "node-a"}})
    # The controller Deployment is gone; its values are refused, not ignored.
    with pytest.raises(HelmError, match="additional properties 'controller' not allowed"):
        helm.template("csi", values={"controller": {"replicas": 2}})


def test_csi_snapshot_class_needs_the_snapshot_api(helm: Helm) -> None:
    with pytest.raises(
        HelmError, match=r"snapshotClass\.create needs the external-snapshotter CRDs"
    ):
        helm.template("csi", values={"snapshotClass": {"create": True}})
    rendered = helm.template(
        "csi",
        release=RELEASE,
        namespace=NAMESPACE,
        values={"snapshotClass": {"create": True}},
        extra=["--api-versions", "snapshot.storage.k8s.io/v1/VolumeSnapshotClass"],
    )
    assert rendered.one("VolumeSnapshotClass")["driver"] == "csi.kubext.io"


VAC_API = "storage.k8s.io/v1/VolumeAttributesClass"
GROUP_API = "groupsnapshot.storage.k8s.io/v1beta1/VolumeGroupSnapshotClass"


def test_csi_attribute_and_group_snapshot_classes_are_opt_in_and_wired(helm: Helm) -> None:
    default = helm.template("csi", release=RELEASE, namespace=NAMESPACE)
    assert default.of_kind("VolumeAttributesClass") == []
    assert default.of_kind("VolumeGroupSnapshotClass") == []
    for values, message in (
        ({"volumeAttributesClasses": {"create": True}}, "volumeAttributesClasses.create needs"),
        ({"groupSnapshotClass": {"create": True}}, "groupSnapshotClass.create needs the"),
    ):
        with pytest.raises(HelmError, match=re.escape(message)):
            helm.template("csi", values=values)
    rendered = helm.template(
        "csi",
        release=RELEASE,
        namespace=NAMESPACE,
        values={
            "volumeAttributesClasses": {"create": True},
            "groupSnapshotClass": {"create": True},
        },
        extra=["--api-versions", VAC_API, "--api-versions", GROUP_API],
    )
    classes = rendered.of_kind("VolumeAttributesClass")
    assert [c["metadata"]["name"] for c in classes] == [
        f"{RELEASE}-csi-standard",
        f"{RELEASE}-csi-fast",
    ]
    for vac in classes:
        assert vac["driverName"] == "csi.kubext.io"
        # The chart's example parameters are ones the driver accepts.
        assert csi_validation.check_mutable_parameters(vac["parameters"]) == vac["parameters"]
    group = rendered.one("VolumeGroupSnapshotClass")
    assert (group["driver"], group["deletionPolicy"]) == ("csi.kubext.io", "Delete")
    containers = csi_node_containers(rendered)
    assert "--feature-gates=CSIVolumeGroupSnapshot=true" in containers["csi-snapshotter"]["args"]
    assert (
        "--feature-gates=Topology=true,VolumeAttributesClass=true"
        in containers["csi-provisioner"]["args"]
    )
    cluster = rendered.one("ClusterRole", f"{RELEASE}-csi-node")["rules"]
    assert rules_allow(cluster, "storage.k8s.io", "volumeattributesclasses", "watch")
    assert rules_allow(
        cluster, "groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", "patch"
    )
    assert not rules_allow(
        default.one("ClusterRole", f"{RELEASE}-csi-node")["rules"],
        "groupsnapshot.storage.k8s.io",
        "volumegroupsnapshotcontents",
        "patch",
    )
    with pytest.raises(HelmError, match=r"groupSnapshotClass\.create needs sidecars"):
        helm.template(
            "csi",
            values={
                "groupSnapshotClass": {"create": True},
                "sidecars": {"snapshotter": {"enabled": False}},
            },
            extra=["--api-versions", GROUP_API],
        )


# --- deviceplugin --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_deviceplugin_mounts_the_kubelet_device_plugin_dir(helm: Helm, variant: str) -> None:
    rendered = render(helm, "deviceplugin", variant)
    daemonset = rendered.one("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (volume,) = (v for v in pod["volumes"] if "hostPath" in v)
    assert volume["hostPath"]["path"] == "/var/lib/kubelet/device-plugins"
    mounts = {m["name"]: m["mountPath"] for m in service_container(daemonset)["volumeMounts"]}
    assert mounts[volume["name"]] == "/var/lib/kubelet/device-plugins"
    assert pod["automountServiceAccountToken"] is False
    assert rendered.of_kind("ClusterRole") == rendered.of_kind("Role") == []
    if variant == "custom":
        assert pod["nodeSelector"]["accelerator"] == "gpu"


def test_deviceplugin_mounts_host_dev_and_cdi_dirs_only_for_resources_that_need_them(
    helm: Helm,
) -> None:
    def pod_of(values: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str], Any]:
        rendered = helm.template(
            "deviceplugin", release=RELEASE, namespace=NAMESPACE, values=values
        )
        daemonset = rendered.one("DaemonSet")
        pod = daemonset["spec"]["template"]["spec"]
        host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
        mounts = {m["name"]: m["mountPath"] for m in service_container(daemonset)["volumeMounts"]}
        assert all(mounts[name] == path for name, path in host.items())  # same path inside
        return pod, host, service_config(rendered, "deviceplugin")

    _, host, cfg = pod_of(None)  # simulated only: the kubelet's dir, nothing of the host's devices
    assert sorted(host.values()) == ["/var/lib/kubelet/device-plugins"]
    assert cfg.device_plugin_dir == "/var/lib/kubelet/device-plugins"
    resources = [
        {
            "name": "kubext.io/fuse",
            "backend": "generic",
            "generic": {"groups": [{"name": "fuse", "paths": [{"path": "/dev/fuse"}]}]},
        },
        {"name": "example.com/gpu", "cdi": {"enabled": True}},
        {"name": "example.com/tpu", "cdi": {"enabled": True, "dir": "/run/cdi"}},
    ]
    values = {
        "devicePluginDir": "/var/lib/k0s/kubelet/device-plugins",
        "config": {"resources": resources},
    }
    pod, host, cfg = pod_of(values)
    assert sorted(host.values()) == [
        "/dev",
        "/run/cdi",
        "/var/lib/k0s/kubelet/device-plugins",
        "/var/run/cdi",
    ]
    assert cfg.device_plugin_dir == "/var/lib/k0s/kubelet/device-plugins"  # the chart wires it
    types = {
        v["hostPath"]["path"]: v["hostPath"]["type"] for v in pod["volumes"] if "hostPath" in v
    }
    assert types["/var/run/cdi"] == types["/run/cdi"] == "DirectoryOrCreate"
    _, host, _ = pod_of({**values, "hostDev": False})
    assert "/dev" not in host.values()
    with pytest.raises(HelmError, match="config.device_plugin_dir: the chart sets it"):
        pod_of({"config": {"device_plugin_dir": "/elsewhere"}})


def test_the_main_commands_releases_render_and_each_service_loads_its_config(
    helm: Helm, tmp_path: Path
) -> None:
    """`./kubext up`'s values for each release (kubext_rig.releases), rendered by the chart and
    read by the service's own config model: every pod on the real node from the registry."""
    registry = "127.0.0.1:20000"
    crd = yaml.safe_load((CHARTS_DIR / "operator/crds/databases.db.example.com.yaml").read_text())
    conversion = crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]
    for svc in releases.ORDER:
        name = releases.release_name(svc)
        image = f"{registry}/kubext/{svc}:9.9.9"
        digest = "sha256:" + "5e" * 32
        values = releases.values(
            svc, image=image, digest=digest, root=tmp_path, registry=registry, repo=REPO
        )
        rendered = helm.template(svc, release=name, namespace=releases.NAMESPACE, values=values)
        cfg = CONFIG_MODELS[svc].model_validate(rendered.config(f"{name}-config"))
        for workload in rendered.workloads():
            pod = workload["spec"]["template"]["spec"]
            assert pod["nodeSelector"]["kubernetes.io/hostname"] == rig_node.NODE_NAME, svc
            assert {"key": rig_node.TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"} in pod[
                "tolerations"
            ], svc
            ours = service_container(workload)
            # Pinned: a rebuilt image pushed under the same tag rolls the pods.
            assert ours["image"] == f"{registry}/kubext/{svc}@{digest}", svc
            # No upstream sidecar: their images cannot be pulled here.
            assert [c["name"] for c in pod["containers"]] == [ours["name"]], svc
        if svc == "webhooks":
            # The Service the operator chart's Database CRD sends conversions to.
            assert (rendered.one("Service")["metadata"]["name"], releases.NAMESPACE) == (
                conversion["name"],
                conversion["namespace"],
            )
            assert cfg.tls.inject.custom_resource_definitions == [crd["metadata"]["name"]]
            text = rendered.one("ConfigMap", f"{name}-policy")["data"]["policy.yaml"]
            policy = webhooks_policy.parse_policy(text, source="policy.yaml")
            assert registry in policy.spec.rules.allowed_registries.registries
        elif svc == "csi":
            storage_class = rendered.one("StorageClass")
            assert storage_class["metadata"]["name"] == "kubext-local"
            assert (
                storage_class["metadata"]["annotations"][
                    "storageclass.kubernetes.io/is-default-class"
                ]
                == "true"
            )
            assert cfg.registration.enabled and cfg.provisioner.enabled
            assert Path(cfg.state_dir).is_relative_to(tmp_path)
        elif svc == "deviceplugin":
            [resource] = cfg.resources
            assert (resource.name, resource.simulated.count) == ("example.com/gpu", 4)
        elif svc == "operator":
            assert cfg.pod_placement.node_selector == {"kubernetes.io/hostname": rig_node.NODE_NAME}
            assert cfg.database.images["postgresql"] == f"{registry}/kubext/postgres:{{major}}"
        elif svc == "scheduler":
            path = tmp_path / "scheduler.yaml"
            path.write_text(rendered.one("ConfigMap", f"{name}-profiles")["data"]["scheduler.yaml"])
            frameworks = scheduler_profiles.load(str(path)).frameworks
            assert list(frameworks) == ["custom-scheduler"]
            assert frameworks["custom-scheduler"].score_weights["NodeResourceFit"] == 50
        elif svc == "cni":
            # The node's network as the rig's own daemon served it: same socket (baked into
            # the launcher), same conflist (bridge, range, IPAM data dir, portmap), containerd's
            # dirs, the IPAM data mounted where the conflist names it.
            assert Path(cfg.socket_path) == rig_node.cni_socket(tmp_path)
            network = rendered.one("ConfigMap", f"{name}-network")["data"]
            assert json.loads(network["10-kubext.conflist"]) == rig_node.cni_conflist(tmp_path)
            host_paths = {
                v["name"]: v["hostPath"]["path"]
                for v in rendered.one("DaemonSet")["spec"]["template"]["spec"]["volumes"]
                if "hostPath" in v
            }
            assert host_paths["cni-bin"] == str(rig_node.cni_bin_dir(tmp_path))
            assert host_paths["cni-net"] == str(rig_node.cni_conf_dir(tmp_path))
            assert host_paths["cni-state"] == str(rig_node.ipam_dir(tmp_path).parent)
