"""The samples' images run by podman: the WebApp sample's web server (`./pants package
images/webapp-sample:image`) and the Database sample's PostgreSQL (images/postgres/build.sh,
Debian bookworm's postgresql-15 from the mirror), the latter the way the operator's planning
runs it: the StatefulSet's env (POSTGRES_USER, POSTGRES_PASSWORD, PGDATA) and data dir, its
readiness probe, and the backup and restore Jobs' own scripts with their DB_* variables.

What runs for real: podman with runc, both images, PostgreSQL 15 (initdb, the server, psql,
pg_dumpall), the operator's backup and restore bash scripts. The exporter sidecar (Debian's
prometheus-postgres-exporter) runs with the flags and env the planning gives it. Not here:
Kubernetes (no kubelet, no PVC: a host directory stands for the volume, host networking for the
pod network and the Services).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubext_operator.planning import backup, engines, monitoring
from kubext_rig.testing import free_port

WEB_VERSION = Path("images/webapp-sample/VERSION").read_text().strip()
WEB_IMAGE = f"localhost/kubext/webapp-sample:{WEB_VERSION}"
PG_IMAGE = "localhost/kubext/postgres:15"
EXPORTER_IMAGE = "localhost/kubext/postgres-exporter:0.11.1"
ENGINE = engines.ENGINES["postgresql"]
PASSWORD = "s3cret-Pw"
RESTRICTED = ["--read-only", "--cap-drop=all", "--security-opt=no-new-privileges"]
READY_TIMEOUT_S = 120.0


def podman(
    *args: str, timeout: float = 180, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, input=stdin
    )


@pytest.fixture
def container() -> Iterator[Callable[..., str]]:
    names: list[str] = []

    def run(*args: str) -> str:
        name = f"kubext-samples-test-{uuid.uuid4().hex[:8]}"
        names.append(name)  # removed after the test even when it failed to start
        result = podman("run", "-d", "--name", name, *args)
        assert result.returncode == 0, result.stderr
        return name

    yield run
    for name in names:
        podman("rm", "--force", "--time=2", name)


def logs(name: str) -> str:
    out = podman("logs", name)
    return (out.stdout + out.stderr)[-3000:]


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "running"


# --- the WebApp sample -------------------------------------------------------------------------


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_webapp_sample_prints_its_version() -> None:
    result = podman("run", "--rm", "--network=none", *RESTRICTED, WEB_IMAGE, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"kubext-webapp-sample {WEB_VERSION}"


def test_webapp_sample_serves_http_on_its_port_as_non_root(container: Callable[..., str]) -> None:
    port = free_port()
    # No --user: the image's own (65532), as the WebApp's Deployment runs it. Host network, as
    # for PostgreSQL below: podman's port forwarding rides on the host's nft rules, which the
    # real-node tests beside this one rewrite (CI saw "serving on :8080" but no answer for 120 s).
    name = container(*RESTRICTED, "--network=host", f"--env=PORT={port}", WEB_IMAGE)
    deadline = time.monotonic() + READY_TIMEOUT_S
    answer: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        assert running(name), logs(name)
        try:
            answer = get(port, "/")
            break
        except OSError:
            time.sleep(0.3)
    assert answer is not None, logs(name)
    assert answer[0] == 200 and "Hello from the kubext WebApp sample" in answer[1], answer
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/nothing-here")[0] == 404
    uid = podman("exec", name, "cat", "/proc/1/status").stdout
    assert any(line.split()[:2] == ["Uid:", "65532"] for line in uid.splitlines()), uid


# --- the Database sample -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_image() -> str:
    """The image, built from the Debian mirror unless cached (then under a second)."""
    result = subprocess.run(
        ["images/postgres/build.sh"], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return PG_IMAGE


def statefulset_env() -> list[str]:
    """The database container's env as the operator's planning writes it, the Secret's keys
    resolved (username is the engine's superuser, as the operator's Secret holds)."""
    secret = {"username": ENGINE.username, "password": PASSWORD}
    out = []
    for name, key, value in ENGINE.env:
        out.append(f"--env={name}={secret[key] if key else value}")
    return out


def fresh_volume(tmp_path: Path, name: str) -> Path:
    """A directory like a fresh filesystem's root on a PVC: root-owned, 0755, lost+found."""
    volume = tmp_path / name
    (volume / "lost+found").mkdir(parents=True)
    volume.chmod(0o755)
    return volume


def psql(
    name: str, port: int, sql: str, *, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    return podman(
        "exec", f"--env=PGPASSWORD={password}", name, "psql", "-h", "127.0.0.1", "-p", str(port),
        "-U", ENGINE.username, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql,
    )  # fmt: skip


def start_postgres(
    container: Callable[..., str], image: str, volume: Path, *extra: str
) -> tuple[str, int]:
    """The StatefulSet's container on the host network (its own port), ready by its probe."""
    port = free_port()
    name = container(
        "--network=host", *extra, *statefulset_env(),
        f"--volume={volume}:{ENGINE.data_dir}", image, "postgres", "-c", f"port={port}",
    )  # fmt: skip
    probe = [*ENGINE.probe, "-p", str(port)]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert running(name), f"postgres stopped: {logs(name)}"
        if podman("exec", name, *probe).returncode == 0:
            return name, port
        time.sleep(0.5)
    raise AssertionError(f"postgres not ready in {READY_TIMEOUT_S} s: {logs(name)}")


@pytest.mark.parametrize(
    "user",
    [
        pytest.param([], id="image-user-as-the-statefulset"),
        pytest.param(["--user=999:999", *RESTRICTED], id="uid-999-read-only-root"),
    ],
)
def test_postgres_initialises_an_empty_volume_and_wants_the_password(
    pg_image: str, container: Callable[..., str], tmp_path: Path, user: list[str]
) -> None:
    volume = fresh_volume(tmp_path, "data")
    if user:
        os.chown(volume, 999, 999)  # a non-root server needs a volume it owns (fsGroup's job)
    name, port = start_postgres(container, pg_image, volume, *user)
    ok = psql(name, port, "SELECT current_user, version(); SHOW server_encoding")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("postgres|PostgreSQL 15."), ok.stdout
    assert ok.stdout.splitlines()[-1] == "UTF8"
    wrong = psql(name, port, "SELECT 1", password="not-it")
    assert wrong.returncode != 0
    assert 'password authentication failed for user "postgres"' in wrong.stderr
    # PGDATA is the planning's subdirectory, owned by the server's user; lost+found untouched.
    pgdata = Path(next(str(v) for n, _, v in ENGINE.env if n == "PGDATA"))
    on_host = volume / pgdata.relative_to(ENGINE.data_dir)
    assert (on_host / "PG_VERSION").read_text().strip() == "15"
    assert on_host.stat().st_uid == 999
    assert (volume / "lost+found").is_dir()


def test_postgres_refuses_to_initialise_without_a_password(pg_image: str, tmp_path: Path) -> None:
    volume = fresh_volume(tmp_path, "data")
    result = podman(
        "run", "--rm", "--network=none", f"--volume={volume}:{ENGINE.data_dir}",
        f"--env=PGDATA={ENGINE.data_dir}/pgdata", pg_image,
    )  # fmt: skip
    assert result.returncode == 1
    assert "POSTGRES_PASSWORD is not set" in result.stderr


def run_job(
    image: str, script: str, backups: Path, port: int, *env: str
) -> subprocess.CompletedProcess[str]:
    """A backup or restore Job's container: the image, `bash -c <the operator's script>`, the
    DB_* variables the planning sets (DB_HOST: the -rw Service, here the host) and /backup."""
    return podman(
        "run", "--rm", "--network=host", f"--volume={backups}:{backup.BACKUP_DIR}",
        "--env=DB_HOST=127.0.0.1", f"--env=PGPORT={port}", "--env=DB_NAME=orders",
        f"--env=DB_USER={ENGINE.username}", f"--env=DB_PASSWORD={PASSWORD}",
        f"--env=BACKUP_DIR={backup.BACKUP_DIR}", "--env=RETENTION=3", *env,
        image, "bash", "-c", script,
    )  # fmt: skip


def test_backup_job_dumps_and_restore_job_brings_the_table_back(
    pg_image: str, container: Callable[..., str], tmp_path: Path
) -> None:
    first, port = start_postgres(container, pg_image, fresh_volume(tmp_path, "first"))
    made = psql(first, port, "CREATE TABLE orders (id int PRIMARY KEY, item text);"
                " INSERT INTO orders VALUES (1, 'tea'), (2, 'crème brûlée')")  # fmt: skip
    assert made.returncode == 0, made.stderr

    backups = tmp_path / "backups"
    backups.mkdir()
    dumped = run_job(pg_image, backup.script(ENGINE.dump), backups, port)
    assert dumped.returncode == 0, dumped.stderr
    dumps = sorted(backups.glob("orders-*.dump.gz"))
    assert len(dumps) == 1, list(backups.iterdir())
    text = gzip.decompress(dumps[0].read_bytes()).decode()
    assert "PostgreSQL database cluster dump" in text
    assert "CREATE TABLE public.orders" in text and "crème brûlée" in text

    second, port2 = start_postgres(container, pg_image, fresh_volume(tmp_path, "second"))
    assert "orders" not in psql(second, port2, "SELECT tablename FROM pg_tables").stdout
    restored = run_job(
        pg_image, backup.restore_script(ENGINE.restore), backups, port2, "--env=RESTORE_FROM=latest"
    )
    assert restored.returncode == 0, restored.stderr
    assert f"restore: loaded {backup.BACKUP_DIR}/{dumps[0].name}" in restored.stdout
    rows = psql(second, port2, "SELECT id, item FROM orders ORDER BY id")
    assert rows.returncode == 0, rows.stderr
    assert rows.stdout.splitlines() == ["1|tea", "2|crème brûlée"]


def test_exporter_sidecar_runs_with_the_planned_flags_and_reports_connections(
    pg_image: str, container: Callable[..., str], tmp_path: Path
) -> None:
    _, port = start_postgres(container, pg_image, fresh_volume(tmp_path, "data"))
    car = monitoring.sidecar(
        "postgresql", ["connections", "disk"], secret="s", image=EXPORTER_IMAGE
    )
    assert car is not None
    secret = {"username": ENGINE.username, "password": PASSWORD}
    env = []
    for item in car["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        value = secret[ref["key"]] if ref else item["value"].replace(":5432/", f":{port}/")
        env.append(f"--env={item['name']}={value}")
    metrics_port = free_port()
    name = container(
        "--network=host", *RESTRICTED, *env, car["image"], *car["args"],
        f"--web.listen-address=127.0.0.1:{metrics_port}",
    )  # fmt: skip
    deadline = time.monotonic() + READY_TIMEOUT_S
    body = ""
    while time.monotonic() < deadline:
        assert running(name), f"exporter stopped: {logs(name)}"
        try:
            status, body = get(metrics_port, "/metrics")
        except OSError:
            status = 0
        if status == 200 and "pg_stat_database_numbackends" in body:
            break
        time.sleep(0.5)
    assert "pg_up 1" in body, logs(name)
    assert 'pg_stat_database_numbackends{datid="' in body  # connections
    assert "pg_database_size_bytes{" in body  # disk
