"""In-process host-local on host-local's own store, beside the reference host-local binary.

The reference is the real host-local v1.9.0 the rig builds; nothing is faked. No netns or
root is needed: host-local only touches its data directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubext_cni import hostlocal
from kubext_cni.core import ipalloc


@pytest.fixture(scope="module")
def reference_hostlocal() -> str:
    from kubext_rig import tools

    binary = os.path.join(str(tools.binary_dir("bridge")), "host-local")
    if not os.access(binary, os.X_OK):
        pytest.skip("the rig's reference host-local is not built (rig/build.sh cni-plugins)")
    return binary


def _conf(data_dir: Path, *sets: list[dict[str, str]], **ipam: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "kxstore",
        "type": "kubext-bridge",
        "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": list(sets), **ipam},
    }


def _exec_reference(
    binary: str, command: str, conf: dict[str, Any], cid: str
) -> subprocess.CompletedProcess[bytes]:
    """The reference binary called as a runtime calls it."""
    return subprocess.run(
        [binary],
        input=json.dumps(conf).encode(),
        env={
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": "/var/run/netns/none",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": os.path.dirname(binary),
        },
        capture_output=True,
        timeout=60,
        check=False,
    )


def _reference(binary: str, command: str, conf: dict[str, Any], cid: str) -> dict[str, Any]:
    proc = _exec_reference(binary, command, conf, cid)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def _ours(command: str, conf: dict[str, Any], cid: str) -> dict[str, Any]:
    if command == "ADD":
        out = hostlocal.allocate(conf, cid, "eth0", "")
        assert out is not None
        return out
    assert hostlocal.release(conf, cid, "eth0", "") is not None
    return {}


def _addresses(result: dict[str, Any]) -> list[str]:
    return [ip["address"] for ip in result["ips"]]


DUAL = ([{"subnet": "10.9.0.0/28"}], [{"subnet": "fd00:9::/125"}])


def test_interleaved_with_the_reference_no_duplicates_and_each_reads_and_releases_the_other(
    reference_hostlocal: str, tmp_path: Path
) -> None:
    conf = _conf(tmp_path, *DUAL)
    seen: list[str] = []
    for n in range(6):
        call = _ours if n % 2 == 0 else lambda c, f, i: _reference(reference_hostlocal, c, f, i)
        seen += _addresses(call("ADD", conf, f"c{n}"))
    assert len(seen) == len(set(seen)) == 12
    # Round robin from last_reserved_ip + 1, skipping the gateway (.1 / ::1), as host-local does.
    assert seen[0::2] == [f"10.9.0.{n}/28" for n in range(2, 8)]
    assert seen[1::2] == [f"fd00:9::{n}/125" for n in range(2, 8)]
    store = tmp_path / "kxstore"
    assert (store / "10.9.0.2").read_bytes() == b"c0\r\neth0"  # ours, host-local's format
    assert (store / "10.9.0.3").read_bytes() == b"c1\r\neth0"  # the reference's
    assert (store / "last_reserved_ip.0").read_text() == "10.9.0.7"
    assert (store / "last_reserved_ip.1").read_text() == "fd00:9::7"

    _reference(reference_hostlocal, "DEL", conf, "c0")  # the reference releases ours
    _ours("DEL", conf, "c1")  # and we release the reference's
    names = sorted(p.name for p in store.iterdir() if ipalloc.parse_last_reserved(p.name))
    assert "10.9.0.2" not in names and "10.9.0.3" not in names
    assert "fd00:9::2" not in names and "fd00:9::3" not in names
    assert len(names) == 8
    # The reference reads ours as its own: a second ADD of our c4 is its duplicate error.
    proc = _exec_reference(reference_hostlocal, "ADD", conf, "c4")
    assert proc.returncode == 1
    assert "10.9.0.6 has been allocated to c4" in json.loads(proc.stdout)["msg"]


def test_the_same_calls_give_the_reference_addresses(
    reference_hostlocal: str, tmp_path: Path
) -> None:
    """Order parity: a churn with wrap-around, rangeStart/End and a set of two ranges."""
    sets = (
        [{"subnet": "10.8.0.0/29", "rangeStart": "10.8.0.3"}, {"subnet": "10.8.1.0/30"}],
        [{"subnet": "fd00:8::/124", "rangeEnd": "fd00:8::7", "gateway": "fd00:8::3"}],
    )
    steps = [("ADD", f"c{n}") for n in range(4)] + [("DEL", "c1"), ("DEL", "c0")]
    steps += [("ADD", f"d{n}") for n in range(3)] + [("DEL", "c3"), ("ADD", "e0")]
    results = {}
    for side in ("reference", "ours"):
        conf = _conf(tmp_path / side, *sets)
        out = []
        for command, cid in steps:
            if side == "ours":
                out.append(_ours(command, conf, cid).get("ips"))
            else:
                out.append(_reference(reference_hostlocal, command, conf, cid).get("ips"))
        results[side] = out
    assert results["ours"] == results["reference"]
    assert any(ips for ips in results["ours"])


def test_what_host_local_must_answer_itself_is_not_done_in_process(tmp_path: Path) -> None:
    conf = _conf(tmp_path, [{"subnet": "10.7.0.0/30"}])  # one free address: .2
    assert hostlocal.allocate(conf, "a", "eth0", "") is not None
    assert hostlocal.allocate(conf, "b", "eth0", "") is None  # exhausted: host-local's error
    assert hostlocal.allocate(conf, "a", "eth0", "") is None  # duplicate: host-local's error
    assert not [p for p in (tmp_path / "kxstore").iterdir() if (p.read_bytes() == b"b\r\neth0")]
    for bad in (
        _conf(tmp_path, [{"subnet": "10.7.0.1/30"}]),  # host bits set
        _conf(tmp_path, [{"subnet": "10.7.0.0/31"}]),  # too small
        _conf(tmp_path, [{"subnet": "10.7.0.0/24"}], [{"subnet": "10.7.0.128/25"}]),  # overlap
        _conf(tmp_path, [{"subnet": "10.7.0.0/24"}], resolvConf="/etc/resolv.conf"),
        _conf(tmp_path, [{"subnet": "10.7.0.0/24"}, {"subnet": "fd00::/64"}]),  # mixed set
        dict(_conf(tmp_path, [{"subnet": "10.7.0.0/24"}]), runtimeConfig={"ips": ["10.7.0.9"]}),
        dict(_conf(tmp_path, [{"subnet": "10.7.0.0/24"}]), args={"cni": {"ips": ["10.7.0.9"]}}),
        _conf(tmp_path),  # no ranges
    ):
        assert ipalloc.parse(bad, "") is None, bad
        assert hostlocal.release(bad, "a", "eth0", "") is None
    ok = _conf(tmp_path, [{"subnet": "10.7.0.0/24"}])
    assert ipalloc.parse(ok, "IgnoreUnknown=1;K8S_POD_NAME=p") is not None
    assert ipalloc.parse(ok, "K8S_POD_NAME=p") is None  # host-local: "unknown args"
    assert ipalloc.parse(ok, "IgnoreUnknown=1;IP=10.7.0.9") is None  # a requested IP
    assert ipalloc.parse(ok, "IgnoreUnknown=1;A=b=c") is None  # an invalid pair
    legacy = dict(ok, ipam={"type": "host-local", "subnet": "10.6.0.0/24", "ranges": []})
    parsed = ipalloc.parse(legacy, "")
    assert parsed is not None and parsed.ranges[0][0].subnet == ipaddress.ip_network("10.6.0.0/24")


def test_candidates_wrap_from_the_last_reserved_and_skip_the_gateway() -> None:
    config = ipalloc.parse(
        _conf(Path("/x"), [{"subnet": "10.5.0.0/29"}, {"subnet": "10.5.1.0/30"}]), ""
    )
    assert config is not None
    ranges = config.ranges[0]

    def order(last: str | None) -> list[str]:
        ip = ipaddress.ip_address(last) if last else None
        return [str(ip) for _, ip in ipalloc.candidates(ranges, ip)]

    assert order(None) == [f"10.5.0.{n}" for n in range(2, 7)] + ["10.5.1.2"]
    assert order("10.5.0.5") == ["10.5.0.6", "10.5.1.2"] + [f"10.5.0.{n}" for n in range(2, 6)]
    assert order("10.5.1.2") == [f"10.5.0.{n}" for n in range(2, 7)] + ["10.5.1.2"]
    assert order("192.0.2.1") == order(None)  # outside the set: from the start
