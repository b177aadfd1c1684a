"""Config loading: file, environment, and one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from kubext import cli, config


class Nested(config.StrictModel):
    port: int = 1
    name: str = "x"


class Model(config.StrictModel):
    level: str = "info"
    nested: Nested = Nested()


def test_defaults_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("level: debug\nnested:\n  port: 5\n")
    cfg = config.load(
        Model, path=f, env_prefix="T_", environ={"T_NESTED__NAME": "env", "OTHER": "1"}
    )
    assert (cfg.level, cfg.nested.port, cfg.nested.name) == ("debug", 5, "env")


def test_environment_values_are_typed(tmp_path: Path) -> None:
    cfg = config.load(Model, env_prefix="T_", environ={"T_NESTED__PORT": "8443"})
    assert cfg.nested.port == 8443


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("nope: 1\n", "c.yaml: nope: unknown key", id="unknown-top"),
        pytest.param(
            "nested: {porrt: 2}\n", "c.yaml: nested.porrt: unknown key", id="unknown-nested"
        ),
        pytest.param(
            "nested: {port: many}\n",
            "c.yaml: nested.port: Input should be a valid integer",
            id="type",
        ),
        pytest.param("- a\n- b\n", "c.yaml: the top level must be a mapping, not list", id="list"),
        pytest.param("a: [1,\n", "c.yaml: not valid YAML/JSON", id="syntax"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(config.ConfigError) as exc:
        config.load(Model, path=f)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


class Checked(config.StrictModel):
    nested: Nested
    level: str

    @pydantic.field_validator("level")
    @classmethod
    def _lowercase(cls, value: str) -> str:
        if value != value.lower():
            raise ValueError("must be lowercase")
        return value


def test_validation_problems_name_each_key() -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        Checked.model_validate({"nested": {"port": "many", "porrt": 2}, "level": "INFO"})
    assert config.validation_problems(exc.value) == [
        "nested.port: Input should be a valid integer, unable to parse string as an integer",
        "nested.porrt: unknown key",
        "level: must be lowercase",  # without pydantic's "Value error, "
    ]
    assert config.validation_problems(exc.value, root="spec", unknown="unknown field")[1:] == [
        "spec.nested.porrt: unknown field",
        "spec.level: must be lowercase",
    ]


def test_validation_problems_at_the_top_level() -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        Checked.model_validate([1])
    [problem] = config.validation_problems(exc.value)
    assert problem.startswith("(top level): Input should be")
    [problem] = config.validation_problems(exc.value, root="spec")
    assert problem.startswith("spec: Input should be")


def test_bad_environment_is_named() -> None:
    with pytest.raises(config.ConfigError) as exc:
        config.load(Model, env_prefix="T_", environ={"T_NESTED__PORT": "x"})
    assert "T_* environment" in str(exc.value) and "nested.port" in str(exc.value)


def test_json_file(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text('{"level": "warning"}')
    assert config.load(Model, path=f).level == "warning"


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("")
    assert config.load(cli.ServiceConfig, path=f).health.port == 8080


def test_stop_event_is_set_by_sigterm() -> None:
    import os
    import signal

    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop = cli.stop_event()
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(timeout=5)
    finally:
        signal.signal(signal.SIGTERM, previous)
