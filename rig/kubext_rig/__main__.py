"""``python -m kubext_rig up|down|status|build``: the local control plane for tests and the main job."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kubext_rig import cluster, images, stack, tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubext-rig", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start the cluster (reuses a healthy one)")
    p_up.add_argument("--nodes", type=int, default=3, help="kwok fake nodes (default 3)")
    p_up.add_argument("--fresh", action="store_true", help="wipe etcd data first")
    # Default (neither flag): the real node if the machine's one is free, else without it (one
    # line says so); --real-node requires it (refused when another cluster holds it).
    p_up.add_argument(
        "--real-node",
        dest="real_node",
        action="store_true",
        default=None,
        help="require the real node (containerd, kubelet, kube-proxy, registry) named "
        "kubext-node-0, tainted kubext.io/real-node; one per machine. By default a cluster "
        "gets it when no other cluster holds it, and comes up without it otherwise",
    )
    p_up.add_argument("--no-real-node", dest="real_node", action="store_false", help="no real node")
    p_up.add_argument(
        "--services",
        metavar="DIST",
        help="also start the operator, webhooks, scheduler and (with the real node) the device "
        "plugin from the pexes in DIST, and apply the samples",
    )
    p_up.add_argument(
        "--services-from-source",
        action="store_true",
        help="like --services, running the packages with this interpreter (PYTHONPATH)",
    )
    p_up.add_argument("--no-samples", action="store_true", help="with --services: skip examples/")
    p_up.add_argument(
        "--releases",
        action="store_true",
        help="with --services and the real node: the services as Helm releases on that node",
    )
    p_down = sub.add_parser("down", help="stop every process the rig started")
    p_down.add_argument("--keep-data", action="store_true", help="keep etcd data for the next up")
    sub.add_parser("status", help="each component's state, as JSON")
    p_build = sub.add_parser("build", help="build the pinned upstream binaries (cached)")
    p_build.add_argument("components", nargs="*")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    p_images = sub.add_parser("images", help="the services' images and the real node's registry")
    images_sub = p_images.add_subparsers(dest="images_cmd", required=True)
    p_push = images_sub.add_parser(
        "push", help="push the images ./pants package built to this cluster's registry"
    )
    p_push.add_argument("services", nargs="*", help=f"default: all ({', '.join(images.SERVICES)})")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            info = cluster.up(
                nodes=args.nodes,
                fresh=args.fresh,
                real_node=args.real_node is not False,
                require_real_node=args.real_node is True,
            )
            if args.services or args.services_from_source:
                dist = Path(args.services).resolve() if args.services else None
                stack.up(info, dist=dist, samples=not args.no_samples, as_releases=args.releases)
            print(f"export KUBECONFIG={info.kubeconfig}")
        elif args.cmd == "down":
            stack.down(cluster.ClusterInfo(cluster.state_dir()))
            cluster.down(wipe=not args.keep_data)
        elif args.cmd == "status":
            root = cluster.state_dir()
            st = {**cluster.status(root), **stack.status(root)}
            print(json.dumps(st, indent=2))
            components = (s for k, s in st.items() if k != cluster.NO_REAL_NODE_KEY)
            return 0 if all(s == "healthy" for s in components) else 3
        elif args.cmd == "build":
            tools.ensure_built(args.components)
        elif args.cmd == "kubeconfig":
            print(cluster.ClusterInfo(cluster.state_dir()).kubeconfig)
        elif args.cmd == "images":
            registry = images.registry_for(cluster.PORT_OFFSET)
            images.push(args.services, registry=registry, say=lambda line: print(line, flush=True))
    except (cluster.RigError, FileNotFoundError) as exc:
        print(f"kubext-rig: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
