"""The audit's two sources agree: each of our charts installed on the rig's cluster (helm
install --wait, as tests/helm does it, each release in a namespace of its own) and the same
release rendered by `helm template` (same chart, values, release name and namespace) give the
same findings (check ID, object, field path) when the CLI audits the cluster (`--namespace` of
the release) and the rendered file (`-f`).

What ran for real: etcd, kube-apiserver (its defaulting, admission and RBAC), the
controller-manager (ReplicaSets, EndpointSlices), kube-scheduler and helm. What was a kwok fake:
every node and pod (kwok marks them Running and Ready); no container of ours runs, so no
webhook patches its caBundle in.

Findings that differ by nature, and only those, are left out of the comparison, each asserted
where it is expected:
- live-only checks (CRD009, WH009, EXT003) run against a cluster only: in a file, a Service
  absent from the manifests may be in another one;
- WH001 and WH008 on a webhook whose manifest leaves failurePolicy or reinvocationPolicy unset:
  the API server stores its default (Fail, Never), so a live object cannot show that nobody
  chose it (our charts set both; `test_fields_the_api_server_defaults_are_judged_the_same`
  leaves them out on purpose).
Severities are not compared: WH007 (no caBundle) is an error live, where nothing will inject
one any more, and a warning in a file.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils

from helm import helmcharts  # pants: no-infer-dep
from kubext_audit import checks, cluster
from kubext_audit.__main__ import main
from kubext_audit.checks.model import get
from kubext_rig import tools

# (rule, kind, namespace, name, field path)
Key = tuple[str, str, str, str, str]
LIVE_ONLY = frozenset(r.id for r in checks.RULES if r.live_only)
# A webhook field whose API server default is stored live: (rule, field, the default).
UNSET_IN_MANIFEST = {"WH001": ("failurePolicy", "Fail"), "WH008": ("reinvocationPolicy", "Never")}
WEBHOOK_FIELD = re.compile(r"^webhooks\[(\d+)\]\.(\w+)$")


@dataclass(frozen=True)
class Release:
    chart: str
    # The release's values, given its name (names that must be unique cluster-wide).
    values: Callable[[str], dict[str, Any]] = lambda rel: {}
    # Findings this release must have in both modes (so the comparison is not of two empties).
    expected: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (rule, kind)


def opt_in_webhooks(rel: str) -> dict[str, Any]:
    """The webhooks as the chart registers them (Service, failurePolicy Fail), made opt-in by a
    label no namespace has, so that the shared cluster's requests never meet them."""
    return {"webhooks": {"namespaceSelector": {"matchLabels": {"kubext.io/audit-test": rel}}}}


MISSPELT_PROFILE = [
    {
        "schedulerName": "kubext-scheduler",
        "plugins": {"filter": {"enabled": [{"name": "NodeResourcesFitt"}]}},
    }
]
# The values tests/helm installs each chart with.
RELEASES = {
    "operator": Release("operator"),
    "webhooks": Release(
        "webhooks",
        opt_in_webhooks,
        expected=frozenset(
            {("WH007", "ValidatingWebhookConfiguration"), ("WH007", "MutatingWebhookConfiguration")}
        ),
    ),
    "scheduler": Release("scheduler", expected=frozenset({("WL001", "Deployment")})),
    "scheduler-misspelt-plugin": Release(
        "scheduler",
        lambda rel: {"profiles": MISSPELT_PROFILE},
        expected=frozenset({("EXT004", "ConfigMap")}),
    ),
    "cni": Release("cni", expected=frozenset({("SEC006", "DaemonSet"), ("SEC007", "DaemonSet")})),
    "csi": Release(
        "csi",
        lambda rel: {"config": {"driver_name": f"{rel}.csi.kubext.io"}},
        expected=frozenset({("WL007", "DaemonSet"), ("WL008", "DaemonSet")}),
    ),
    "csi-single-node": Release(
        "csi",
        lambda rel: {
            "config": {"driver_name": f"{rel}.csi.kubext.io"},
            "csiDriver": {"attachRequired": True, "storageCapacity": False},
            "storageClass": {"allowVolumeExpansion": True},
            "sidecars": {"snapshotter": {"enabled": False}, "resizer": {"enabled": True}},
        },
        expected=frozenset({("WL007", "DaemonSet")}),
    ),
    "deviceplugin": Release("deviceplugin", expected=frozenset({("SEC006", "DaemonSet")})),
}


@dataclass(frozen=True)
class Installed:
    name: str
    namespace: str
    values: dict[str, Any]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory, kube_cluster: Any) -> helmcharts.Helm:
    built = helmcharts.Helm.with_built_charts(
        binary=str(tools.binary("helm")), work=tmp_path_factory.mktemp("helm")
    )
    return dataclasses.replace(built, kubeconfig=kube_cluster.kubeconfig)


@pytest.fixture(scope="module")
def installed(helm: helmcharts.Helm, kube_api: client.ApiClient) -> Iterator[dict[str, Installed]]:
    """Every release of RELEASES, installed side by side (helm waits for each one's workloads),
    then uninstalled with their namespaces."""
    core = client.CoreV1Api(kube_api)
    releases: dict[str, Installed] = {}
    for case, release in RELEASES.items():
        name = f"a{uuid.uuid4().hex[:7]}"
        releases[case] = Installed(name, f"audit-{case}-{name}", release.values(name))
    for r in releases.values():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=r.namespace)))

    def install(case: str) -> None:
        r = releases[case]
        helm.install(RELEASES[case].chart, release=r.name, namespace=r.namespace, values=r.values)

    def uninstall(r: Installed) -> None:
        with contextlib.suppress(helmcharts.HelmError):
            helm.uninstall(release=r.name, namespace=r.namespace)
        core.delete_namespace(r.namespace)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(install, releases))
        yield releases
    finally:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(uninstall, releases.values()))


def audit_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The CLI's JSON findings; exit 0 or 1 (findings), never an input error."""
    code = main([*argv, "--output", "json"])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    assert err == ""
    return list(json.loads(out)["findings"])


def key(finding: dict[str, Any]) -> Key:
    o = finding["object"]
    return (finding["rule"], o["kind"], o["namespace"] or "", o["name"], finding["path"])


def ref(obj: dict[str, Any], namespace: str) -> tuple[str, str, str]:
    """An object as the API server names it (a namespaced one without metadata.namespace is
    created in the release's)."""
    meta = obj["metadata"]
    scoped = obj["kind"] in CLUSTER_SCOPED
    return (obj["kind"], "" if scoped else meta.get("namespace") or namespace, meta["name"])


CLUSTER_SCOPED = frozenset(
    {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "CSIDriver",
        "StorageClass",
        "Namespace",
        "APIService",
    }
)


def unset_in_manifest(found: Key, objects: dict[tuple[str, str, str], dict[str, Any]]) -> bool:
    """A WH001/WH008 finding on a field the manifest leaves unset (see the module docstring)."""
    rule, kind, namespace, name, path = found
    match = WEBHOOK_FIELD.match(path)
    if rule not in UNSET_IN_MANIFEST or not match:
        return False
    field_name, _ = UNSET_IN_MANIFEST[rule]
    obj = objects[(kind, namespace, name)]
    return match[2] == field_name and get(obj, "webhooks", int(match[1]), field_name) is None


@dataclass
class Compared:
    files: set[Key]
    live: set[Key]
    live_only: set[Key]  # live-only checks' findings, left out of ``live``
    unset: set[Key]  # WH001/WH008 on unset fields, left out of ``files``


def compare(
    objects: list[dict[str, Any]],
    namespace: str,
    rendered: Path,
    kubeconfig: str,
    capsys: pytest.CaptureFixture[str],
) -> Compared:
    by_ref = {ref(o, namespace): o for o in objects}
    files = {key(f) for f in audit_json(["-f", str(rendered)], capsys)}
    live_all = {
        key(f)
        for f in audit_json(["--kubeconfig", kubeconfig, "--namespace", namespace], capsys)
        if (f["object"]["kind"], f["object"]["namespace"] or "", f["object"]["name"]) in by_ref
    }
    live_only = {k for k in live_all if k[0] in LIVE_ONLY}
    unset = {k for k in files if unset_in_manifest(k, by_ref)}
    return Compared(files - unset, live_all - live_only, live_only, unset)


def live_refs(api: client.ApiClient, namespace: str) -> set[tuple[str, str, str]]:
    listed = cluster.read(api, namespace=namespace)
    assert listed.problems == []
    return {ref(o, namespace) for o in listed.objects}


@pytest.mark.parametrize("case", RELEASES, ids=RELEASES.keys())
def test_live_findings_equal_the_rendered_releases(
    case: str,
    installed: dict[str, Installed],
    helm: helmcharts.Helm,
    kube_api: client.ApiClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    release, r = RELEASES[case], installed[case]
    text = helm.run(
        "template",
        r.name,
        str(helm.charts / release.chart),
        "--namespace",
        r.namespace,
        "--include-crds",
        *helm.values_file(r.values),
    )
    rendered = tmp_path / f"{case}.yaml"
    rendered.write_text(text)
    objects = [o for o in yaml.safe_load_all(text) if o]
    # The audited kinds the release renders all exist live (else equality would be vacuous).
    audited = {kind for kind, *_ in cluster.RESOURCES}
    wanted = {ref(o, r.namespace) for o in objects if o["kind"] in audited}
    assert wanted - live_refs(kube_api, r.namespace) == set()

    compared = compare(objects, r.namespace, rendered, helm.kubeconfig, capsys)
    assert compared.files == compared.live
    assert release.expected <= {(rule, kind) for rule, kind, *_ in compared.files}
    assert compared.unset == set()  # our charts choose failurePolicy and reinvocationPolicy
    if case == "webhooks":
        # Its Service has ready endpoints (kwok's pods): the live-only check finds nothing.
        assert not {k for k in compared.live_only if k[0] == "WH009"}


def minimal_objects(namespace: str, suffix: str) -> list[dict[str, Any]]:
    """Objects that leave out what the API server defaults: a webhook's failurePolicy,
    timeoutSeconds, matchPolicy, reinvocationPolicy and rule scope; a Deployment's replicas and
    strategy; a StatefulSet's update strategy; a CRD's conversion strategy; a Service's type."""
    labels = {"app": f"m-{suffix}", "app.kubernetes.io/component": "controller"}
    container = {"name": "c", "image": "registry.local/app", "ports": [{"containerPort": 8443}]}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [container]}}
    webhook = {
        "clientConfig": {"service": {"namespace": namespace, "name": "hooks"}},
        "sideEffects": "None",  # required by admissionregistration.k8s.io/v1
        "admissionReviewVersions": ["v1"],
        # Opt-in by a label no namespace has: failing closed (the default), it blocks nothing.
        "namespaceSelector": {"matchLabels": {f"audit-{suffix}": "never"}},
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["configmaps"],
            }
        ],
    }
    spec = {"type": "object", "properties": {"size": {"type": "integer"}}}
    schemas = [
        {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
        {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}},
    ]
    group = f"audit{suffix}.example.org"
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "controller", "namespace": namespace, "labels": labels},
            "spec": {"selector": {"matchLabels": labels}, "template": template},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "store", "namespace": namespace},
            "spec": {
                "serviceName": "hooks",
                "replicas": 2,
                "selector": {"matchLabels": {"app": f"s-{suffix}"}},
                "template": {
                    "metadata": {"labels": {"app": f"s-{suffix}"}},
                    "spec": {"containers": [{**container, "image": "registry.local/app:latest"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hooks", "namespace": namespace},
            "spec": {"selector": {"app": f"none-{suffix}"}, "ports": [{"port": 443}]},
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": f"audit-{suffix}"},
            "webhooks": [{**webhook, "name": f"v.audit-{suffix}.example.org"}],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": f"audit-{suffix}"},
            "webhooks": [{**webhook, "name": f"m.audit-{suffix}.example.org"}],
        },
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"things.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
                "versions": [
                    {"name": "v1", "served": True, "storage": True, "schema": schemas[0]},
                    {"name": "v2", "served": True, "storage": False, "schema": schemas[1]},
                ],
            },
        },
    ]


def test_fields_the_api_server_defaults_are_judged_the_same(
    kube_api: client.ApiClient,
    kube_cluster: Any,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suffix = uuid.uuid4().hex[:6]
    objects = minimal_objects(namespace, suffix)
    rendered = tmp_path / "minimal.yaml"
    rendered.write_text("\n---\n".join(json.dumps(o) for o in objects))
    for obj in objects:
        utils.create_from_dict(kube_api, copy.deepcopy(obj))
    admission = client.AdmissionregistrationV1Api(kube_api)
    try:
        compared = compare(objects, namespace, rendered, kube_cluster.kubeconfig, capsys)
        assert compared.files == compared.live
        found = {(rule, kind) for rule, kind, *_ in compared.files}
        # The defaults judged alike: timeoutSeconds 10 (WH004), replicas 1 of a controller
        # (WL001), two served versions of different schemas with conversion None (CRD008);
        # and what the API server leaves as written: unpinned images (WL009), no PDB (WL003).
        assert {
            ("WH004", "ValidatingWebhookConfiguration"),
            ("WH004", "MutatingWebhookConfiguration"),
            ("WL001", "Deployment"),
            ("WL009", "StatefulSet"),
            ("WL003", "StatefulSet"),
            ("CRD008", "CustomResourceDefinition"),
        } <= found
        # The inherent difference, exactly where expected: live, the defaults are stored.
        assert {(rule, kind, path) for rule, kind, _, _, path in compared.unset} == {
            ("WH001", "ValidatingWebhookConfiguration", "webhooks[0].failurePolicy"),
            ("WH001", "MutatingWebhookConfiguration", "webhooks[0].failurePolicy"),
            ("WH008", "MutatingWebhookConfiguration", "webhooks[0].reinvocationPolicy"),
        }
        live = admission.read_mutating_webhook_configuration(f"audit-{suffix}").webhooks[0]
        assert (live.failure_policy, live.reinvocation_policy) == ("Fail", "Never")
    finally:
        admission.delete_validating_webhook_configuration(f"audit-{suffix}")
        admission.delete_mutating_webhook_configuration(f"audit-{suffix}")
        client.ApiextensionsV1Api(kube_api).delete_custom_resource_definition(
            f"things.{group_of(objects)}"
        )


def group_of(objects: list[dict[str, Any]]) -> str:
    (crd,) = (o for o in objects if o["kind"] == "CustomResourceDefinition")
    return str(crd["spec"]["group"])
