"""CRD, admission webhook and extension checks on minimal good and broken manifests."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kubext_audit import checks, embedded
from kubext_audit.checks import extensions
from kubext_audit.checks.model import Severity
from kubext_audit.tests import samples

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        "status": {"type": "object"},
    },
}


def version(name: str, *, storage: bool, schema: dict[str, Any] = SCHEMA) -> dict[str, Any]:
    return {
        "name": name,
        "served": True,
        "storage": storage,
        "schema": {"openAPIV3Schema": schema},
        "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas"}},
        "additionalPrinterColumns": [{"name": "Phase", "type": "string", "jsonPath": ".status"}],
    }


def crd(*versions: dict[str, Any], conversion: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "group": "example.org",
        "names": {"kind": "Thing"},
        "versions": list(versions),
    }
    if conversion:
        spec["conversion"] = conversion
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.org"},
        "spec": spec,
    }


CRD_REF = "CustomResourceDefinition/things.example.org"
WEBHOOK_CONVERSION = {
    "strategy": "Webhook",
    "webhook": {
        "conversionReviewVersions": ["v1"],
        "clientConfig": {"service": {"namespace": "sys", "name": "conv"}},
    },
}


def test_a_good_crd_has_no_finding() -> None:
    assert samples.run(crd(version("v1", storage=True))) == []


def broken_version(**changes: Any) -> dict[str, Any]:
    v = version("v1", storage=True)
    for key, value in changes.items():
        if value is None:
            del v[key]
        else:
            v[key] = value
    return v


CRDS: list[Any] = [
    pytest.param(crd(version("v1", storage=False)), "CRD001", "spec.versions", id="no-storage"),
    pytest.param(
        crd(
            version("v1", storage=True), version("v2", storage=True), conversion=WEBHOOK_CONVERSION
        ),
        "CRD001",
        "spec.versions",
        id="two-storage",
    ),
    pytest.param(
        crd(broken_version(deprecated=True)),
        "CRD002",
        "spec.versions[0].deprecationWarning",
        id="deprecated-silently",
    ),
    pytest.param(
        crd(broken_version(schema=None)),
        "CRD003",
        "spec.versions[0].schema.openAPIV3Schema",
        id="no-schema",
    ),
    pytest.param(
        crd(
            broken_version(
                schema={"openAPIV3Schema": {**SCHEMA, "x-kubernetes-preserve-unknown-fields": True}}
            )
        ),
        "CRD004",
        "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-preserve-unknown-fields",
        id="root-preserve-unknown",
    ),
    pytest.param(
        crd(broken_version(subresources={"scale": {}})),
        "CRD005",
        "spec.versions[0].subresources.status",
        id="no-status-subresource",
    ),
    pytest.param(
        crd(broken_version(subresources={"status": {}})),
        "CRD006",
        "spec.versions[0].subresources.scale",
        id="no-scale-subresource",
    ),
    pytest.param(
        crd(broken_version(additionalPrinterColumns=None)),
        "CRD007",
        "spec.versions[0].additionalPrinterColumns",
        id="no-printer-columns",
    ),
    pytest.param(
        crd(
            version("v1", storage=True),
            version(
                "v2",
                storage=False,
                schema={"type": "object", "properties": {"spec": {"type": "object"}}},
            ),
        ),
        "CRD008",
        "spec.conversion.strategy",
        id="no-conversion",
    ),
]


@pytest.mark.parametrize(("manifest", "rule", "path"), CRDS)
def test_crd(manifest: dict[str, Any], rule: str, path: str) -> None:
    [finding] = samples.run(manifest)
    assert (finding.rule, str(finding.ref), finding.field) == (rule, CRD_REF, path)


def test_several_versions_with_one_schema_need_no_conversion() -> None:
    assert samples.run(crd(version("v1", storage=True), version("v2", storage=False))) == []


def service(namespace: str = "sys", name: str = "conv") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}},
    }


def endpoints(ready: bool, namespace: str = "sys", name: str = "conv") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-x",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name},
        },
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": ready}}],
    }


def test_conversion_webhook_reachability_is_judged_live_only() -> None:
    two = crd(
        version("v1", storage=True), version("v2", storage=False), conversion=WEBHOOK_CONVERSION
    )
    path = "spec.conversion.webhook.clientConfig.service"
    assert samples.run(two) == []  # manifests: the Service may be in another file
    [missing] = samples.run(two, live=True)
    assert (missing.rule, missing.field, missing.message) == (
        "CRD009",
        path,
        "Service sys/conv does not exist",
    )
    [unready] = samples.run(two, service(), endpoints(ready=False), live=True)
    assert unready.message == "Service sys/conv has no ready endpoints"
    assert samples.run(two, service(), endpoints(ready=True), live=True) == []


def webhook(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "pods.example.org",
        "clientConfig": {"service": {"namespace": "sys", "name": "hook"}, "caBundle": "Y2E="},
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": ["kube-system", "sys"],
                }
            ]
        },
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
            }
        ],
        "reinvocationPolicy": "Never",
    }
    for key, value in changes.items():
        if value is None:
            del entry[key]
        else:
            entry[key] = value
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "hook"},
        "webhooks": [entry],
    }


WH_REF = "MutatingWebhookConfiguration/hook"


def test_a_good_webhook_has_no_finding() -> None:
    assert samples.run(webhook()) == []
    assert (
        samples.run(webhook(), service("sys", "hook"), endpoints(True, "sys", "hook"), live=True)
        == []
    )


WEBHOOKS: list[Any] = [
    pytest.param(
        {"failurePolicy": None},
        "WH001",
        "webhooks[0].failurePolicy",
        Severity.WARNING,
        id="failure-policy-unset",
    ),
    pytest.param(
        {"sideEffects": "Unknown"},
        "WH002",
        "webhooks[0].sideEffects",
        Severity.ERROR,
        id="side-effects",
    ),
    pytest.param(
        {"timeoutSeconds": 15},
        "WH003",
        "webhooks[0].timeoutSeconds",
        Severity.ERROR,
        id="timeout-15",
    ),
    pytest.param(
        {"timeoutSeconds": 8},
        "WH004",
        "webhooks[0].timeoutSeconds",
        Severity.WARNING,
        id="timeout-8",
    ),
    pytest.param(
        {"timeoutSeconds": None},
        "WH004",
        "webhooks[0].timeoutSeconds",
        Severity.WARNING,
        id="timeout-default",
    ),
    pytest.param(
        {"namespaceSelector": None},
        "WH005",
        "webhooks[0].namespaceSelector",
        Severity.ERROR,
        id="no-selector",
    ),
    pytest.param(
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": ["kube-system"],
                    }
                ]
            }
        },
        "WH005",
        "webhooks[0].namespaceSelector",
        Severity.ERROR,
        id="own-namespace-not-excluded",
    ),
    pytest.param(
        {"namespaceSelector": None, "failurePolicy": "Ignore"},
        "WH005",
        "webhooks[0].namespaceSelector",
        Severity.WARNING,
        id="no-selector-fail-open",
    ),
    pytest.param(
        {"admissionReviewVersions": ["v1beta1"]},
        "WH006",
        "webhooks[0].admissionReviewVersions",
        Severity.ERROR,
        id="review-versions",
    ),
    pytest.param(
        {"clientConfig": {"service": {"namespace": "sys", "name": "hook"}}},
        "WH007",
        "webhooks[0].clientConfig.caBundle",
        Severity.WARNING,
        id="no-ca-bundle",
    ),
    pytest.param(
        {"reinvocationPolicy": None},
        "WH008",
        "webhooks[0].reinvocationPolicy",
        Severity.INFO,
        id="reinvocation",
    ),
]


@pytest.mark.parametrize(("changes", "rule", "path", "severity"), WEBHOOKS)
def test_webhook(changes: dict[str, Any], rule: str, path: str, severity: Severity) -> None:
    [finding] = samples.run(webhook(**changes))
    assert (finding.rule, str(finding.ref), finding.field, finding.severity) == (
        rule,
        WH_REF,
        path,
        severity,
    )


def test_opt_in_selectors_and_match_conditions_exclude_the_system_namespaces() -> None:
    assert samples.run(webhook(namespaceSelector={"matchLabels": {"example.org/hook": "on"}})) == []
    excluded_by_cel = {
        "name": "skip",
        "expression": "!(request.namespace in ['kube-system', 'sys'])",
    }
    assert samples.run(webhook(namespaceSelector=None, matchConditions=[excluded_by_cel])) == []


def test_a_missing_ca_bundle_is_an_error_live_and_none_with_cert_manager() -> None:
    bare = webhook(clientConfig={"service": {"namespace": "sys", "name": "hook"}})
    live = samples.run(bare, service("sys", "hook"), endpoints(True, "sys", "hook"), live=True)
    assert [(f.rule, f.severity) for f in live] == [("WH007", Severity.ERROR)]
    bare["metadata"]["annotations"] = {"cert-manager.io/inject-ca-from": "sys/hook"}
    assert samples.run(bare) == []


def test_the_webhook_service_must_have_ready_endpoints_live() -> None:
    [missing] = samples.run(webhook(), live=True)
    assert (missing.rule, missing.field) == ("WH009", "webhooks[0].clientConfig.service")
    assert "Service sys/hook does not exist" in missing.message
    [unready] = samples.run(webhook(), service("sys", "hook"), live=True)
    assert "Service sys/hook has no ready endpoints" in unready.message


def csi_node(registration: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "csi-node", "namespace": "sys"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "registrar",
                            "args": [f"--kubelet-registration-path={registration}"],
                        }
                    ],
                    "volumes": [
                        {"name": "reg", "hostPath": {"path": "/var/lib/kubelet/plugins_registry"}}
                    ],
                }
            }
        },
    }


def test_a_csi_node_plugin_needs_its_csidriver() -> None:
    node = csi_node("/var/lib/kubelet/plugins/csi.example.org/csi.sock")
    ext = [f for f in samples.run(node) if f.rule == "EXT001"]
    assert [(f.field, f.message) for f in ext] == [
        ("spec.template.spec.containers", "no CSIDriver csi.example.org for this CSI node plugin")
    ]
    driver = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSIDriver",
        "metadata": {"name": "csi.example.org"},
    }
    assert "EXT001" not in {f.rule for f in samples.run(node, driver)}


def test_a_device_plugin_must_mount_the_device_plugins_directory() -> None:
    plugin = csi_node("/x")
    plugin["metadata"]["name"] = "gpu-device-plugin"
    plugin["spec"]["template"]["spec"]["volumes"] = [{"name": "dev", "hostPath": {"path": "/dev"}}]
    found = {(f.rule, f.field) for f in samples.run(plugin)}
    assert ("EXT002", "spec.template.spec.volumes") in found
    plugin["spec"]["template"]["spec"]["volumes"].append(
        {"name": "dp", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}
    )
    assert "EXT002" not in {f.rule for f in samples.run(plugin)}


def test_an_unavailable_api_service_live() -> None:
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
        "spec": {"service": {"namespace": "sys", "name": "metrics"}},
        "status": {
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MissingEndpoints",
                    "message": "no endpoints",
                }
            ]
        },
    }
    assert samples.run(api_service) == []
    [finding] = samples.run(api_service, live=True)
    assert (finding.rule, finding.field) == ("EXT003", "status.conditions[0]")
    assert "MissingEndpoints" in finding.message


def scheduler_config(plugins: dict[str, Any], plugin_config: tuple[str, ...] = ()) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "profiles": [
                {
                    "schedulerName": "mine",
                    "plugins": plugins,
                    "pluginConfig": [{"name": name, "args": {}} for name in plugin_config],
                }
            ],
        }
    )


def config_map(name: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "sys"},
        "data": {"config.yaml": text, "notes.txt": "kind: of free text: ["},
    }


def mounting(config: str, image: str) -> dict[str, Any]:
    deployment = samples.good_deployment()
    spec = deployment["spec"]["template"]["spec"]
    spec["containers"][0]["image"] = image
    spec["volumes"] = [{"name": "config", "configMap": {"name": config}}]
    return deployment


def ext004(*objects: dict[str, Any]) -> list[tuple[str, str]]:
    inventory = embedded.inventory(objects)
    return [(f.field, f.message) for f in checks.audit(inventory) if f.rule == "EXT004"]


def test_a_kube_scheduler_config_refers_to_plugins_that_exist() -> None:
    good = scheduler_config(
        {
            "score": {
                "enabled": [{"name": "NodeResourcesFit", "weight": 2}],
                "disabled": [{"name": "*"}],
            }
        },
        ("NodeResourcesFit",),
    )
    assert ext004(config_map("ks", good)) == []
    typo = scheduler_config(
        {
            "filter": {"enabled": [{"name": "NodeResourceFit"}]},
            "multiPoint": {"disabled": [{"name": "Gone"}]},
        },
        ("Coscheduling",),
    )
    assert ext004(config_map("ks", typo)) == [
        (
            "data.config.yaml",
            "profile mine: plugins.filter.enabled[0] NodeResourceFit, "
            "plugins.multiPoint.disabled[0] Gone, pluginConfig[0] Coscheduling: "
            "no such plugin in kube-scheduler (no consumer of this ConfigMap in the manifests)",
        )
    ]


def test_our_schedulers_config_is_judged_by_our_plugins() -> None:
    ours = scheduler_config({"filter": {"enabled": [{"name": "NodeResourceFit"}]}})
    kubes = scheduler_config({"filter": {"enabled": [{"name": "ImageLocality"}]}})
    deployment = mounting("ks", "registry.example.org/kubext/scheduler:0.1.0")
    assert ext004(config_map("ks", ours), deployment) == []
    [(_, message)] = ext004(config_map("ks", kubes), deployment)
    assert message.endswith("ImageLocality: no such plugin in kubext-scheduler")
    # The real kube-scheduler mounting it: its own plugin names.
    kube_scheduler = mounting("ks", "registry.k8s.io/kube-scheduler:v1.35.4")
    assert ext004(config_map("ks", kubes), kube_scheduler) == []
    # Another scheduler binary may have plugins of its own: not judged.
    other = mounting("ks", "example.org/coscheduler:1.0")
    assert ext004(config_map("ks", kubes), other) == []


def test_the_audits_list_of_our_plugins_is_the_schedulers_registry() -> None:
    from kubext_scheduler.plugins import registry

    assert frozenset(registry.REGISTRY) == extensions.KUBEXT_SCHEDULER_PLUGINS


def test_a_selector_naming_its_own_namespace_is_not_an_exclusion() -> None:
    """`kubernetes.io/metadata.name In [...]` is opt-in by name: fine unless it names
    kube-system or the webhook's own namespace, which a fail-closed webhook can then block."""
    by_name = {"key": "kubernetes.io/metadata.name", "operator": "In"}
    apps_only = webhook(namespaceSelector={"matchExpressions": [{**by_name, "values": ["apps"]}]})
    assert samples.run(apps_only) == []
    own = webhook(namespaceSelector={"matchExpressions": [{**by_name, "values": ["apps", "sys"]}]})
    [finding] = samples.run(own)
    assert (finding.rule, finding.severity) == ("WH005", Severity.ERROR)
    assert finding.message == "pods.example.org: does not exclude sys"
