"""When a child is written, and how conditions and status comparisons behave."""

from __future__ import annotations

import pytest

from kubext_operator.planning import common

OWNER = common.Owner("example.com/v1", "WebApp", "a", "ns", "u1")
WANT = common.child(
    api_version="v1", kind="Service", name="a", owner=OWNER, labels={}, body={"spec": {"x": 1}}
)
ONCE = common.Desired("v1", "Secret", "a", {}, "h-secret", create_only=True)


@pytest.mark.parametrize(
    ("desired", "observed_hash", "observed_gen", "expected_hash", "synced_gen", "write"),
    [
        pytest.param(WANT, None, None, None, None, True, id="absent-create"),
        pytest.param(WANT, None, None, WANT.spec_hash, 1, False, id="just-created-not-seen-yet"),
        pytest.param(WANT, "old", 3, None, None, True, id="spec-changed"),
        pytest.param(WANT, WANT.spec_hash, 3, None, None, False, id="identical-after-restart"),
        pytest.param(WANT, "old", 3, WANT.spec_hash, 4, False, id="applied-cache-lags"),
        pytest.param(WANT, WANT.spec_hash, 5, WANT.spec_hash, 4, True, id="edited-by-someone"),
        pytest.param(WANT, WANT.spec_hash, 4, WANT.spec_hash, 4, False, id="in-sync"),
        pytest.param(ONCE, "other", 1, None, None, False, id="create-only-exists"),
        pytest.param(ONCE, None, None, None, None, True, id="create-only-absent"),
    ],
)
def test_needs_apply(
    desired, observed_hash, observed_gen, expected_hash, synced_gen, write
) -> None:
    assert (
        common.needs_apply(
            desired,
            observed_hash=observed_hash,
            observed_generation=observed_gen,
            expected_hash=expected_hash,
            synced_generation=synced_gen,
        )
        is write
    )


def test_hash_ignores_key_order_but_not_values() -> None:
    assert common.spec_hash({"a": 1, "b": 2}) == common.spec_hash({"b": 2, "a": 1})
    assert common.spec_hash({"a": 1}) != common.spec_hash({"a": 2})


def test_set_condition_keeps_other_types_and_sorts() -> None:
    conds = [{"type": "Zeta", "status": "True"}]
    out = common.set_condition(
        conds, type_="Ready", status="True", reason="R", message="m", generation=2, now="t1"
    )
    assert [c["type"] for c in out] == ["Ready", "Zeta"]
    again = common.set_condition(
        out, type_="Ready", status="True", reason="R2", message="m2", generation=3, now="t2"
    )
    ready = again[0]
    assert (ready["lastTransitionTime"], ready["reason"], ready["observedGeneration"]) == (
        "t1",
        "R2",
        3,
    )


def test_same_status_treats_none_as_absent() -> None:
    assert common.same_status({"a": 1}, {"a": 1, "b": None})
    assert not common.same_status({"a": 1}, {"a": 2})
    assert not common.same_status(None, {"a": 1})
