"""``plugin.run``: the whole plugin as a function; its output contract on every error path."""

from __future__ import annotations

import json

import pytest

from kubext_cni import plugin
from kubext_cni.core import errors

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/var/run/netns/kx-never-created",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/nonexistent",
}
CONF = {
    "cniVersion": "0.4.0",
    "name": "net1",
    "type": "kubext-bridge",
    "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"},
}


def _run(env: dict, stdin: bytes) -> tuple[int, dict, str]:
    out = plugin.run(env, stdin)
    return out.exit_code, json.loads(out.stdout), out.stderr.decode()


def test_error_json_has_exactly_the_spec_keys_and_the_configs_version() -> None:
    code, body, _ = _run(ENV, json.dumps(CONF).encode())
    assert code == 1
    assert body == {
        "cniVersion": "0.4.0",
        "code": errors.UNKNOWN_CONTAINER,
        "msg": "network namespace '/var/run/netns/kx-never-created' (CNI_NETNS) does not exist",
    }


def test_an_unsupported_version_answers_in_the_latest_version() -> None:
    code, body, _ = _run(ENV, json.dumps(dict(CONF, cniVersion="0.2.0")).encode())
    assert (code, body["code"], body["cniVersion"]) == (1, 1, "1.1.0")
    assert body["details"] == (
        'config is "0.2.0", plugin supports ["0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]'
    )


def test_no_command_prints_the_about_text_too() -> None:
    code, body, stderr = _run({}, b"")
    assert (code, body["code"]) == (1, errors.INVALID_ENV)
    assert body["msg"] == "required env variables [CNI_COMMAND] missing"
    assert stderr.startswith("CNI plugin kubext-bridge v")
    assert "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in stderr


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        (b'{"cniVersion": "0.4.0"}', "0.4.0"),
        (b"", "1.1.0"),
        (b"garbage", "1.1.0"),
    ],
)
def test_version_echoes_the_requested_version(stdin: bytes, expected: str) -> None:
    out = plugin.run({"CNI_COMMAND": "VERSION"}, stdin)
    assert out.exit_code == 0
    assert json.loads(out.stdout) == {
        "cniVersion": expected,
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_a_bug_still_answers_in_the_protocols_format(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(ctx: plugin.Context) -> bytes:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(plugin.COMMANDS, "STATUS", explode)
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": "/x"}
    code, body, stderr = _run(env, json.dumps(dict(CONF, cniVersion="1.1.0")).encode())
    assert (code, body["code"]) == (1, plugin.INTERNAL_ERROR)
    assert body["msg"] == "internal error: ZeroDivisionError: boom"
    assert "Traceback" in stderr


def test_check_needs_prev_result() -> None:
    env = dict(ENV, CNI_COMMAND="CHECK")
    conf = dict(CONF, ipam={})
    code, body, _ = _run(env, json.dumps(conf).encode())
    assert (code, body["code"], body["msg"]) == (1, 7, "required prevResult missing")


def test_a_failed_delegate_error_is_passed_up_unchanged(tmp_path) -> None:
    fake = tmp_path / "fake-ipam"
    fake.write_text(
        "#!/bin/sh\necho 'ipam log line' >&2\n"
        'echo \'{"cniVersion":"1.1.0","code":7,"msg":"no range","details":"pool empty"}\'\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(tmp_path)}
    conf = dict(CONF, cniVersion="1.1.0", ipam={"type": "fake-ipam"})
    code, body, stderr = _run(env, json.dumps(conf).encode())
    assert (code, body) == (
        1,
        {"cniVersion": "1.1.0", "code": 7, "msg": "no range", "details": "pool empty"},
    )
    assert "ipam log line" in stderr


def test_gc_without_ipam_or_masquerade_has_nothing_to_do() -> None:
    env = {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}
    out = plugin.run(env, json.dumps({"cniVersion": "1.1.0", "name": "n"}).encode())
    assert (out.exit_code, out.stdout) == (0, b"")
