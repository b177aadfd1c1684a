"""The framework runtime of one profile: runs its plugins at each extension point, in order.

``schedule`` is the scheduling algorithm of one cycle (PreFilter, Filter over the snapshot,
PostFilter when nothing fits, PreScore, Score with NormalizeScore and weights, host selection);
Reserve to PostBind are run by whoever binds (the standalone scheduler's binder).
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import cast

from kubext_scheduler.framework import interfaces, memo, resources, status
from kubext_scheduler.framework.cycle_state import CycleState, StateError
from kubext_scheduler.framework.interfaces import NodeScore, Pod
from kubext_scheduler.framework.nodeinfo import NodeInfo, Snapshot, pod_key
from kubext_scheduler.framework.status import Code, Status


class ScoreRangeError(ValueError):
    """A plugin's (normalised) score outside 0..MAX_NODE_SCORE: a plugin bug, never clamped."""


@dataclasses.dataclass
class ScheduleResult:
    node_name: str | None
    evaluated: int
    feasible: list[str]
    # Why each rejected node was rejected (the plugin is in Status.plugin).
    statuses: dict[str, Status]
    # Weighted totals per feasible node (empty when one node was feasible: nothing to rank).
    scores: dict[str, int] = dataclasses.field(default_factory=dict)
    nominated_node_name: str | None = None
    # The pods PostFilter (preemption) would delete to make room on nominated_node_name.
    victims: tuple[Pod, ...] = ()
    # A PreFilter/PostFilter failure that concerns the pod, not a node.
    status: Status | None = None

    def message(self) -> str:
        return fit_error_message(self.evaluated, self.statuses, self.status)


def _priority(pod: Pod) -> int:
    """spec.priority (the API server resolves it from the PriorityClass), 0 when unset."""
    value = (pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# kube-scheduler's minFeasibleNodesToFind and minFeasibleNodesPercentageToFind.
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5


def num_feasible_nodes_to_find(percentage: int | None, num_all_nodes: int) -> int:
    """kube-scheduler's numFeasibleNodesToFind: how many feasible nodes a cycle looks for
    before it stops filtering. Unset or 0 is adaptive: 50% less 1% per 125 nodes, at least 5%;
    never fewer than 100 nodes."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return num_all_nodes
    if not percentage:
        percentage = max(50 - num_all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    num_nodes = num_all_nodes * percentage // 100
    return max(num_nodes, MIN_FEASIBLE_NODES_TO_FIND)


def _guard(plugin: str, call: Callable[..., Status | None], *args: object) -> Status | None:
    try:
        return call(*args)
    except (resources.InvalidObject, StateError) as exc:
        return status.error(f"{plugin}: {exc}").with_plugin(plugin)


class Framework:
    def __init__(
        self,
        *,
        scheduler_name: str,
        plugins: Mapping[str, Sequence[interfaces.Plugin]],
        score_weights: Mapping[str, int],
        percentage_of_nodes_to_score: int | None = None,
    ) -> None:
        self.scheduler_name = scheduler_name
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        # Where the next cycle's filtering starts (upstream's nextStartNodeIndex): the nodes
        # a cycle stops before are the first the next one looks at.
        self.next_start_node_index = 0
        # Tuples: the bound methods below are resolved from them once.
        self.plugins = {point: tuple(plugins.get(point, ())) for point in interfaces.POINTS}
        self.score_weights = dict(score_weights)
        for point, kind in interfaces.POINTS.items():
            for plugin in self.plugins[point]:
                if not isinstance(plugin, kind):
                    raise TypeError(f"plugin {plugin.name} does not extend {point}")
        for plugin in {id(p): p for ps in self.plugins.values() for p in ps}.values():
            if isinstance(plugin, interfaces.NeedsHandle):
                plugin.set_handle(self)

        # Each point's (name, bound method) pairs, checked above once: a runtime_checkable
        # Protocol's isinstance per call was most of a Filter's time at 1,000 nodes.
        p = self.plugins
        self._pre_filter = tuple(
            (x.name, x.pre_filter)
            for x in cast("tuple[interfaces.PreFilterPlugin, ...]", p["preFilter"])
        )
        self._filter = tuple(
            (x.name, x.filter) for x in cast("tuple[interfaces.FilterPlugin, ...]", p["filter"])
        )
        self._post_filter = tuple(
            (x.name, x.post_filter)
            for x in cast("tuple[interfaces.PostFilterPlugin, ...]", p["postFilter"])
        )
        self._pre_score = tuple(
            (x.name, x.pre_score)
            for x in cast("tuple[interfaces.PreScorePlugin, ...]", p["preScore"])
        )
        self._score = tuple(
            (
                x.name,
                x.score,
                x.score_nodes if isinstance(x, interfaces.ScoresNodes) else None,
                x.normalize_score if isinstance(x, interfaces.ScoreExtensions) else None,
                self.score_weights.get(x.name, 1),
            )
            for x in cast("tuple[interfaces.ScorePlugin, ...]", p["score"])
        )
        self._reserve = tuple(
            (x.name, x.reserve, x.unreserve)
            for x in cast("tuple[interfaces.ReservePlugin, ...]", p["reserve"])
        )
        self._permit = tuple(
            (x.name, x.permit) for x in cast("tuple[interfaces.PermitPlugin, ...]", p["permit"])
        )
        self._pre_bind = tuple(
            (x.name, x.pre_bind) for x in cast("tuple[interfaces.PreBindPlugin, ...]", p["preBind"])
        )
        self._bind = tuple(
            (x.name, x.bind) for x in cast("tuple[interfaces.BindPlugin, ...]", p["bind"])
        )
        self._post_bind = tuple(
            x.post_bind for x in cast("tuple[interfaces.PostBindPlugin, ...]", p["postBind"])
        )
        sorters = cast("tuple[interfaces.QueueSortPlugin, ...]", p["queueSort"])
        self._less = sorters[0].less if len(sorters) == 1 else None
        # The node-local plugins' verdicts and raw scores, kept per pod signature while the
        # others are skipped for a pod (framework.memo): a cycle re-runs them only on the
        # nodes that changed since a pod alike was scheduled.
        self.memo = memo.NodeMemo()
        # NormalizeScore on the raw scores as a list, where a plugin has it (NormalizesValues).
        self._normalize_values = {
            x.name: x.normalize_values
            for x in p["score"]
            if isinstance(x, interfaces.NormalizesValues)
        }
        self.other_filters = frozenset(
            name for name, _ in self._filter if name not in memo.NODE_LOCAL_FILTERS
        )
        self.other_scorers = frozenset(
            s[0] for s in self._score if s[0] not in memo.NODE_LOCAL_SCORES
        )

    def points_of(self, name: str) -> list[str]:
        return [p for p, ps in self.plugins.items() if any(x.name == name for x in ps)]

    # --- queue ------------------------------------------------------------------------------

    def less(self, a: interfaces.QueuedPodInfo, b: interfaces.QueuedPodInfo) -> bool:
        assert self._less is not None, "a profile has exactly one queueSort plugin"
        return self._less(a, b)

    # --- filtering --------------------------------------------------------------------------

    def run_pre_filter(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status:
        for name, pre_filter in self._pre_filter:
            result = _guard(name, pre_filter, state, pod, nodes)
            if result is None or result.is_success:
                continue
            if result.code is Code.SKIP:
                state.skip_filter.add(name)
                continue
            return result.with_plugin(name)
        return status.SUCCESS

    def run_filter(self, state: CycleState, pod: Pod, node: NodeInfo) -> Status:
        """The first plugin that rejects the node decides, as in kube-scheduler."""
        skip = state.skip_filter
        name = ""
        # One try round the loop, not a _guard call per plugin per node (the hot loop).
        try:
            for name, filter_ in self._filter:
                if name in skip:
                    continue
                result = filter_(state, pod, node)
                if result is not None and result.code is not Code.SUCCESS:
                    return result.with_plugin(name)
        except (resources.InvalidObject, StateError) as exc:
            return status.error(f"{name}: {exc}").with_plugin(name)
        return status.SUCCESS

    def run_filter_kept(
        self, state: CycleState, pod: Pod, node: NodeInfo, key: bytes, node_count: int
    ) -> Status:
        """run_filter, its verdict kept under ``key`` (memo.keyed; the caller checked that
        only node-local Filters run) while the node is this NodeInfo; errors are not kept."""
        record = self.memo.of(node, node_count)
        kept = record.verdicts.get(key)
        if kept is not None:
            return kept
        result = self.run_filter(state, pod, node)
        if result.code is not Code.ERROR:
            record.keep_verdict(key, result)
        return result

    def filter_key(self, state: CycleState, pod: Pod) -> bytes:
        """The key the pod's verdicts are kept under, after PreFilter; b"" when some Filter
        that is not node-local runs for it (nothing is kept then)."""
        if not self.other_filters <= state.skip_filter:
            return b""
        return memo.keyed(memo.node_local_signature(pod), state.skip_filter)

    def run_filter_with_nominated_pods(
        self, state: CycleState, pod: Pod, node: NodeInfo, *, key: bytes = b"", node_count: int = 0
    ) -> Status:
        """RunFilterPluginsWithNominatedPods: the node must pass both without and with the pods
        nominated to it of at least this pod's priority (their room is promised: a pod of lower
        priority must not take it; with them, spread and anti-affinity see them too). The
        with-them run re-runs PreFilter on the snapshot with them added, as upstream's AddPod
        extensions do. With ``key`` the without-them verdict is kept (run_filter_kept)."""
        if key:
            result = self.run_filter_kept(state, pod, node, key, node_count)
        else:
            result = self.run_filter(state, pod, node)
        snapshot = state.snapshot
        if not result.is_success or snapshot is None:
            return result
        candidates = snapshot.nominated.get(node.name)
        if not candidates:
            return result
        own, rank = pod_key(pod), _priority(pod)
        nominated = [p for p in candidates if _priority(p) >= rank and pod_key(p) != own]
        if not nominated:
            return result
        trial = node.clone()
        for other in nominated:
            trial.add_pod({**other, "spec": {**(other.get("spec") or {}), "nodeName": node.name}})
        with_them = snapshot.with_node(trial)
        trial_state = CycleState()
        trial_state.snapshot = with_them
        pre = self.run_pre_filter(trial_state, pod, with_them.nodes)
        if not pre.is_success:
            return pre
        return self.run_filter(trial_state, pod, trial)

    def find_feasible(
        self,
        state: CycleState,
        pod: Pod,
        nodes: Sequence[NodeInfo],
        *,
        limit: int | None = None,
        key: bytes = b"",
    ) -> tuple[list[NodeInfo], dict[str, Status]]:
        """Filter from ``next_start_node_index`` round the nodes until ``limit`` feasible ones
        are found (None: all nodes), and move the start past the nodes looked at; with ``key``
        (filter_key) the verdicts are kept."""
        feasible, rejected = [], {}
        count = len(nodes)
        start = self.next_start_node_index % count if count else 0
        wanted = count if limit is None else limit
        snapshot = state.snapshot
        if key and (snapshot is None or not snapshot.nominated):
            return self._find_feasible_kept(state, pod, nodes, start, wanted, key)
        with_nominated = self.run_filter_with_nominated_pods
        for i in range(count):
            node = nodes[(start + i) % count]
            result = with_nominated(state, pod, node, key=key, node_count=count)
            if result.is_success:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
            else:
                rejected[node.name] = result
        if count:
            self.next_start_node_index = (start + len(feasible) + len(rejected)) % count
        return feasible, rejected

    def _find_feasible_kept(
        self,
        state: CycleState,
        pod: Pod,
        nodes: Sequence[NodeInfo],
        start: int,
        wanted: int,
        key: bytes,
    ) -> tuple[list[NodeInfo], dict[str, Status]]:
        """find_feasible's loop where no pod is nominated anywhere and the verdicts are
        kept: run_filter_kept inlined (the hot loop of a cycle at 1,000 nodes)."""
        feasible: list[NodeInfo] = []
        rejected: dict[str, Status] = {}
        count = len(nodes)
        record_of, kept_record, run_filter = self.memo.of, self.memo.get, self.run_filter
        success, error = Code.SUCCESS, Code.ERROR
        for node in [*nodes[start:], *nodes[:start]]:
            record = kept_record(node.name)
            if record is None or record.info is not node or record.generation != node.generation:
                record = record_of(node, count)
            result = record.verdicts.get(key)
            if result is None:
                result = run_filter(state, pod, node)
                if result.code is not error:
                    record.keep_verdict(key, result)
            if result.code is success:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
            else:
                rejected[node.name] = result
        if count:
            self.next_start_node_index = (start + len(feasible) + len(rejected)) % count
        return feasible, rejected

    def run_post_filter(
        self, state: CycleState, pod: Pod, statuses: Mapping[str, Status]
    ) -> tuple[interfaces.PostFilterResult | None, Status]:
        last = status.unschedulable("no PostFilter plugin made the pod schedulable")
        for name, post_filter in self._post_filter:
            try:
                result, outcome = post_filter(state, pod, statuses)
            except (resources.InvalidObject, StateError) as exc:
                return None, status.error(f"{name}: {exc}").with_plugin(name)
            if status.ok(outcome):
                return result, status.SUCCESS
            assert outcome is not None
            if outcome.code is Code.ERROR:
                return None, outcome.with_plugin(name)
            last = outcome.with_plugin(name)
        return None, last

    # --- scoring ----------------------------------------------------------------------------

    def run_pre_score(self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]) -> Status:
        for name, pre_score in self._pre_score:
            result = _guard(name, pre_score, state, pod, nodes)
            if result is not None and result.code is Code.SKIP:
                state.skip_score.add(name)
            elif not status.ok(result):
                assert result is not None
                return result.with_plugin(name)
        return status.SUCCESS

    def score_key(self, state: CycleState, pod: Pod) -> bytes:
        """The key the pod's raw scores are kept under, after PreScore; b"" when some Score
        plugin that is not node-local runs for it (nothing is kept then)."""
        if not self.other_scorers <= state.skip_score:
            return b""
        return memo.keyed(memo.node_local_signature(pod), state.skip_score)

    def _raw_scores(
        self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo]
    ) -> tuple[list[list[int]], Status]:
        """Each active Score plugin's raw scores of ``nodes`` (a column per plugin)."""
        columns: list[list[int]] = []
        for name, score, score_nodes, _, _ in self._score:
            if name in state.skip_score:
                continue
            values: list[int] = []
            try:
                if not nodes:
                    pass
                elif score_nodes is not None:
                    values = score_nodes(state, pod, nodes)
                else:
                    for node in nodes:
                        value, result = score(state, pod, node)
                        if result is not None and result.code is not Code.SUCCESS:
                            return [], result.with_plugin(name)
                        values.append(value)
            except (resources.InvalidObject, StateError) as exc:
                return [], status.error(f"{name}: {exc}").with_plugin(name)
            columns.append(values)
        return columns, status.SUCCESS

    def _normalized(
        self,
        state: CycleState,
        pod: Pod,
        nodes: Sequence[NodeInfo],
        plugin: tuple[str, int, Callable[..., Status | None] | None],
        values: list[int],
        totals: dict[str, int],
    ) -> Status:
        """Add one plugin's scores (normalised, if it normalises) times its weight."""
        name, weight, normalize_score = plugin
        normalize_values = self._normalize_values.get(name) if normalize_score else None
        names = [n.name for n in nodes]
        if normalize_values is not None:  # no NodeScore per node (the score loop's hot spot)
            out = normalize_values(values)
        elif normalize_score is not None:
            scores = [NodeScore(n, v) for n, v in zip(names, values, strict=True)]
            result = normalize_score(state, pod, scores)
            if not status.ok(result):
                assert result is not None
                return result.with_plugin(name)
            names, out = [s.name for s in scores], [s.score for s in scores]
        else:  # no NodeScore objects to build when nothing normalises them
            out = values
        # Checked at C speed; the node is looked for only when some score is out of range.
        if out and (min(out) < interfaces.MIN_NODE_SCORE or max(out) > interfaces.MAX_NODE_SCORE):
            for node_name, value in zip(names, out, strict=True):
                _check_range(name, node_name, value)
        for node_name, value in zip(names, out, strict=True):
            totals[node_name] += value * weight
        return status.SUCCESS

    def run_score(
        self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo], *, key: bytes = b""
    ) -> tuple[dict[str, int], Status]:
        """Weighted totals per node: each plugin's scores normalised to 0..100, times its
        weight; with ``key`` (score_key) the raw scores are kept per node."""
        if key:
            return self._run_score_kept(state, pod, nodes, key)
        totals = {node.name: 0 for node in nodes}
        columns, raw = self._raw_scores(state, pod, nodes)
        if not raw.is_success:
            return {}, raw
        active = [(s[0], s[4], s[3]) for s in self._score if s[0] not in state.skip_score]
        for plugin, values in zip(active, columns, strict=True):
            added = self._normalized(state, pod, nodes, plugin, values, totals)
            if not added.is_success:
                return {}, added
        return totals, status.SUCCESS

    def _run_score_kept(
        self, state: CycleState, pod: Pod, nodes: Sequence[NodeInfo], key: bytes
    ) -> tuple[dict[str, int], Status]:
        """run_score with each node's raw scores kept while it is the same NodeInfo, and with
        them the weighted sum of the plugins that do not normalise (their raw score is final:
        checked and weighted once); only the nodes without a kept row are scored, and the
        normalising plugins' columns are normalised for each cycle."""
        active = [(s[0], s[4], s[3]) for s in self._score if s[0] not in state.skip_score]
        plugins = tuple(name for name, _, _ in active)
        # The cluster's size, not the candidates' (fewer than the nodes kept). Unknown: none is
        # dropped (the memo's own size was taken for it once, and the memo was cleared
        # whenever it had grown to twice that and 64: the extender scored 350 of its 420
        # nodes afresh for each pod).
        snapshot = state.snapshot
        if snapshot is not None:
            count = len(snapshot.nodes)
        else:
            count = state.node_count or len(self.memo) + len(nodes)
        kept_record, record_of = self.memo.get, self.memo.of
        records: list[memo.Kept] = []
        kept: list[tuple[tuple[str, ...], tuple[int, ...], int] | None] = []
        todo: list[NodeInfo] = []
        for node in nodes:  # memo.of inlined: the score loop's hot spot
            record = kept_record(node.name)
            if record is None or record.info is not node or record.generation != node.generation:
                record = record_of(node, count)
            records.append(record)
            hit = record.scores.get(key)
            if hit is None or hit[0] != plugins:
                hit = None
                todo.append(node)
            kept.append(hit)
        if todo:
            columns, raw = self._raw_scores(state, pod, todo)
            if not raw.is_success:
                return {}, raw
            fixed = [c for c, (_, _, normalize) in enumerate(active) if normalize is None]
            # The final scores of the plugins that do not normalise, checked and weighted.
            static: dict[str, int] = {node.name: 0 for node in todo}
            for c in fixed:
                added = self._normalized(state, pod, todo, active[c], columns[c], static)
                if not added.is_success:
                    return {}, added
            fresh = iter(range(len(todo)))
            for i, hit in enumerate(kept):
                if hit is None:
                    j = next(fresh)
                    row = tuple(column[j] for column in columns)
                    hit = (plugins, row, static[todo[j].name])
                    records[i].keep_scores(key, *hit)
                    kept[i] = hit
        rows = cast("list[tuple[tuple[str, ...], tuple[int, ...], int]]", kept)
        # A column of one value (TaintToleration's 0 where no node has a PreferNoSchedule
        # taint) normalises, element by element, to one value: added to every node at once.
        uniform, varying = 0, []
        for c, plugin in enumerate(active):
            if plugin[2] is None:
                continue
            values = [row[1][c] for row in rows]
            normalize_values = self._normalize_values.get(plugin[0])
            if normalize_values is None or values.count(values[0]) != len(values):
                varying.append((plugin, values))
                continue
            [value] = normalize_values(values[:1])
            _check_range(plugin[0], nodes[0].name, value)
            uniform += value * plugin[1]
        totals = {node.name: row[2] + uniform for node, row in zip(nodes, rows, strict=True)}
        for plugin, values in varying:
            added = self._normalized(state, pod, nodes, plugin, values, totals)
            if not added.is_success:
                return {}, added
        return totals, status.SUCCESS

    def max_total_score(self, *, skipped: Collection[str] = ()) -> int:
        """The highest weighted total a node can get (every score plugin not skipped at
        MAX_NODE_SCORE)."""
        return interfaces.MAX_NODE_SCORE * sum(
            self.score_weights.get(p.name, 1)
            for p in self.plugins["score"]
            if p.name not in skipped
        )

    # --- one cycle --------------------------------------------------------------------------

    def schedule(
        self,
        pod: Pod,
        snapshot: Snapshot,
        *,
        state: CycleState | None = None,
        rng: random.Random | None = None,
    ) -> ScheduleResult:
        """Pick a node for ``pod`` (None and the reasons when none fits); binds nothing."""
        state = state or CycleState()
        state.snapshot = snapshot
        nodes = snapshot.nodes
        pre = self.run_pre_filter(state, pod, nodes)
        if not pre.is_success:
            rejected = {node.name: pre for node in nodes}
            return ScheduleResult(None, len(nodes), [], rejected, status=pre)
        limit = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, len(nodes))
        key = self.filter_key(state, pod)
        feasible, rejected = self.find_feasible(state, pod, nodes, limit=limit, key=key)
        evaluated = len(feasible) + len(rejected)
        if not feasible:
            errors = [s for s in rejected.values() if s.code is Code.ERROR]
            post_result, post = self.run_post_filter(state, pod, rejected)
            return ScheduleResult(
                None,
                len(nodes),
                [],
                rejected,
                nominated_node_name=post_result.nominated_node_name if post_result else None,
                victims=post_result.victims if post_result else (),
                status=errors[0] if errors else post_error(post),
            )
        names = [node.name for node in feasible]
        if len(feasible) == 1:
            return ScheduleResult(names[0], evaluated, names, rejected)
        pre_score = self.run_pre_score(state, pod, feasible)
        if not pre_score.is_success:
            return ScheduleResult(None, evaluated, names, rejected, status=pre_score)
        totals, scored = self.run_score(state, pod, feasible, key=self.score_key(state, pod))
        if not scored.is_success:
            return ScheduleResult(None, evaluated, names, rejected, status=scored)
        return ScheduleResult(
            select_host(totals, rng or random.Random()), evaluated, names, rejected, totals
        )

    # --- binding cycle ----------------------------------------------------------------------

    def run_reserve(self, state: CycleState, pod: Pod, node_name: str) -> Status:
        for name, reserve, _ in self._reserve:
            result = reserve(state, pod, node_name)
            if not status.ok(result):
                assert result is not None
                self.run_unreserve(state, pod, node_name)
                return result.with_plugin(name)
        return status.SUCCESS

    def run_unreserve(self, state: CycleState, pod: Pod, node_name: str) -> None:
        # Every Reserve plugin, in reverse order, including those that never reserved.
        for _, _, unreserve in reversed(self._reserve):
            unreserve(state, pod, node_name)

    def run_permit(self, state: CycleState, pod: Pod, node_name: str) -> tuple[Status, float]:
        """Success, a rejection, or Wait with the longest timeout any plugin asked for."""
        wait = 0.0
        for name, permit in self._permit:
            result, timeout = permit(state, pod, node_name)
            if result is not None and result.code is Code.WAIT:
                wait = max(wait, timeout)
            elif not status.ok(result):
                assert result is not None
                return result.with_plugin(name), 0.0
        return (Status(Code.WAIT), wait) if wait else (status.SUCCESS, 0.0)

    def run_pre_bind(self, state: CycleState, pod: Pod, node_name: str) -> Status:
        for name, pre_bind in self._pre_bind:
            result = pre_bind(state, pod, node_name)
            if not status.ok(result):
                assert result is not None
                return result.with_plugin(name)
        return status.SUCCESS

    def run_bind(self, state: CycleState, pod: Pod, node_name: str) -> Status:
        """The first binder that does not Skip binds."""
        for name, bind in self._bind:
            result = bind(state, pod, node_name)
            if result is not None and result.code is Code.SKIP:
                continue
            return status.SUCCESS if result is None else result.with_plugin(name)
        return status.SKIP

    def run_post_bind(self, state: CycleState, pod: Pod, node_name: str) -> None:
        for post_bind in self._post_bind:
            post_bind(state, pod, node_name)


def _check_range(plugin: str, node_name: str, value: int) -> None:
    if not interfaces.MIN_NODE_SCORE <= value <= interfaces.MAX_NODE_SCORE:
        raise ScoreRangeError(
            f"plugin {plugin} scored node {node_name} {value}, outside "
            f"[{interfaces.MIN_NODE_SCORE}, {interfaces.MAX_NODE_SCORE}]"
        )


def post_error(post: Status) -> Status | None:
    """A PostFilter Error concerns the pod (it is retried with backoff); a plain "could not
    help" leaves the nodes' reasons as the message."""
    return post if post.code is Code.ERROR else None


def select_host(totals: Mapping[str, int], rng: random.Random) -> str:
    """The best-scored node; ties are broken at random (reservoir sampling, as upstream)."""
    best, chosen, seen = -1, "", 0
    for name, score in totals.items():
        if score > best:
            best, chosen, seen = score, name, 1
        elif score == best:
            seen += 1
            if rng.randrange(seen) == 0:
                chosen = name
    return chosen


# The seed's reason words for resources, and the resource names kube-scheduler's summary uses.
_SUMMARY_NAMES = {
    "Insufficient CPU": "Insufficient cpu",
    "Insufficient storage": ("Insufficient ephemeral-storage"),
}


def _histogram_key(reason: str) -> str:
    # NodeResourceFit's reasons carry the amounts per node ("Insufficient CPU: requested 500m,
    # available 200m"); the summary counts them by resource name, as kube-scheduler does
    # ("3 Insufficient cpu").
    if not reason.startswith("Insufficient "):
        return reason
    head = reason.split(": ", 1)[0]
    return _SUMMARY_NAMES.get(head, head)


def fit_error_message(
    evaluated: int, statuses: Mapping[str, Status], pod_status: Status | None = None
) -> str:
    """kube-scheduler's FitError text: ``0/5 nodes are available: 3 Insufficient cpu, 2 node(s)
    had untolerated taint {dedicated: gpu}.``"""
    if pod_status is not None and pod_status.code is not Code.ERROR and pod_status.reasons:
        return f"0/{evaluated} nodes are available: {pod_status.message}."
    counts = Counter(_histogram_key(reason) for s in statuses.values() for reason in s.reasons)
    text = f"0/{evaluated} nodes are available"
    histogram = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"{text}: {', '.join(histogram)}." if histogram else f"{text}."
