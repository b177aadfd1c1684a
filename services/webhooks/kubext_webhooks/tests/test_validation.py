"""Pod validation: every seed rule, field paths, all violations at once, modes and exemptions."""

from __future__ import annotations

import copy

import pytest

from kubext_webhooks import policy, policy_store, review, validation
from kubext_webhooks.tests import pods

DEFAULT = policy.PodPolicy()


def decide(pod, *, pod_policy=DEFAULT, **kw) -> review.Decision:
    return validation.decide(review.parse_admission(pods.review(pod, **kw)), pod_policy)


def paths(pod, pod_policy=DEFAULT) -> list[str]:
    return [v.path for v in validation.violations(pod, pod_policy)]


@pytest.mark.parametrize(
    ("image", "registry", "path"),
    [
        pytest.param("nginx", "docker.io", "library/nginx", id="bare-name"),
        pytest.param("nginx:1.25", "docker.io", "library/nginx", id="bare-with-tag"),
        pytest.param("bitnami/redis:7", "docker.io", "bitnami/redis", id="hub-org"),
        pytest.param("gcr.io/proj/app:1", "gcr.io", "proj/app", id="host"),
        pytest.param("localhost:5000/app", "localhost:5000", "app", id="host-port"),
        pytest.param("localhost/app", "localhost", "app", id="localhost"),
        pytest.param("index.docker.io/library/nginx", "docker.io", "library/nginx", id="hub-alias"),
        pytest.param("Quay.IO/x/y@sha256:" + "a" * 64, "quay.io", "x/y", id="digest-case"),
        pytest.param(
            "registry.k8s.io/pause:3.9@sha256:" + "b" * 64,
            "registry.k8s.io",
            "pause",
            id="tag-digest",
        ),
    ],
)
def test_image_location(image: str, registry: str, path: str) -> None:
    assert validation.image_location(image) == (registry, path)


@pytest.mark.parametrize(
    ("image", "allowed", "ok"),
    [
        ("nginx", ["docker.io"], True),
        ("docker.io.evil.com/nginx", ["docker.io"], False),  # the seed's prefix match let this in
        ("evil.com/docker.io/nginx", ["docker.io"], False),
        ("registry.company.com/team/app:1", ["registry.company.com"], True),
        ("registry.company.com/team/app:1", ["registry.company.com/team"], True),
        ("registry.company.com/teamx/app:1", ["registry.company.com/team"], False),
        ("nginx", ["registry.company.com"], False),  # 12.9.1: a single registry
        ("index.docker.io/x/y", ["docker.io"], True),
    ],
)
def test_registry_allowed(image: str, allowed: list[str], ok: bool) -> None:
    assert validation.registry_allowed(image, allowed) is ok


def test_compliant_pod_is_admitted_without_warnings() -> None:
    decision = decide(pods.compliant_pod())
    assert decision.allowed and not decision.warnings and decision.patch is None


def test_denial_lists_every_violation_with_its_path() -> None:
    pod = pods.compliant_pod()
    pod["metadata"]["labels"] = {"app": "web"}
    pod["spec"]["hostNetwork"] = True
    pod["spec"]["hostPID"] = True
    pod["spec"]["securityContext"] = {"runAsUser": 0}
    pod["spec"]["initContainers"] = [
        pods.container("init", image="evil.io/x", securityContext={"privileged": True})
    ]
    pod["spec"]["ephemeralContainers"] = [
        {"name": "debug", "image": "busybox", "securityContext": {"runAsNonRoot": False}}
    ]
    del pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
    pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "0"
    decision = decide(pod)
    assert not decision.allowed and decision.code == 403
    expected = [
        "metadata.labels.version",
        "metadata.labels.environment",
        "spec.hostNetwork",
        "spec.hostPID",
        "spec.securityContext.runAsUser",
        "spec.ephemeralContainers[0].securityContext.runAsNonRoot",
        "spec.initContainers[0].image",
        "spec.initContainers[0].securityContext.privileged",
        "spec.containers[0].resources.requests.cpu",
        "spec.containers[0].resources.limits.memory",
    ]
    assert sorted(paths(pod)) == sorted(expected)
    assert "(10 violations)" in decision.message
    for path in expected:
        assert f"{path}: " in decision.message
    assert "pod team-a/web violates policy default" in decision.message
    assert "'evil.io'" in decision.message and "non-zero requests.cpu" in decision.message


def test_ephemeral_containers_are_not_held_to_the_resources_rule() -> None:
    # The API server forbids resources on ephemeral containers; requiring them would deny all.
    pod = pods.compliant_pod(ephemeralContainers=[{"name": "dbg", "image": "busybox"}])
    assert paths(pod) == []
    pod["spec"]["ephemeralContainers"][0]["image"] = "ghcr.io/x/dbg"
    assert paths(pod) == ["spec.ephemeralContainers[0].image"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1", True),
        ("0.5", True),
        ("1e-3", True),
        (2, True),
        ("0m", False),
        ("0", False),
        ("-1", False),
        ("lots", False),
    ],
)
def test_resource_quantities(value, ok: bool) -> None:
    pod = pods.compliant_pod()
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = value
    assert (paths(pod) == []) is ok


def test_missing_resources_block_entirely() -> None:
    pod = pods.compliant_pod()
    del pod["spec"]["containers"][0]["resources"]
    assert len(paths(pod)) == 4


def test_container_level_root_settings() -> None:
    pod = pods.compliant_pod()
    pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0, "runAsNonRoot": False}
    assert paths(pod) == [
        "spec.containers[0].securityContext.runAsNonRoot",
        "spec.containers[0].securityContext.runAsUser",
    ]


def test_audit_mode_allows_with_warnings_and_audit_annotation() -> None:
    audit = policy.PodPolicy.model_validate({"spec": {"mode": "Audit"}})
    pod = pods.compliant_pod()
    pod["spec"]["hostIPC"] = True
    decision = decide(pod, pod_policy=audit)
    assert decision.allowed
    assert decision.warnings == ["policy default (audit): spec.hostIPC: hostIPC is not allowed"]
    assert decision.audit_annotations == {
        "policy-violations": "spec.hostIPC: hostIPC is not allowed"
    }


def test_namespace_overrides_first_match_wins() -> None:
    pod_policy = policy.PodPolicy.model_validate(
        {
            "spec": {
                "namespaces": [
                    {"names": ["legacy-*"], "exemptRules": ["allowedRegistries"], "mode": "Audit"},
                    {"names": ["legacy-db", "sandbox"], "exemptRules": ["*"]},
                ]
            }
        }
    )
    pod = pods.compliant_pod()
    pod["spec"]["containers"][0]["image"] = "evil.io/x"
    pod["spec"]["hostNetwork"] = True
    legacy = decide(pod, pod_policy=pod_policy, namespace="legacy-db")
    assert legacy.allowed and [w.split(": ", 1)[1] for w in legacy.warnings] == [
        "spec.hostNetwork: hostNetwork is not allowed"
    ]
    assert decide(pod, pod_policy=pod_policy, namespace="sandbox").allowed
    assert not decide(pod, pod_policy=pod_policy, namespace="team-a").allowed


def test_disabled_rules_and_single_registry() -> None:
    pod_policy = policy.PodPolicy.model_validate(
        {
            "spec": {
                "rules": {
                    "allowedRegistries": {"registries": ["registry.company.com"]},
                    "requiredLabels": {"enabled": False},
                    "resources": {"resources": ["cpu"]},
                }
            }
        }
    )
    pod = pods.compliant_pod()
    pod["metadata"]["labels"] = {}
    del pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert paths(pod, pod_policy) == ["spec.containers[0].image"]


def test_update_is_judged_only_on_what_it_makes_worse() -> None:
    old = pods.compliant_pod()
    old["metadata"]["labels"].pop("environment")  # admitted before the rule existed
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["team"] = "x"
    assert decide(new, operation="UPDATE", old=old).allowed
    new["spec"]["containers"][0]["image"] = "evil.io/x"
    decision = decide(new, operation="UPDATE", old=old)
    assert not decision.allowed
    assert "spec.containers[0].image" in decision.message
    assert "environment" not in decision.message


def test_terminating_pod_updates_pass_and_delete_is_allowed() -> None:
    pod = pods.compliant_pod()
    pod["spec"]["hostNetwork"] = True
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert decide(pod, operation="UPDATE", old=pod).allowed
    assert decide(None, operation="DELETE", old=pod).allowed


@pytest.mark.parametrize(
    ("obj", "kind", "message"),
    [
        pytest.param(
            pods.compliant_pod(),
            {"group": "apps", "version": "v1", "kind": "Deployment"},
            "validates core/v1 Pods, got apps/v1 Deployment",
            id="not-a-pod",
        ),
        pytest.param(None, None, "malformed Pod: expected a Pod object, got null", id="no-object"),
        pytest.param(
            {"spec": {"containers": "web"}},
            None,
            "malformed Pod: spec.containers: expected an array, got string",
            id="containers-string",
        ),
        pytest.param(
            {"spec": {"containers": [{"securityContext": []}]}},
            None,
            "spec.containers[0].securityContext: expected an object, got array",
            id="sc-array",
        ),
        pytest.param(
            {"metadata": {"labels": {"app": 1}}},
            None,
            "metadata.labels['app']: expected a string, got number",
            id="label-number",
        ),
        pytest.param(
            {"spec": {"hostNetwork": "yes"}},
            None,
            "spec.hostNetwork: expected a boolean, got string",
            id="bool-string",
        ),
        pytest.param(
            {"spec": {"containers": [{"resources": {"limits": {"cpu": True}}}]}},
            None,
            "limits['cpu']: expected a quantity",
            id="quantity-bool",
        ),
    ],
)
def test_malformed_objects_are_denied_with_400(obj, kind, message: str) -> None:
    decision = decide(obj, kind=kind)
    assert not decision.allowed and decision.code == 400
    assert message in decision.message


def test_policy_validation_names_the_key() -> None:
    with pytest.raises(
        policy.PolicyError, match=r"src: spec.namespaces.0.exemptRules: .*unknown rule 'nope'"
    ):
        policy.parse_policy("spec: {namespaces: [{names: [a], exemptRules: [nope]}]}", source="src")
    with pytest.raises(policy.PolicyError, match=r"spec.rules.noPrivilege: unknown key"):
        policy.parse_policy("spec: {rules: {noPrivilege: {}}}", source="src")
    with pytest.raises(policy.PolicyError, match="spec.mode: Input should be 'Enforce' or 'Audit'"):
        policy.parse_policy("spec: {mode: enforce}", source="src")
    with pytest.raises(policy.PolicyError, match="not valid YAML at line 1"):
        policy.parse_policy("spec: [", source="src")
    with pytest.raises(
        policy.PolicyError, match="allowedRegistries.registries: 'https://x' is not a registry"
    ):
        policy.parse_policy(
            "spec: {rules: {allowedRegistries: {registries: ['https://x']}}}", source="s"
        )


def test_store_hot_reloads_valid_files_and_keeps_the_old_policy_on_errors(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("spec: {mode: Enforce}\n")
    results: list[str] = []
    store = policy_store.PolicyStore.open(str(path), on_reload=results.append)
    assert store.policy.spec.mode is policy.Mode.ENFORCE
    assert store.maybe_reload() is False  # unchanged content
    path.write_text("spec: {mode: Audit}\n")
    assert store.maybe_reload() is True
    assert store.policy.spec.mode is policy.Mode.AUDIT
    path.write_text("spec: {mode: Sometimes}\n")
    assert store.maybe_reload() is False
    assert store.policy.spec.mode is policy.Mode.AUDIT
    assert store.maybe_reload() is False  # the same bad file is reported once
    path.unlink()
    assert store.maybe_reload() is False
    assert results == ["success", "error", "error"]


def test_store_refuses_an_invalid_file_at_start(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("kind: NetworkPolicy\n")
    with pytest.raises(policy.PolicyError, match="kind: Input should be 'PodPolicy'"):
        policy_store.PolicyStore.open(str(path))


def test_shipped_example_policy_is_valid_and_matches_the_default() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "deploy" / "policy.yaml"
    loaded = policy_store.PolicyStore.open(str(example)).policy
    assert loaded.spec.rules == policy.Rules()


# Registries run by the projects and vendors that publish public images; a default may name
# nothing else (a placeholder domain would be trusted for whoever registers it).
PUBLIC_REGISTRIES = {
    "docker.io",
    "gcr.io",
    "quay.io",
    "registry.k8s.io",
    "ghcr.io",
    "public.ecr.aws",
}
PLACEHOLDER_WORDS = ("your", "my-", "example", "company", "private", "placeholder", "changeme")
RESERVED_TLDS = (".test", ".example", ".invalid", ".localhost", ".local")


@pytest.mark.parametrize(
    "registries",
    [
        pytest.param(policy.DEFAULT_REGISTRIES, id="built-in"),
        pytest.param(policy.Rules().allowed_registries.registries, id="rule-default"),
    ],
)
def test_no_default_registry_is_a_placeholder_domain(registries: list[str]) -> None:
    assert registries, "the default policy allows some public registry"
    for registry in registries:
        host = registry.split("/", 1)[0]
        assert host in PUBLIC_REGISTRIES, registry
        assert not any(word in host for word in PLACEHOLDER_WORDS), registry
        assert not host.endswith(RESERVED_TLDS), registry


def test_an_unknown_registry_is_denied_by_the_default_policy() -> None:
    pod = pods.compliant_pod()
    pod["spec"]["containers"][0]["image"] = "your-private-registry.com/payments/api:4.2.0"
    assert paths(pod) == ["spec.containers[0].image"]
