"""Profiles from a KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1; the seed's v1beta3
is accepted with a warning), turned into one Framework per schedulerName.

Plugin sets merge over the defaults as kube-scheduler's mergePluginSet does: a default is
dropped when disabled (``*`` drops them all), replaced in place when enabled again (to change its
weight), and every other enabled plugin is appended. Anything wrong (an unknown plugin, a plugin
at a point it does not extend, bad args or weights) is a ProfileError naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pydantic

from kubext import config as kubext_config
from kubext_scheduler.framework import interfaces
from kubext_scheduler.framework.runtime import Framework

V1 = "kubescheduler.config.k8s.io/v1"
V1BETA3 = "kubescheduler.config.k8s.io/v1beta3"
DEFAULT_SCHEDULER_NAME = "kubext-scheduler"


class ProfileError(ValueError):
    """A KubeSchedulerConfiguration the scheduler cannot run; the message names the field."""


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class PluginRef(_Strict):
    name: str = pydantic.Field(min_length=1)
    # Score only; 0 or unset means the default weight (1 for a plugin without one), as upstream.
    weight: pydantic.StrictInt | None = pydantic.Field(None, ge=0, le=1_000_000)


class PluginSet(_Strict):
    enabled: list[PluginRef] = []
    disabled: list[PluginRef] = []


class Plugins(_Strict):
    preEnqueue: PluginSet = PluginSet()
    queueSort: PluginSet = PluginSet()
    preFilter: PluginSet = PluginSet()
    filter: PluginSet = PluginSet()
    postFilter: PluginSet = PluginSet()
    preScore: PluginSet = PluginSet()
    score: PluginSet = PluginSet()
    reserve: PluginSet = PluginSet()
    permit: PluginSet = PluginSet()
    preBind: PluginSet = PluginSet()
    bind: PluginSet = PluginSet()
    postBind: PluginSet = PluginSet()
    # Enables a plugin at every point it extends (weights apply to score).
    multiPoint: PluginSet = PluginSet()


class PluginConfig(_Strict):
    name: str = pydantic.Field(min_length=1)
    args: dict[str, Any] | None = None


class Profile(_Strict):
    schedulerName: str = pydantic.Field(DEFAULT_SCHEDULER_NAME, min_length=1)
    plugins: Plugins = Plugins()
    pluginConfig: list[PluginConfig] = []
    percentageOfNodesToScore: pydantic.StrictInt | None = pydantic.Field(None, ge=0, le=100)


class KubeSchedulerConfiguration(_Strict):
    apiVersion: Literal["kubescheduler.config.k8s.io/v1", "kubescheduler.config.k8s.io/v1beta3"]
    kind: Literal["KubeSchedulerConfiguration"]
    profiles: list[Profile] = pydantic.Field(default_factory=lambda: [Profile()], min_length=1)
    # Accepted for compatibility with kube-scheduler's files; the framework core reads only
    # percentageOfNodesToScore (the standalone scheduler's queue and leader election the rest).
    parallelism: pydantic.StrictInt = pydantic.Field(16, gt=0)
    percentageOfNodesToScore: pydantic.StrictInt | None = pydantic.Field(None, ge=0, le=100)
    podInitialBackoffSeconds: pydantic.StrictInt = pydantic.Field(1, gt=0)
    podMaxBackoffSeconds: pydantic.StrictInt = pydantic.Field(10, gt=0)
    leaderElection: dict[str, Any] | None = None
    clientConnection: dict[str, Any] | None = None
    extenders: list[dict[str, Any]] = []
    delayCacheUntilActive: bool = False


@dataclasses.dataclass(frozen=True)
class PluginSpec:
    """A registry entry: how to build a plugin from its validated args (None: it takes none)."""

    name: str
    new: Callable[[Any], interfaces.Plugin]
    args: type[pydantic.BaseModel] | None = None

    def build(self, raw: Mapping[str, Any] | None, where: str) -> interfaces.Plugin:
        if self.args is None:
            if raw:
                raise ProfileError(f"{where}: plugin {self.name} takes no args")
            return self.new(None)
        try:
            args = self.args.model_validate(dict(raw or {}))
        except pydantic.ValidationError as exc:
            first, *rest = kubext_config.validation_problems(
                exc, root=where, unknown="unknown field"
            )
            more = f" (and {len(rest)} more)" if rest else ""
            raise ProfileError(f"{first}{more}") from None
        except ValueError as exc:
            raise ProfileError(f"{where}: {exc}") from None
        return self.new(args)


Registry = Mapping[str, PluginSpec]
# Per point: (plugin name, default score weight).
DefaultPlugins = Mapping[str, Sequence[tuple[str, int]]]


@dataclasses.dataclass(frozen=True)
class Loaded:
    frameworks: dict[str, Framework]
    warnings: list[str]
    config: KubeSchedulerConfiguration


def _merge(defaults: Sequence[PluginRef], custom: PluginSet) -> list[tuple[PluginRef, int | None]]:
    """kube-scheduler's mergePluginSet; each entry keeps its index in ``custom.enabled``."""
    disabled = {p.name for p in custom.disabled}
    custom_index = {p.name: i for i, p in enumerate(custom.enabled)}
    out: list[tuple[PluginRef, int | None]] = []
    replaced: set[int] = set()
    if "*" not in disabled:
        for plugin in defaults:
            if plugin.name in disabled:
                continue
            if plugin.name in custom_index:
                i = custom_index[plugin.name]
                out.append((custom.enabled[i], i))
                replaced.add(i)
            else:
                out.append((plugin, None))
    out += [(p, i) for i, p in enumerate(custom.enabled) if i not in replaced]
    return out


def _points_of(plugin: interfaces.Plugin) -> list[str]:
    return [point for point, kind in interfaces.POINTS.items() if isinstance(plugin, kind)]


def build_profile(
    profile: Profile,
    where: str,
    registry: Registry,
    defaults: DefaultPlugins,
    *,
    percentage_of_nodes_to_score: int | None = None,
) -> Framework:
    """``percentage_of_nodes_to_score``: the configuration's, used where the profile sets none."""
    # Args first: a plugin is one instance per profile, shared by all its points.
    args: dict[str, Mapping[str, Any] | None] = {}
    for i, entry in enumerate(profile.pluginConfig):
        field = f"{where}.pluginConfig[{i}]"
        if entry.name not in registry:
            raise ProfileError(f"{field}.name: {_unknown(entry.name, registry)}")
        if entry.name in args:
            raise ProfileError(f"{field}.name: {entry.name} is configured twice")
        args[entry.name] = entry.args
    instances: dict[str, interfaces.Plugin] = {}

    def instance(name: str, field: str) -> interfaces.Plugin:
        if name not in registry:
            raise ProfileError(f"{field}: {_unknown(name, registry)}")
        if name not in instances:
            config_field = f"{where}.pluginConfig[{_index(profile, name)}].args"
            instances[name] = registry[name].build(args.get(name), config_field)
        return instances[name]

    multi = profile.plugins.multiPoint
    plugins: dict[str, list[interfaces.Plugin]] = {}
    weights: dict[str, int] = {}
    default_weights = {name: w for point in defaults.values() for name, w in point}
    for point in interfaces.POINTS:
        explicit: PluginSet = getattr(profile.plugins, point)
        # multiPoint plugins join every point they extend, before the point's own list.
        from_multi = [
            p
            for i, p in enumerate(multi.enabled)
            if point
            in _points_of(instance(p.name, f"{where}.plugins.multiPoint.enabled[{i}].name"))
            and p.name not in {e.name for e in explicit.enabled}
        ]
        custom = PluginSet(
            enabled=[*from_multi, *explicit.enabled],
            disabled=[*multi.disabled, *explicit.disabled],
        )
        base = [PluginRef(name=name) for name, _ in defaults.get(point, ())]
        chosen: list[interfaces.Plugin] = []
        for ref, index in _merge(base, custom):
            if index is not None and index >= len(from_multi):
                field = f"{where}.plugins.{point}.enabled[{index - len(from_multi)}].name"
            elif index is not None:
                field = f"{where}.plugins.multiPoint.enabled[{multi.enabled.index(ref)}].name"
            else:
                field = f"{where}.plugins.{point} (default {ref.name})"
            plugin = instance(ref.name, field)
            if point not in _points_of(plugin):
                raise ProfileError(f"{field}: plugin {ref.name} does not extend {point}")
            if any(p.name == ref.name for p in chosen):
                raise ProfileError(f"{field}: plugin {ref.name} is enabled twice at {point}")
            chosen.append(plugin)
            if point == "score":
                weights[ref.name] = ref.weight or default_weights.get(ref.name, 1)
        plugins[point] = chosen
    if len(plugins["queueSort"]) != 1:
        raise ProfileError(
            f"{where}.plugins.queueSort: exactly one plugin must be enabled, "
            f"not {len(plugins['queueSort'])}"
        )
    for name in args:
        if name not in instances:
            raise ProfileError(
                f"{where}.pluginConfig[{_index(profile, name)}].name: plugin {name} is "
                "configured but not enabled at any point"
            )
    percentage = profile.percentageOfNodesToScore
    return Framework(
        scheduler_name=profile.schedulerName,
        plugins=plugins,
        score_weights=weights,
        percentage_of_nodes_to_score=(
            percentage if percentage is not None else percentage_of_nodes_to_score
        ),
    )


def _index(profile: Profile, name: str) -> int | str:
    for i, entry in enumerate(profile.pluginConfig):
        if entry.name == name:
            return i
    return "-"


def _unknown(name: str, registry: Registry) -> str:
    return f"unknown plugin {name!r} (this scheduler has: {', '.join(sorted(registry))})"


def load(data: Mapping[str, Any], registry: Registry, defaults: DefaultPlugins) -> Loaded:
    """Validate a parsed KubeSchedulerConfiguration and build every profile's framework."""
    try:
        cfg = KubeSchedulerConfiguration.model_validate(data)
    except pydantic.ValidationError as exc:
        first, *rest = kubext_config.validation_problems(exc, unknown="unknown field")
        more = f" (and {len(rest)} more)" if rest else ""
        raise ProfileError(f"{first}{more}") from None
    warnings = []
    if cfg.apiVersion == V1BETA3:
        warnings.append(
            f"apiVersion {V1BETA3} was removed from kube-scheduler in v1.29; read as {V1}, "
            "which has the same fields: change the file's apiVersion"
        )
    frameworks: dict[str, Framework] = {}
    for i, profile in enumerate(cfg.profiles):
        where = f"profiles[{i}]"
        if profile.schedulerName in frameworks:
            raise ProfileError(
                f"{where}.schedulerName: {profile.schedulerName!r} names an earlier profile too"
            )
        frameworks[profile.schedulerName] = build_profile(
            profile,
            where,
            registry,
            defaults,
            percentage_of_nodes_to_score=cfg.percentageOfNodesToScore,
        )
    sorters = {type(f.plugins["queueSort"][0]).__name__ for f in frameworks.values()}
    if len(sorters) > 1:
        raise ProfileError("profiles: every profile must use the same queueSort plugin")
    return Loaded(frameworks, warnings, cfg)
