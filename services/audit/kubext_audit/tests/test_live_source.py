"""The live source without a cluster: a list that RBAC forbids is one problem naming the
resource while the other lists are still read and audited; an unusable kubeconfig or an API
server that is not there is one line, exit 2, never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubext_audit import cluster
from kubext_audit.__main__ import main


class Response:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.reason, self.data = status, "Forbidden" if status == 403 else "OK", b""
        self.data = json.dumps(body).encode()

    def read(self) -> None:
        pass


class FakeApi:
    """The two raw calls cluster.read makes; namespaces are forbidden, the rest served."""

    class configuration:  # the attribute the client has
        host = "https://fake"

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def param_serialize(
        self, method: str, path: str, **_: Any
    ) -> tuple[str, str, dict[str, str], None, None]:
        return method, path, {}, None, None

    def call_api(self, method: str, url: str, **_: Any) -> Response:
        if url == "/api/v1/namespaces":
            return Response(403, {"kind": "Status", "code": 403})
        if url == "/apis/rbac.authorization.k8s.io/v1/clusterroles":
            role = {
                "metadata": {"name": "wild"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            }
            return Response(200, {"items": [role]})
        return Response(200, {"items": []})


def test_a_forbidden_list_is_a_problem_and_the_rest_is_read() -> None:
    listed = cluster.read(FakeApi())  # type: ignore[arg-type]
    assert listed.problems == ["cannot list namespaces (/api/v1/namespaces): 403 Forbidden"]
    assert [(o["kind"], o["metadata"]["name"]) for o in listed.objects] == [("ClusterRole", "wild")]


def test_a_forbidden_list_exits_2_with_the_other_findings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cluster, "api_client", lambda **_: FakeApi())
    assert main(["--output", "json"]) == 2
    out, err = capsys.readouterr()
    assert err == "kubext-audit: cannot list namespaces (/api/v1/namespaces): 403 Forbidden\n"
    assert {f["rule"] for f in json.loads(out)["findings"]} == {"RBAC001", "RBAC003"}


def kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "here",
            }
        )
    )
    return str(path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_api_server_that_is_not_there_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    assert main(["--kubeconfig", kubeconfig(tmp_path, server)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"kubext-audit: cannot reach the API server at {server}: ")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--kubeconfig", "{tmp}/absent"], "no usable cluster configuration: "),
        (
            ["--kubeconfig", "{config}", "--context", "elsewhere"],
            "no usable cluster configuration: ",
        ),
    ],
)
def test_an_unusable_kubeconfig_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    config = kubeconfig(tmp_path, "http://127.0.0.1:1")
    argv = [a.format(tmp=tmp_path, config=config) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kubext-audit: {problem}") and err.count("\n") == 1, err
