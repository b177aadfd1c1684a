"""`wait_for`: an API error is "not yet", never the awaited result; `gone`: 404 only."""

from __future__ import annotations

import pytest
from kubernetes import client

from kubext_rig.testing import gone, wait_for


def test_an_api_error_is_not_yet_and_the_next_value_is_returned() -> None:
    answers: list[object] = [client.ApiException(status=404, reason="Not Found"), None, "ready"]

    def probe() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for("the thing", probe, timeout=10, every=0.01) == "ready"
    assert answers == []


def test_a_probe_that_only_raises_times_out_naming_the_error() -> None:
    def probe() -> object:
        raise client.ApiException(status=404, reason="Not Found")

    with pytest.raises(AssertionError, match="waiting for the pod; last: '404 Not Found'"):
        wait_for("the pod", probe, timeout=0.2, every=0.05)


def test_gone_is_true_on_404_only() -> None:
    def raises(status: int) -> None:
        raise client.ApiException(status=status)

    assert gone(lambda: raises(404))() is True
    assert gone(lambda: raises(500))() is False
    assert gone(lambda: {"kind": "Pod"})() is False  # still there
