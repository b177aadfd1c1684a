"""Benchmark: kubext-csi against csi-driver-host-path (the reference driver), in one run.

For each driver: the full volume lifecycle (create, attach, stage, publish, write 1 MiB + fsync,
unpublish, unstage, detach, delete) over N volumes, p50/p99 and per step; the capabilities each reports
over gRPC (GetPluginCapabilities, ControllerGetCapabilities, NodeGetCapabilities,
GroupControllerGetCapabilities, and whether SnapshotMetadata is served), side by side; and
csi-sanity, mount and block, with its passed/skipped/failed counts and wall time.
hostpathplugin comes from bench/build-hostpath.sh (HOSTPATH_SRC=<its source> builds it from its
published source); if it cannot be built the output says so. The last line is the csi-sanity
time ratio.

Run as root (loop devices and mounts):
    eval "$(tools/dev-venv)"; python services/csi/bench/csi_bench.py [--volumes 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]  # kubext_csi when run as a plain script

from kubext_csi import system  # noqa: E402
from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc  # noqa: E402

MiB = 1 << 20
NODE_ID = "bench-node"
SANITY_VOLUME_BYTES = 1 << 30
# attach/detach: ControllerPublish/Unpublish, which a CO calls for both (both advertise
# PUBLISH_UNPUBLISH_VOLUME; the peer refuses a stage without it).
STEPS = (
    "create",
    "attach",
    "stage",
    "publish",
    "write",
    "unpublish",
    "unstage",
    "detach",
    "delete",
)
Mode = csi_pb2.VolumeCapability.AccessMode.Mode
CAP = csi_pb2.VolumeCapability(
    mount=csi_pb2.VolumeCapability.MountVolume(),
    access_mode=csi_pb2.VolumeCapability.AccessMode(mode=Mode.SINGLE_NODE_WRITER),
)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def wait_for_socket(path: Path, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"driver did not start (exit {proc.poll()})")
        time.sleep(0.05)


def start_kubext(root: Path) -> subprocess.Popen:
    config = root / "csi.yaml"
    config.write_text(
        f"endpoint: unix://{root}/csi.sock\nstate_dir: {root}/state\npool_size: 2Ti\n"
        f"node_id: {NODE_ID}\nlog_level: warning\nhealth: {{host: 127.0.0.1, port: 0}}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.Popen(
        [sys.executable, "-m", "kubext_csi", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "driver.log", "wb"),  # noqa: SIM115 - lives as long as the process
        env=env,
    )


def start_hostpath(binary: Path, root: Path) -> subprocess.Popen:
    # Its optional features on, so it offers what ours does (attach, ModifyVolume and
    # SnapshotMetadata are off by default). Mutable parameters: the names csi-sanity uses, so
    # its "not supported" specs see other names refused (unset, the peer accepts any name).
    return subprocess.Popen(
        [
            str(binary),
            f"--endpoint=unix://{root}/csi.sock",
            f"--nodeid={NODE_ID}",
            f"--statedir={root}/state",
            "--enable-attach",
            "--enable-controller-modify-volume",
            "--accepted-mutable-parameter-names=iopsClass,label",
            "--enable-snapshot-metadata",
            "--v=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "driver.log", "wb"),  # noqa: SIM115
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def one_lifecycle(
    controller: csi_pb2_grpc.ControllerStub,
    node: csi_pb2_grpc.NodeStub,
    root: Path,
    index: int,
    payload: bytes,
) -> dict[str, float]:
    """Seconds per step (STEPS)."""
    staging = root / f"staging-{index}"
    staging.mkdir()
    target = root / "pods" / f"pod-{index}"
    marks = [time.perf_counter()]
    volume = controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=f"bench-{index}",
            capacity_range=csi_pb2.CapacityRange(required_bytes=SANITY_VOLUME_BYTES),
            volume_capabilities=[CAP],
        ),
        timeout=60,
    ).volume
    marks.append(time.perf_counter())
    controller.ControllerPublishVolume(
        csi_pb2.ControllerPublishVolumeRequest(
            volume_id=volume.volume_id, node_id=NODE_ID, volume_capability=CAP
        ),
        timeout=60,
    )
    marks.append(time.perf_counter())
    node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=volume.volume_id, staging_target_path=str(staging), volume_capability=CAP
        ),
        timeout=60,
    )
    marks.append(time.perf_counter())
    node.NodePublishVolume(
        csi_pb2.NodePublishVolumeRequest(
            volume_id=volume.volume_id,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=CAP,
        ),
        timeout=60,
    )
    marks.append(time.perf_counter())
    with open(target / "data", "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    marks.append(time.perf_counter())
    node.NodeUnpublishVolume(
        csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume.volume_id, target_path=str(target)),
        timeout=60,
    )
    marks.append(time.perf_counter())
    node.NodeUnstageVolume(
        csi_pb2.NodeUnstageVolumeRequest(
            volume_id=volume.volume_id, staging_target_path=str(staging)
        ),
        timeout=60,
    )
    marks.append(time.perf_counter())
    controller.ControllerUnpublishVolume(
        csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume.volume_id, node_id=NODE_ID),
        timeout=60,
    )
    marks.append(time.perf_counter())
    controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=60)
    marks.append(time.perf_counter())
    steps = {step: marks[k + 1] - marks[k] for k, step in enumerate(STEPS)}
    return {**steps, "total": marks[-1] - marks[0]}


def lifecycle(channel: grpc.Channel, root: Path, count: int) -> dict[str, list[float]]:
    controller = csi_pb2_grpc.ControllerStub(channel)
    node = csi_pb2_grpc.NodeStub(channel)
    times: dict[str, list[float]] = {step: [] for step in (*STEPS, "total")}
    payload = os.urandom(MiB)
    (root / "pods").mkdir()
    for index in range(count):
        for step, seconds in one_lifecycle(controller, node, root, index, payload).items():
            times[step].append(seconds)
    return times


# The VolumeAttributesClass parameters csi-sanity's ModifyVolume specs use (both drivers take
# them: ours validates these keys, the peer accepts any).
MUTABLE_PARAMETERS = "iopsClass: fast\nlabel: sanity\n"


def sanity_run(sanity: Path, endpoint: str, root: Path, access_type: str) -> dict:
    """One csi-sanity run: wall seconds and its junit counts."""
    work = root / f"sanity-{access_type}"
    work.mkdir()
    junit, mutable = work / "junit.xml", work / "mutable.yaml"
    mutable.write_text(MUTABLE_PARAMETERS)
    started = time.perf_counter()
    result = subprocess.run(
        [
            str(sanity),
            f"-csi.endpoint={endpoint}",
            f"-csi.mountdir={work}/mnt",
            f"-csi.stagingdir={work}/staging",
            f"-csi.testvolumesize={SANITY_VOLUME_BYTES}",
            f"-csi.testvolumeaccesstype={access_type}",
            f"-csi.testvolumemutableparameters={mutable}",
            f"-csi.junitfile={junit}",
            "-ginkgo.no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.perf_counter() - started
    counts = {"passed": 0, "skipped": 0, "failed": 0}
    failures: list[str] = []
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            status = case.get("status")
            if status in ("passed", "skipped"):
                counts[status] += 1
            elif status != "pending":
                counts["failed"] += 1
                failure = case.find("failure")
                why = (failure.get("message", "") if failure is not None else "").strip()
                failures.append(f"{case.get('name')}: {why.splitlines()[0] if why else status}")
    else:
        counts["failed"] = -1  # no report: csi-sanity itself failed
        failures.append(result.stdout[-300:] + result.stderr[-300:])
    return {"seconds": elapsed, "rc": result.returncode, "failures": failures, **counts}


def capabilities(channel: grpc.Channel) -> set[str]:
    """What the driver says it offers, as 'service: NAME' entries."""
    found: set[str] = set()
    plugin = csi_pb2_grpc.IdentityStub(channel).GetPluginCapabilities(
        csi_pb2.GetPluginCapabilitiesRequest(), timeout=10
    )
    for cap in plugin.capabilities:
        if cap.HasField("service"):
            name = csi_pb2.PluginCapability.Service.Type.Name(cap.service.type)
            found.add(f"plugin: {name}")
        else:
            name = csi_pb2.PluginCapability.VolumeExpansion.Type.Name(cap.volume_expansion.type)
            found.add(f"plugin: VOLUME_EXPANSION {name}")
    calls = [
        (
            "controller",
            csi_pb2_grpc.ControllerStub(channel).ControllerGetCapabilities,
            csi_pb2.ControllerGetCapabilitiesRequest(),
            csi_pb2.ControllerServiceCapability.RPC.Type,
        ),
        (
            "node",
            csi_pb2_grpc.NodeStub(channel).NodeGetCapabilities,
            csi_pb2.NodeGetCapabilitiesRequest(),
            csi_pb2.NodeServiceCapability.RPC.Type,
        ),
        (
            "group controller",
            csi_pb2_grpc.GroupControllerStub(channel).GroupControllerGetCapabilities,
            csi_pb2.GroupControllerGetCapabilitiesRequest(),
            csi_pb2.GroupControllerServiceCapability.RPC.Type,
        ),
    ]
    for service, call, request, enum in calls:
        try:
            reply = call(request, timeout=10)
        except grpc.RpcError as exc:  # a service the driver does not serve
            found.add(f"{service}: ({exc.code().name})")
            continue
        found.update(f"{service}: {enum.Name(c.rpc.type)}" for c in reply.capabilities)
    # SnapshotMetadata has no capability RPC: a served service answers NOT_FOUND for a
    # snapshot that does not exist, one not served UNIMPLEMENTED.
    probe = csi_pb2_grpc.SnapshotMetadataStub(channel).GetMetadataAllocated(
        csi_pb2.GetMetadataAllocatedRequest(snapshot_id="kx-bench-no-such-snapshot"), timeout=10
    )
    try:
        list(probe)
        found.add("snapshot metadata: GetMetadataAllocated (OK)")
    except grpc.RpcError as exc:
        found.add(f"snapshot metadata: GetMetadataAllocated ({exc.code().name})")
    return found


def measure(name: str, start: Callable[[Path], subprocess.Popen], args) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"kx-bench-{name}-"))
    proc = start(root)
    try:
        wait_for_socket(root / "csi.sock", proc)
        endpoint = f"unix://{root}/csi.sock"
        with grpc.insecure_channel(
            endpoint, options=[("grpc.default_authority", "localhost")]
        ) as channel:
            caps = capabilities(channel)
            times = lifecycle(channel, root, args.volumes)
        sanity = {t: sanity_run(args.sanity, endpoint, root, t) for t in ("mount", "block")}
        return {"times": times, "capabilities": caps, "sanity": sanity}
    finally:
        stop(proc)
        system.release_under(root)
        shutil.rmtree(root, ignore_errors=True)


def report(name: str, result: dict) -> None:
    total = result["times"]["total"]
    steps = "  ".join(f"{s} {statistics.median(result['times'][s]) * 1000:.1f}" for s in STEPS)
    print(
        f"{name}: lifecycle over {len(total)} volumes: p50 {percentile(total, 50) * 1000:.1f} ms, "
        f"p99 {percentile(total, 99) * 1000:.1f} ms, mean {statistics.mean(total) * 1000:.1f} ms"
    )
    print(f"{name}:   per-step p50 ms: {steps}")
    for access_type, run in result["sanity"].items():
        print(
            f"{name}: csi-sanity {access_type}: {run['passed']} passed, {run['skipped']} skipped, "
            f"{run['failed']} failed, exit {run['rc']}, {run['seconds']:.2f} s"
        )
        for failure in run["failures"]:
            print(f"{name}:   failed: {failure[:240]}")


def sanity_total(result: dict) -> float:
    return sum(run["seconds"] for run in result["sanity"].values())


def matrix(ours: set[str], theirs: set[str] | None) -> None:
    """One row per capability either driver reports: 'yes' or '-' for each."""
    print(f"{'capabilities (over gRPC)':<62}kubext-csi  hostpath")
    for entry in sorted(ours | (theirs or set())):
        peer = "n/a" if theirs is None else ("yes" if entry in theirs else "-")
        print(f"  {entry:<60}{'yes' if entry in ours else '-':<12}{peer}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--sanity", type=Path, default=None, help="csi-sanity binary")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("csi bench: needs root (loop devices and mounts)", file=sys.stderr)
        return 2
    subprocess.run(["bash", str(HERE.parent / "scripts" / "ensure-tools.sh")], check=True)
    if args.sanity is None:
        from kubext_rig import tools as rig_tools

        args.sanity = rig_tools.binary("csi-sanity")
    build = subprocess.run(
        ["bash", str(HERE / "build-hostpath.sh")], capture_output=True, text=True, check=False
    )
    hostpath = Path(build.stdout.strip()) if build.returncode == 0 else None

    ours = measure("kubext-csi", start_kubext, args)
    report("kubext-csi", ours)
    p50 = percentile(ours["times"]["total"], 50) * 1000
    print(
        f"kubext-csi: lifecycle p50 {p50:.1f} ms vs target 300 ms: {'ok' if p50 <= 300 else 'MISSED'}"
    )
    if hostpath is None:
        reason = build.stderr.strip().splitlines()[-1] if build.stderr.strip() else "unknown"
        print(f"csi-driver-host-path: not built ({reason}); no comparison in this run")
        matrix(ours["capabilities"], None)
        print("ratio csi-sanity wall time kubext-csi/hostpath: n/a (hostpath not built)")
        return 0
    theirs = measure("hostpath", lambda root: start_hostpath(hostpath, root), args)
    report(f"hostpath {hostpath.parent.name.removeprefix('csi-driver-host-path-')}", theirs)
    matrix(ours["capabilities"], theirs["capabilities"])
    for step in (*STEPS, "total"):
        mine = statistics.median(ours["times"][step])
        peer = statistics.median(theirs["times"][step])
        print(
            f"step {step} p50: kubext-csi {mine * 1000:.1f} ms, hostpath {peer * 1000:.1f} ms, "
            f"ratio {mine / peer:.2f}"
        )
    life_ratio = percentile(ours["times"]["total"], 50) / percentile(theirs["times"]["total"], 50)
    print(f"ratio lifecycle p50 kubext-csi/hostpath: {life_ratio:.2f}")
    for access_type in ("mount", "block"):
        mine, peer = (
            ours["sanity"][access_type]["seconds"],
            theirs["sanity"][access_type]["seconds"],
        )
        print(f"ratio csi-sanity {access_type} wall time kubext-csi/hostpath: {mine / peer:.2f}")
    ratio = sanity_total(ours) / sanity_total(theirs)
    verdict = "ok" if ratio <= 1.5 else "MISSED"
    print(
        f"ratio csi-sanity wall time (mount + block) kubext-csi/hostpath: {ratio:.2f} "
        f"(target <= 1.5: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
