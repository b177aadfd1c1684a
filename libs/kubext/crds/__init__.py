"""Typed models of kubext's custom resources, and the CRD manifests generated from them.

One source of truth: the operator, the webhooks and the committed manifests
(``services/operator/deploy/crds/``) all come from these models.

Modules (import the module, use its names):

- ``kubext.crds.webapp``: WebApp ``example.com/v1``. ``WebAppSpec``, ``WebAppStatus``, ``WebApp``;
  constants ``GROUP``, ``VERSION``, ``PLURAL``, ``KIND``, ``PHASES``.
- ``kubext.crds.database``: Database ``db.example.com``.
  v1 (storage): ``DatabaseSpec`` (``Storage``, ``Backup``, ``Monitoring``), ``DatabaseStatus``,
  ``Database``. v1beta1 (deprecated, flat): ``DatabaseSpecV1beta1``, ``DatabaseV1beta1``.
  Conversion of spec bodies, lossless both ways: ``spec_v1beta1_to_v1(dict) -> dict`` and
  ``spec_v1_to_v1beta1(dict) -> dict`` (status is identical in both versions; copy it);
  ``FIELD_MAP`` is the v1 path <-> v1beta1 key bijection they apply.
  Backup schedules are judged by :mod:`kubext.cron` (``cron.schedule_problem``); the schema
  carries its syntax as ``cron.PATTERN``.
- ``kubext.crds.common``: ``Condition`` (metav1.Condition), ``SpecModel``/``StatusModel`` bases.
- ``kubext.crds.schema``: model -> structural OpenAPI v3 schema.
- ``kubext.crds.manifests``: ``webapp_crd()``, ``database_crd(conversion_service=...)``,
  ``all_crds()``, ``write(dir)``, ``drift(dir)``; CLI ``python -m kubext.crds write|check DIR``.

Validation: ``Model.model_validate(body_dict)`` raises ``pydantic.ValidationError``; the models
check everything the CRD schema checks (same patterns, bounds and enums, matched unanchored as
the API server does; a schedule's pattern is implied by its parser), plus what the schema cannot
say (quantity syntax, a schedule's field ranges, zero intervals and dates that never come).
Bodies use the API's camelCase keys; attributes are snake_case; ``model.to_dict()`` gives the
body back with unset optionals left out.
"""
