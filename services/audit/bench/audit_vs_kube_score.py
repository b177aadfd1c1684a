"""The audit against kube-score v1.20.0 on one corpus (our charts with their defaults and the
flawed manifests in kubext_audit/tests/corpus/): what each finds per category, then the time
each takes over the same files, the ratio last.

    python services/audit/bench/audit_vs_kube_score.py [--rounds 20]   (dev venv; builds
    kube-score through rig/build.sh when missing)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from helm import helmcharts  # pants: no-infer-dep
from kubext_audit import manifests
from kubext_audit.tests import kube_score_peer as peer
from kubext_rig import tools


def timed(fn: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``fn()`` over ``rounds`` runs, in seconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    helm = helmcharts.Helm.with_built_charts(binary=str(tools.binary("helm")), work=work / "helm")
    sources = {
        f"chart-{chart}": helm.template(chart, extra=["--include-crds"]).objects
        for chart in helmcharts.CHARTS
    }
    sources.update(peer.load_corpus())
    kube_score = tools.binary("kube-score")
    comparison = peer.compare(kube_score, sources, work / "manifests")
    print(comparison.table())
    missed = comparison.missed()
    print(f"\nkube-score flags the audit misses in shared categories: {missed or 'none'}")

    files = peer.write_manifests(sources, work / "manifests")
    objects = sum(len(o) for o in sources.values())
    # Both from the files, as a user runs them: our audit in-process (parse and check; the
    # pex's interpreter start is left out), kube-score as its process.
    ours = timed(lambda: peer.our_flags(manifests.load(map(str, files)).objects), args.rounds)
    theirs = timed(
        lambda: subprocess.run(
            [str(kube_score), *peer.KUBE_SCORE_ARGS, *map(str, files)],
            capture_output=True,
            check=False,
        ),
        args.rounds,
    )
    print(f"\n{objects} objects in {len(files)} files, median of {args.rounds} rounds")
    print(f"audit (parse + check, in-process): {ours * 1000:8.1f} ms")
    print(f"kube-score (process):              {theirs * 1000:8.1f} ms")
    print(f"ratio audit/kube-score: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
