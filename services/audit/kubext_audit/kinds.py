"""The kinds each built-in API group serves (Kubernetes v1.35, every version), so that a typo in
a manifest's kind is an input error rather than an object no check looks at. Groups not listed
here are custom resources or aggregated APIs: any kind goes."""

from __future__ import annotations

BUILT_IN: dict[str, frozenset[str]] = {
    group: frozenset(kinds.split())
    for group, kinds in {
        "": "Binding ComponentStatus ConfigMap Endpoints Event LimitRange Namespace Node "
        "PersistentVolume PersistentVolumeClaim Pod PodTemplate ReplicationController "
        "ResourceQuota Secret Service ServiceAccount",
        "admissionregistration.k8s.io": "MutatingAdmissionPolicy MutatingAdmissionPolicyBinding "
        "MutatingWebhookConfiguration ValidatingAdmissionPolicy "
        "ValidatingAdmissionPolicyBinding ValidatingWebhookConfiguration",
        "apiextensions.k8s.io": "CustomResourceDefinition",
        "apiregistration.k8s.io": "APIService",
        "apps": "ControllerRevision DaemonSet Deployment ReplicaSet StatefulSet",
        "authentication.k8s.io": "SelfSubjectReview TokenRequest TokenReview",
        "authorization.k8s.io": "LocalSubjectAccessReview SelfSubjectAccessReview "
        "SelfSubjectRulesReview SubjectAccessReview",
        "autoscaling": "HorizontalPodAutoscaler Scale",
        "batch": "CronJob Job",
        "certificates.k8s.io": "CertificateSigningRequest ClusterTrustBundle "
        "PodCertificateRequest",
        "coordination.k8s.io": "Lease LeaseCandidate",
        "discovery.k8s.io": "EndpointSlice",
        "events.k8s.io": "Event",
        "flowcontrol.apiserver.k8s.io": "FlowSchema PriorityLevelConfiguration",
        "internal.apiserver.k8s.io": "StorageVersion",
        "networking.k8s.io": "IPAddress Ingress IngressClass NetworkPolicy ServiceCIDR",
        "node.k8s.io": "RuntimeClass",
        "policy": "Eviction PodDisruptionBudget",
        "rbac.authorization.k8s.io": "ClusterRole ClusterRoleBinding Role RoleBinding",
        "resource.k8s.io": "DeviceClass DeviceTaintRule ResourceClaim ResourceClaimTemplate "
        "ResourceSlice",
        "scheduling.k8s.io": "PriorityClass",
        "storage.k8s.io": "CSIDriver CSINode CSIStorageCapacity StorageClass VolumeAttachment "
        "VolumeAttributesClass",
        "storagemigration.k8s.io": "StorageVersionMigration",
    }.items()
}


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def unknown_kind(api_version: str, kind: str) -> str | None:
    """Why ``kind`` cannot be in ``api_version`` (a built-in group that has no such kind), or
    None when it can (a kind of that group, or any kind of a group not built in)."""
    group = group_of(api_version)
    kinds = BUILT_IN.get(group)
    if kinds is None or kind in kinds:
        return None
    elsewhere = sorted(g or "core v1" for g, ks in BUILT_IN.items() if kind in ks)
    hint = f" (it is in {', '.join(elsewhere)})" if elsewhere else ""
    return f"unknown kind {kind} in {api_version}{hint}: not audited"
