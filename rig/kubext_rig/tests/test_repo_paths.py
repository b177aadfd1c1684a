"""Where the rig finds the checkout: explicitly, never through the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubext_rig import cluster, stack, tools


def test_kubext_repo_names_the_checkout_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "repo/rig").mkdir(parents=True)
    (tmp_path / "repo/rig/versions.env").write_text("ETCD_VERSION=v0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBEXT_REPO", "repo")
    assert tools.repo_root() == tmp_path / "repo"
    assert tools.versions() == {"ETCD_VERSION": "v0"}


def test_a_kubext_repo_without_the_rig_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEXT_REPO", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="KUBEXT_REPO="):
        tools.repo_root()


def test_the_working_directory_is_never_taken_for_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As under `pants run`: the package sits in a pex without versions.env, and the working
    # directory happens to hold a rig/ (the checkout's, or anything else's).
    (tmp_path / "pex").mkdir()
    (tmp_path / "cwd/rig").mkdir(parents=True)
    (tmp_path / "cwd/rig/versions.env").write_text("ETCD_VERSION=v0\n")
    monkeypatch.setattr(tools, "RIG_DIR", tmp_path / "pex")
    monkeypatch.delenv("KUBEXT_REPO", raising=False)
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(FileNotFoundError, match="set KUBEXT_REPO"):
        tools.repo_root()


def test_the_services_get_absolute_paths_that_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEXT_REPO", raising=False)
    monkeypatch.chdir("/")  # the services run elsewhere than where their configs were written
    stack._components(cluster.ClusterInfo(tmp_path), dist=None)
    webhooks = yaml.safe_load((tmp_path / "services/webhooks.yaml").read_text())
    policy = Path(webhooks["policy"]["path"])
    assert policy.is_absolute() and policy.is_file()
    assert Path(webhooks["kubeconfig"]).is_absolute()
