"""ipMasq's nft commands run in-process through libnftables, exec'ing ``nft`` only without it.

The first two replace libnftables and subprocess with recorders; the last runs the real
library in a throwaway network namespace and reads the result back with the ``nft`` CLI.
"""

from __future__ import annotations

import ctypes.util
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubext_cni import libnft, masq
from kubext_cni.core import nft

IPS = [ipaddress.ip_interface("10.1.0.5/24")]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    recorded: dict[str, list] = {"libnft": [], "exec": []}

    def in_process(commands: str, *, json_output: bool = False) -> libnft.Result:
        recorded["libnft"].append((commands, json_output))
        return libnft.Result(True, '{"nftables": []}', "")

    def execd(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        recorded["exec"].append(argv)
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(masq, "_which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(libnft, "run", in_process)
    monkeypatch.setattr(subprocess, "run", execd)
    return recorded


def test_listing_and_scripts_do_not_exec_nft(calls: dict[str, list]) -> None:
    script = nft.add_script("net1", "c1", "eth0", IPS)
    assert masq._run("nft", ["-f", "-"], script).ok
    assert masq._run("nft", nft.list_command()).stdout == '{"nftables": []}'
    assert calls["libnft"] == [(script, False), ("list table inet kubext-cni", True)]
    assert calls["exec"] == []


def test_without_libnftables_nft_is_execd(
    calls: dict[str, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(libnft, "run", lambda commands, json_output=False: None)
    masq._run("nft", nft.list_command())
    assert calls["exec"] == [["/usr/sbin/nft", *nft.list_command()]]


def test_iptables_is_still_execd(calls: dict[str, list]) -> None:
    masq._run("iptables-restore", ["-w", "--noflush"], "*nat\nCOMMIT\n")
    assert calls["libnft"] == []
    assert calls["exec"] == [["/usr/sbin/iptables-restore", "-w", "--noflush"]]


@pytest.mark.skipif(
    os.geteuid() != 0
    or not shutil.which("nft")
    or not shutil.which("unshare")
    or not ctypes.util.find_library("nftables"),
    reason="needs root, nft, unshare and libnftables",
)
def test_libnftables_commits_what_the_cli_lists() -> None:
    """In a throwaway netns: ADD's script through the library, the CLI sees the element; a
    bad script is refused with nft's own error text."""
    program = (
        "import ipaddress, json, subprocess\n"
        "from kubext_cni import libnft\n"
        "from kubext_cni.core import nft\n"
        "ips = [ipaddress.ip_interface('10.1.0.5/24')]\n"
        "done = libnft.run(nft.add_script('net1', 'c1', 'eth0', ips))\n"
        "bad = libnft.run('add rule inet kubext-cni nope bogus\\n')\n"
        "cli = subprocess.run(['nft', '-j', 'list', 'table', 'inet', 'kubext-cni'],\n"
        "                     capture_output=True, text=True).stdout\n"
        "print(json.dumps([done.ok, bad.ok, bad.stderr,\n"
        "    [(e.address, e.comment) for e in nft.parse_elements(cli)]]))\n"
    )
    package_root = str(Path(masq.__file__).resolve().parent.parent)
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", program],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([package_root, *sys.path])),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ok, bad_ok, bad_error, elements = json.loads(proc.stdout)
    assert (ok, bad_ok) == (True, False)
    assert "syntax error" in bad_error
    assert elements == [["10.1.0.5", "id=c1 if=eth0"]]
