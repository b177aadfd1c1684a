"""The admission configuration objects: fail-closed, side-effect free, never our own namespace."""

from __future__ import annotations

import yaml

from kubext_webhooks import manifests


def hooks(**kw) -> list[dict]:
    objs = manifests.all_configurations(namespace="kubext-system", **kw)
    return [hook for obj in objs for hook in obj["webhooks"]]


def test_every_webhook_is_fail_closed_fast_and_side_effect_free() -> None:
    all_hooks = hooks()
    assert [h["name"] for h in all_hooks] == [
        "pods.validate.webhooks.kubext.io",
        "databases.validate.webhooks.kubext.io",
        "pods.mutate.webhooks.kubext.io",
        "databases.mutate.webhooks.kubext.io",
    ]
    for hook in all_hooks:
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] == 5
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["namespaceSelector"]["matchExpressions"] == [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "kubext-system"],
            }
        ]
        assert hook["clientConfig"]["service"]["namespace"] == "kubext-system"


def test_paths_rules_and_match_conditions() -> None:
    by_name = {h["name"]: h for h in hooks()}
    pods_validate = by_name["pods.validate.webhooks.kubext.io"]
    assert pods_validate["clientConfig"]["service"]["path"] == "/validate/pods"
    assert pods_validate["rules"][0]["resources"] == ["pods", "pods/ephemeralcontainers"]
    assert [c["name"] for c in pods_validate["matchConditions"]] == ["not-terminating"]
    pods_mutate = by_name["pods.mutate.webhooks.kubext.io"]
    assert pods_mutate["rules"][0]["operations"] == ["CREATE"]
    assert pods_mutate["reinvocationPolicy"] == "IfNeeded"
    for name in ("databases.validate.webhooks.kubext.io", "databases.mutate.webhooks.kubext.io"):
        hook = by_name[name]
        assert hook["rules"][0]["apiGroups"] == ["db.example.com"]
        assert hook["rules"][0]["apiVersions"] == ["v1"]
        assert hook["matchConditions"] == [manifests.SPEC_CHANGED]


def test_url_mode_opt_in_labels_and_cert_manager() -> None:
    url_hooks = hooks(url="https://127.0.0.1:8443/")
    assert url_hooks[0]["clientConfig"] == {"url": "https://127.0.0.1:8443/validate/pods"}
    labelled = manifests.validating(namespace="ns", match_labels={"team": "a"})
    assert labelled["webhooks"][0]["namespaceSelector"]["matchLabels"] == {"team": "a"}
    objs = manifests.all_configurations(namespace="ns", cert_manager=True)
    assert all(
        o["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "ns/kubext-webhooks"}
        for o in objs
    )


def test_cli_prints_both_objects(capsys) -> None:
    assert manifests.main(["--namespace", "webhooks"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ]
