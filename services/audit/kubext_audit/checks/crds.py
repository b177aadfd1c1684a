"""CustomResourceDefinition design: versions, schemas, subresources, columns and conversion."""

from __future__ import annotations

from collections.abc import Iterator

from kubext_audit.checks import services
from kubext_audit.checks.model import Emit, Inventory, Obj, Severity, get, items, rule

CRD = ("CustomResourceDefinition",)


@rule(
    "CRD001",
    Severity.ERROR,
    CRD,
    title="exactly one storage version",
    rationale="The API server stores every object in one version; none or several is rejected "
    "and a manifest that says otherwise never applies.",
    fix="Set `storage: true` on exactly one entry of spec.versions.",
)
def one_storage_version(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    storage = [v.get("name") for _, v in items(obj, "spec", "versions") if v.get("storage")]
    if len(storage) != 1:
        yield Emit(("spec", "versions"), f"{len(storage)} storage versions {storage}, need one")


@rule(
    "CRD002",
    Severity.WARNING,
    CRD,
    title="deprecated versions carry a warning",
    rationale="A deprecated version without deprecationWarning gives clients no sign that it "
    "will go; they find out when it is removed.",
    fix="Add spec.versions[].deprecationWarning naming the replacement version.",
)
def deprecation_warning(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for index, version in items(obj, "spec", "versions"):
        if version.get("deprecated") and not version.get("deprecationWarning"):
            yield Emit(
                ("spec", "versions", index, "deprecationWarning"),
                f"version {version.get('name')} is deprecated without a deprecationWarning",
            )


@rule(
    "CRD003",
    Severity.ERROR,
    CRD,
    title="every version has a structural schema",
    rationale="Without an openAPIV3Schema the API server validates nothing and prunes nothing: "
    "any typo in a custom resource is stored and reaches the controller.",
    fix="Give each version schema.openAPIV3Schema with typed properties.",
)
def has_schema(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for index, version in items(obj, "spec", "versions"):
        schema = get(version, "schema", "openAPIV3Schema")
        if not isinstance(schema, dict) or not (schema.get("properties") or schema.get("type")):
            yield Emit(
                ("spec", "versions", index, "schema", "openAPIV3Schema"),
                f"version {version.get('name')} has no schema",
            )


@rule(
    "CRD004",
    Severity.WARNING,
    CRD,
    title="no x-kubernetes-preserve-unknown-fields at the root",
    rationale="Preserving unknown fields at the root turns pruning off for the whole object: "
    "misspelt fields are kept silently.",
    fix="Describe the fields; keep x-kubernetes-preserve-unknown-fields to the one free-form "
    "subtree that needs it (and say why in a description).",
)
def no_root_preserve_unknown(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if get(obj, "spec", "preserveUnknownFields"):
        yield Emit(("spec", "preserveUnknownFields"), "pruning is off for the whole CRD")
    for index, version in items(obj, "spec", "versions"):
        schema = get(version, "schema", "openAPIV3Schema")
        if get(schema, "x-kubernetes-preserve-unknown-fields"):
            yield Emit(
                (
                    "spec",
                    "versions",
                    index,
                    "schema",
                    "openAPIV3Schema",
                    "x-kubernetes-preserve-unknown-fields",
                ),
                f"version {version.get('name')} preserves unknown fields at the root",
            )


@rule(
    "CRD005",
    Severity.WARNING,
    CRD,
    title="a status field comes with the status subresource",
    rationale="Without the status subresource, users can write status through the main "
    "resource and a controller's status write can overwrite a user's spec change.",
    fix="Add `subresources: {status: {}}` to each version whose schema has `status`.",
)
def status_subresource(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for index, version in items(obj, "spec", "versions"):
        has_status = get(version, "schema", "openAPIV3Schema", "properties", "status") is not None
        if has_status and get(version, "subresources", "status") is None:
            yield Emit(
                ("spec", "versions", index, "subresources", "status"),
                f"version {version.get('name')} has a status field but no status subresource",
            )


@rule(
    "CRD006",
    Severity.INFO,
    CRD,
    title="a spec.replicas field comes with the scale subresource",
    rationale="The scale subresource lets `kubectl scale`, the HorizontalPodAutoscaler and "
    "PodDisruptionBudgets work with the kind.",
    fix="Add subresources.scale with specReplicasPath .spec.replicas and statusReplicasPath.",
)
def scale_subresource(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for index, version in items(obj, "spec", "versions"):
        replicas = get(
            version, "schema", "openAPIV3Schema", "properties", "spec", "properties", "replicas"
        )
        if replicas is not None and get(version, "subresources", "scale") is None:
            yield Emit(
                ("spec", "versions", index, "subresources", "scale"),
                f"version {version.get('name')} has spec.replicas but no scale subresource",
            )


@rule(
    "CRD007",
    Severity.INFO,
    CRD,
    title="printer columns",
    rationale="`kubectl get` shows only NAME and AGE without additionalPrinterColumns; users "
    "cannot see the state at a glance.",
    fix="Add spec.versions[].additionalPrinterColumns (a phase or Ready column, the key spec).",
)
def printer_columns(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for index, version in items(obj, "spec", "versions"):
        if version.get("served", True) and not version.get("additionalPrinterColumns"):
            yield Emit(
                ("spec", "versions", index, "additionalPrinterColumns"),
                f"version {version.get('name')} has no printer columns",
            )


@rule(
    "CRD008",
    Severity.ERROR,
    CRD,
    title="a conversion strategy when several versions with different schemas are served",
    rationale="With strategy None the API server only rewrites apiVersion: an object stored in "
    "one version is served in another with the fields of the first.",
    fix="Set spec.conversion.strategy: Webhook with a conversion webhook, or serve one version.",
)
def conversion_strategy(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    served = [v for _, v in items(obj, "spec", "versions") if v.get("served")]
    strategy = get(obj, "spec", "conversion", "strategy") or "None"
    schemas = {repr(get(v, "schema")) for v in served}
    if len(served) > 1 and strategy == "None" and len(schemas) > 1:
        names = [v.get("name") for v in served]
        yield Emit(
            ("spec", "conversion", "strategy"),
            f"versions {names} are served with different schemas and no conversion",
        )


@rule(
    "CRD009",
    Severity.ERROR,
    CRD,
    title="the conversion webhook's Service has ready endpoints",
    rationale="Every read and write of a version other than the stored one goes through the "
    "conversion webhook: without it, list and watch of the kind fail for every client.",
    fix="Deploy the webhook (or fix spec.conversion.webhook.clientConfig.service to name it).",
    live_only=True,
)
def conversion_webhook_reachable(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if get(obj, "spec", "conversion", "strategy") != "Webhook":
        return
    path = ("spec", "conversion", "webhook", "clientConfig", "service")
    service = get(obj, *path)
    if isinstance(service, dict):
        problem = services.service_problem(
            inventory, namespace=str(service.get("namespace")), name=str(service.get("name"))
        )
        if problem:
            yield Emit(path, problem)


RULES = (
    one_storage_version,
    deprecation_warning,
    has_schema,
    no_root_preserve_unknown,
    status_subresource,
    scale_subresource,
    printer_columns,
    conversion_strategy,
    conversion_webhook_reachable,
)
