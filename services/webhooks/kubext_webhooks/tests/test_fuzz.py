"""Hypothesis fuzzing of every webhook endpoint, in-process: over 10,000 generated requests.

Whatever arrives, the answer is a 4xx ``Status`` with a message or a well-formed review of the
endpoint's kind whose uid matches; never a 5xx, never an internal-error answer (that would be a
bug in a decider), and a mutating patch always applies to the object it was computed for.
Besides random and mangled documents, objects nested hundreds to thousands of levels deep and
conversion residue annotations of every shape and type.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubext_webhooks import app, conversion, policy_store
from kubext_webhooks.tests import asgi, pods

ADMISSION_PATHS = ("/validate/pods", "/mutate/pods", "/validate/databases", "/mutate/databases")
PATHS = (*ADMISSION_PATHS, "/convert")
FUZZ: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}

_ctx = app.Context(policies=policy_store.PolicyStore.open(None), max_body_bytes=64 * 1024)
APP = app.create_app(_ctx)
LOOP = asyncio.new_event_loop()

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "0", "100m", "Pod", "v1", "CREATE", "UPDATE", "true", "a/b~c"]),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.text(max_size=10) | st.sampled_from(["spec", "metadata", "containers", "labels"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


def check(path: str, status: int, headers: dict[bytes, bytes], body: bytes, sent: Any) -> None:
    assert status < 500, (path, status, body[:300])
    assert headers[b"content-type"].startswith(b"application/json")
    answer = json.loads(body)
    if status != 200:
        assert status in (400, 404, 413, 415)
        assert answer["kind"] == "Status" and answer["message"], answer
        return
    response = answer["response"]
    assert answer["apiVersion"] == sent["apiVersion"]
    assert response["uid"] == sent["request"]["uid"]
    if path == "/convert":
        assert answer["kind"] == "ConversionReview"
        result = response["result"]
        if result["status"] == "Failure":
            assert result["message"] and response["convertedObjects"] == []
            assert "internal error" not in result["message"], result  # conversion raised: a bug
        else:
            assert result == {"status": "Success"}
            desired = sent["request"]["desiredAPIVersion"]
            objects = sent["request"].get("objects") or []
            assert len(response["convertedObjects"]) == len(objects)
            assert all(o["apiVersion"] == desired for o in response["convertedObjects"])
        return
    assert answer["kind"] == "AdmissionReview"
    assert isinstance(response["allowed"], bool)
    status_obj = response.get("status") or {}
    assert status_obj.get("code") != 500, status_obj  # a decider raised: a bug
    if "patch" in response:
        ops = json.loads(base64.b64decode(response["patch"]))
        jsonpatch.JsonPatch(ops).apply(copy.deepcopy(sent["request"]["object"]))


class Counter:
    requests = 0


def send(
    path: str, body: bytes, headers=((b"content-type", b"application/json"),)
) -> tuple[int, dict[bytes, bytes], bytes]:
    Counter.requests += 1
    return LOOP.run_until_complete(asgi.call(APP, path, body, headers=headers))


# 1. Arbitrary bytes and content types.
@given(
    body=st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"text/plain",
            b"",
            b"APPLICATION/JSON",
        ]
    ),
)
def _raw(body: bytes, content_type: bytes) -> None:
    for path in PATHS:
        status, headers, out = send(path, body, headers=((b"content-type", content_type),))
        assert status in (200, 400, 413, 415), (status, out)
        assert json.loads(out)["kind"] == "Status" or status == 200


# 2. Arbitrary JSON documents, some shaped like reviews.
@given(
    doc=json_values
    | st.fixed_dictionaries(
        {
            "apiVersion": st.sampled_from(["admission.k8s.io/v1", "apiextensions.k8s.io/v1", "v1"]),
            "kind": st.sampled_from(["AdmissionReview", "ConversionReview", "Pod"]),
        },
        optional={"request": json_values},
    )
)
def _documents(doc: Any) -> None:
    body = json.dumps(doc).encode()
    for path in PATHS:
        status, headers, out = send(path, body)
        assert status < 500, out
        if status == 200:
            check(path, status, headers, out, doc)


# 3. Valid envelopes around mangled pods and databases: a real object with random parts
#    replaced, removed or set to random JSON. Hypothesis draws one seeded Random per example
#    (reproducible, shrinks by seed) and the walk uses it directly: drawing every decision
#    through hypothesis cost more than the requests themselves.
_LEAVES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**64,
    1.5,
    "",
    "0",
    "100m",
    "Pod",
    "v1",
    "a/b~c",
    "UPDATE",
    [],
    {},
]
_KEYS = [
    "spec",
    "metadata",
    "containers",
    "labels",
    "image",
    "securityContext",
    "resources",
    "x",
    "a/b",
]


def _random_json(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth >= 3 or roll < 0.6:
        return (
            rnd.choice(_LEAVES)
            if rnd.random() < 0.8
            else "".join(rnd.choice('ab/~\\"é\x00 ') for _ in range(rnd.randrange(6)))
        )
    if roll < 0.8:
        return [_random_json(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {rnd.choice(_KEYS): _random_json(rnd, depth + 1) for _ in range(rnd.randrange(4))}


def _mangle(obj: Any, rnd: random.Random, depth: int = 0) -> Any:
    if isinstance(obj, dict) and obj and depth < 6:
        obj = dict(obj)
        key = rnd.choice(sorted(obj))
        action = rnd.choice(["recurse", "recurse", "replace", "delete", "null", "add"])
        if action == "recurse":
            obj[key] = _mangle(obj[key], rnd, depth + 1)
        elif action == "replace":
            obj[key] = _random_json(rnd)
        elif action == "delete":
            del obj[key]
        elif action == "null":
            obj[key] = None
        else:
            obj[rnd.choice(_KEYS)] = _random_json(rnd)
    elif isinstance(obj, list) and obj and depth < 6:
        obj = list(obj)
        index = rnd.randrange(len(obj))
        obj[index] = (
            _mangle(obj[index], rnd, depth + 1) if rnd.random() < 0.5 else _random_json(rnd)
        )
    elif rnd.random() < 0.5:
        return _random_json(rnd)
    return obj


def _mangle_some(obj: Any, rnd: random.Random) -> Any:
    for _ in range(rnd.randint(1, 3)):
        obj = _mangle(obj, rnd)
    return obj


def _rich_pod() -> dict[str, Any]:
    pod = pods.compliant_pod(
        initContainers=[pods.container("init", image="busybox")],
        ephemeralContainers=[{"name": "dbg", "image": "busybox"}],
        volumes=[{"name": "data", "emptyDir": {}}],
        securityContext={"runAsNonRoot": True},
    )
    pod["metadata"]["annotations"] = {"sidecar.example.com/inject": "true", "a/b~c": "x"}
    return pod


DATABASE = {
    "apiVersion": conversion.V1,
    "kind": "Database",
    "metadata": {"name": "pg", "annotations": {}},
    "spec": {
        "type": "postgresql",
        "version": "16.1.0",
        "storage": {"size": "10Gi"},
        "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 7},
        "monitoring": {"enabled": True},
    },
}


@given(
    rnd=st.randoms(use_true_random=False),
    operation=st.sampled_from(["CREATE"] * 3 + ["UPDATE"] * 2 + ["DELETE", "CONNECT", ""]),
)
def _mangled(rnd: random.Random, operation: str) -> None:
    pod_review = pods.review(
        _mangle_some(_rich_pod(), rnd), operation=operation, old=_mangle(_rich_pod(), rnd)
    )
    db_kind = {"group": "db.example.com", "version": "v1", "kind": "Database"}
    db_review = pods.review(
        _mangle_some(DATABASE, rnd), operation=operation, old=_mangle(DATABASE, rnd), kind=db_kind
    )
    conversion_review = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {
            "uid": "c",
            "desiredAPIVersion": rnd.choice([conversion.V1, conversion.V1BETA1, "x"]),
            "objects": [
                _mangle_some(DATABASE, rnd),
                conversion.convert(DATABASE, conversion.V1BETA1),
            ],
        },
    }
    for path, doc in (
        ("/validate/pods", pod_review),
        ("/mutate/pods", pod_review),
        ("/validate/databases", db_review),
        ("/mutate/databases", db_review),
        ("/convert", conversion_review),
    ):
        if rnd.random() < 0.1:  # sometimes mangle the envelope itself too
            doc = _mangle(doc, rnd)
        status, headers, out = send(path, json.dumps(doc).encode())
        assert status < 500, out
        if status == 200:
            check(path, status, headers, out, doc)


# 4. Objects nested hundreds to thousands of levels deep, in every endpoint's object. The JSON
#    text is built directly: json.dumps itself stops near Python's recursion limit (~1,000).
_DEEP = "__deep__"


def _deep_json(levels: int, shape: str, key: str) -> str:
    opens = closes = ""
    for level in range(levels):
        array = shape == "array" or (shape == "mixed" and level % 3 == 2)
        opens += "[" if array else f'{{"{key}":'
        closes += "]" if array else "}"
    return opens + '"leaf"' + closes[::-1]


def _with_deep(doc: dict[str, Any], deep: str) -> bytes:
    return json.dumps(doc).replace(json.dumps(_DEEP), deep, 1).encode()


@given(
    levels=st.integers(90, 110) | st.integers(110, 1200) | st.integers(1200, 5000),
    shape=st.sampled_from(["object", "array", "mixed"]),
    key=st.sampled_from(["x", "spec", "metadata", "containers", ""]),
    where=st.sampled_from(["spec", "metadata", "top", "nested"]),
    rnd=st.randoms(use_true_random=False),
)
def _deep(levels: int, shape: str, key: str, where: str, rnd: random.Random) -> None:
    deep = _deep_json(levels, shape, key)

    def planted(obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        if where == "nested":  # level 3: a pod's first container, a group in a Database's spec
            spec = obj["spec"]
            groups = [value for value in spec.values() if isinstance(value, dict)]
            if "containers" in spec:
                target = spec["containers"][0]
            else:
                target = groups[0] if groups else spec.setdefault("group", {})
        else:
            target = obj if where == "top" else obj.setdefault(where, {})
        target["extra"] = _DEEP
        return obj

    db_kind = {"group": "db.example.com", "version": "v1", "kind": "Database"}
    beta = conversion.convert(DATABASE, conversion.V1BETA1)
    conversion_review = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {
            "uid": "deep",
            "desiredAPIVersion": rnd.choice([conversion.V1, conversion.V1BETA1]),
            "objects": [planted(rnd.choice([DATABASE, beta]))],
        },
    }
    for path, doc in (
        ("/validate/pods", pods.review(planted(_rich_pod()))),
        ("/mutate/pods", pods.review(planted(_rich_pod()))),
        ("/validate/databases", pods.review(planted(DATABASE), kind=db_kind)),
        ("/mutate/databases", pods.review(planted(DATABASE), kind=db_kind)),
        ("/convert", conversion_review),
    ):
        status, headers, out = send(path, _with_deep(doc, deep))
        if status in (400, 413):  # too deep to parse, or too big: the envelope's own answer
            reason = {400: "request body nests too deeply", 413: "exceeds the limit"}[status]
            assert reason in json.loads(out)["message"], out
            continue
        check(path, status, headers, out, doc)
        if path == "/convert":
            # The object is level 1, spec and metadata level 2, a group in spec level 3.
            depth = levels + {"top": 1, "nested": 3}.get(where, 2)
            result = json.loads(out)["response"]["result"]
            if depth > conversion.MAX_DEPTH:
                assert f"nests deeper than {conversion.MAX_DEPTH} levels" in result["message"]
            else:
                assert result == {"status": "Success"}, result


# 5. The conversion residue annotation holding anything: valid JSON of every shape (a non-object
#    spec, a wrong-typed apiVersion, a top-level array), text that is not JSON, deep JSON, and
#    values that are not strings at all.
_residue = st.one_of(
    st.fixed_dictionaries(
        {
            "apiVersion": st.sampled_from([conversion.V1, conversion.V1BETA1]) | json_leaf,
            "spec": json_values,
        }
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=20),
    st.builds(
        # Up to 2,000 levels: three of them still fit the 64 KiB body limit of this app.
        _deep_json,
        st.integers(50, 2000),
        st.sampled_from(["object", "array"]),
        st.just("x"),
    ),
    json_values,
)


@given(
    stored=st.lists(_residue, min_size=1, max_size=3),
    desired=st.sampled_from([conversion.V1, conversion.V1BETA1]),
    rnd=st.randoms(use_true_random=False),
)
def _residues(stored: list[Any], desired: str, rnd: random.Random) -> None:
    beta = conversion.convert(DATABASE, conversion.V1BETA1)
    objects = []
    for value in stored:
        obj = copy.deepcopy(rnd.choice([DATABASE, beta]))
        obj["metadata"]["annotations"] = {conversion.RESIDUE_ANNOTATION: value}
        objects.append(obj)
    doc = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "residue", "desiredAPIVersion": desired, "objects": objects},
    }
    status, headers, out = send("/convert", json.dumps(doc).encode())
    check("/convert", status, headers, out, doc)
    # Whatever the annotation holds, these objects are well-formed: they convert.
    assert json.loads(out)["response"]["result"] == {"status": "Success"}, out
    db_kind = {"group": "db.example.com", "version": "v1", "kind": "Database"}
    v1 = copy.deepcopy(DATABASE)
    v1["metadata"]["annotations"] = {conversion.RESIDUE_ANNOTATION: stored[0]}
    for path in ("/validate/databases", "/mutate/databases"):
        doc = pods.review(v1, kind=db_kind)
        check(path, *send(path, json.dumps(doc).encode()), doc)


def test_fuzz_over_ten_thousand_requests() -> None:
    before = Counter.requests
    # Each example sends one request per endpoint (five); _residues three.
    settings(max_examples=400, **FUZZ)(_raw)()
    settings(max_examples=600, **FUZZ)(_documents)()
    settings(max_examples=1100, **FUZZ)(_mangled)()
    settings(max_examples=300, **FUZZ)(_deep)()
    settings(max_examples=400, **FUZZ)(_residues)()
    sent = Counter.requests - before
    assert sent >= 13_000, sent


@settings(max_examples=500, **FUZZ)
@given(rnd=st.randoms(use_true_random=False))
def test_fast_shape_check_agrees_with_the_precise_one(rnd: random.Random) -> None:
    from kubext_webhooks import podshape

    pod = _mangle_some(_rich_pod(), rnd)
    precise = podshape.POD(pod, "") if isinstance(pod, dict) else "not a dict"
    if isinstance(pod, dict) and podshape._well_shaped(pod):
        assert precise is None
    if isinstance(pod, dict) and precise is None:
        assert podshape._well_shaped(pod), "the fast path should take every valid pod"
