"""Connector specs: what validation refuses, the registries, redaction, and the connector base class."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import threading
import tomllib

import orjson
import pytest
from builders import config, external
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import JsonHook

from agglo_core import ConfigError, Record, load_config
from agglo_core.config import External
from agglo_core.effects import ApplyDeltas, CompareAndPut, EffectFailed, GetItems, JoinAdd, Put
from handlers.connectors import UnknownConnector, default_registry
from handlers.connectors.base import Conflict, Contended, optimistic
from handlers.connectors.catalog import CATALOG, redact, registry_of, render_table
from handlers.connectors.checks import check_externals
from handlers.connectors.firestore import FirestoreKV
from handlers.connectors.http import HttpTarget
from handlers.connectors.spec import ClientLibrary, ConnectorSpec, Option
from handlers.runtime.driver import Runtime
from handlers.runtime.entwine_keys import compile_with_keys

REPO = pathlib.Path(__file__).resolve().parents[2]
SS = "e546e731-2b86-43cd-b847-764f437a7835"


def ext(kind: str, cs: str, name: str = "X") -> External:
    return External.model_validate({"externalType": kind, "name": name, "connectionString": cs})


MARK = {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "flag", "value": "true"}]}}


def problems_of(*externals: dict, definitions: tuple[dict, ...] = (MARK,),
                catalog: tuple[ConnectorSpec, ...] = CATALOG) -> list[str]:
    return check_externals(load_config(config(*definitions, externals=externals)), catalog)


# --- what validation refuses, for every external type ---------------------------------------------

# (externalType, a misspelt scheme, the scheme meant, a misspelt option, the option meant, a string missing
# a required option, what it needs). None where the type's connectors take no named option.
CASES = [
    ("ExternalKVStore", "sqlit:state.db", "sqlite:", "dynamo:tablename=t", "tableName", "firestore:project=p",
     "needs collection="),
    ("ExternalObjectStore", "s4:bucketName=b", "s3:", "s3:bucketname=b", "bucketName", "gcs:prefix=p",
     "needs bucketName="),
    ("ExternalPubSub", "kinesiss:streamName=s", "kinesis:", "sqs:queueURL=u", "queueUrl", "kinesis:region=r",
     "needs streamName="),
    ("ExternalHttp", "htps://example.com/hook", "https://", None, None, None, None),
    ("ExternalLocalFile", "fil:/tmp/out", "file:", None, None, "file:", "needs DIR"),
]


@pytest.mark.parametrize(("kind", "bad_scheme", "meant"), [(c[0], c[1], c[2]) for c in CASES])
def test_an_unknown_scheme_is_refused_with_the_nearest_one(kind: str, bad_scheme: str, meant: str) -> None:
    [problem] = problems_of(external(kind, "Out", "mem:ok" if kind == "ExternalKVStore" else bad_scheme),
                            external(kind, "Bad", bad_scheme))[-1:]
    assert problem.startswith("externalSystems[1].connectionString: unknown scheme")
    assert f"did you mean {meant!r}?" in problem


@pytest.mark.parametrize(("kind", "bad", "meant"), [(c[0], c[3], c[4]) for c in CASES if c[3]])
def test_a_misspelt_option_is_refused_with_the_option_meant(kind: str, bad: str, meant: str) -> None:
    [problem] = problems_of(external(kind, "Bad", bad))
    assert problem.startswith("externalSystems[0].connectionString: unknown option")
    assert f"did you mean {meant!r}?" in problem


@pytest.mark.parametrize(("kind", "missing", "needs"), [(c[0], c[5], c[6]) for c in CASES if c[5]])
def test_a_missing_required_option_is_refused(kind: str, missing: str, needs: str) -> None:
    [problem] = problems_of(external(kind, "Bad", missing))
    assert problem.startswith("externalSystems[0].connectionString:") and needs in problem


def test_a_type_no_connector_serves_is_said_at_its_path() -> None:
    [problem] = problems_of(external("ExternalSearchIndex", "Search", "es://localhost:9200"))
    assert problem.startswith("externalSystems[0].externalType: no connector serves ExternalSearchIndex")


def test_a_scheme_of_another_type_is_refused_with_the_ones_that_serve_it() -> None:
    [problem] = problems_of(external("ExternalKVStore", "State", "sqs:queueUrl=u"))
    assert problem.startswith("externalSystems[0].connectionString: sqs: serves ExternalPubSub, not ExternalKVStore")
    assert "dynamo:" in problem and "sqlite:" in problem


def test_bad_option_values_are_refused_and_environment_references_accepted() -> None:
    problems = problems_of(external("ExternalKVStore", "A", "dynamo:tableName=t,prefixLength=two"),
                           external("ExternalPubSub", "B", "pubsub:topics/t"),
                           external("ExternalKVStore", "C", "dynamo:tableName=${TABLE},prefixLength=${N}"),
                           external("ExternalKVStore", "D", "${STATE_STORE}"))
    assert problems == ["externalSystems[0].connectionString: prefixLength must be an integer, not 'two'",
                        "externalSystems[1].connectionString: topic must look like projects/P/topics/T, not 'topics/t'"]


def entwine(state: str) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    definitions = ({"entwine": {"name": "E", "streamStateStore": "KV", "objectStore": "Objects", "pemPath": "k.pem",
                                "subStreamID": SS, "tickerEndpoint": "127.0.0.1:1", "tickerInterval": 3}},)
    return definitions, (external("ExternalKVStore", "KV", state), external("ExternalObjectStore", "Objects", "mem:o"))


def test_entwine_state_on_a_store_that_cannot_compare_and_put_is_refused() -> None:
    definitions, externals = entwine("firestore:project=p,collection=c")
    [problem] = problems_of(*externals, definitions=definitions)
    assert problem == ("processDefinitions[0].entwine.streamStateStore: 'KV' (firestore:) cannot CompareAndPut, "
                       "GetItems; entwine's streamStateStore needs a connector that can: mem:, sqlite:, redis://, "
                       "rediss://, dynamo:")
    assert problems_of(*entwine("dynamo:tableName=t")[1], definitions=definitions) == []


@pytest.mark.parametrize("kind", ["ExternalKVStore", "ExternalObjectStore", "ExternalPubSub", "ExternalHttp",
                                  "ExternalLocalFile", "ExternalSearchIndex"])
def test_a_capability_mismatch_is_refused_for_every_type(kind: str) -> None:
    """A tee needs ``Put`` of any type; a connector that cannot put (declared here) is refused at the tee's path."""
    read_only = ConnectorSpec("read-only", ("ro",), (kind,), frozenset({"GetItems"}), None, "reads only",
                              lambda ext, opts: None, form="value", options=(Option("name", required=True),))
    tee = ({"tee": {"name": "Out", "outputConnectorRef": "RO"}},)
    [problem] = problems_of(external(kind, "RO", "ro:x"), definitions=tee, catalog=(*CATALOG, read_only))
    assert problem.startswith("processDefinitions[0].tee.outputConnectorRef: 'RO' (ro:) cannot Put; tee's "
                              "outputConnectorRef needs a connector that can")


def test_compiling_refuses_every_problem_at_once_and_before_any_connector_is_built(tmp_path) -> None:
    definitions, externals = entwine("firestore:project=p,collection=c")
    cfg = config(*definitions, externals=(*externals, external("ExternalKVStore", "Other", "sqlit:x.db")))
    with pytest.raises(ConfigError) as err:
        compile_with_keys(orjson.dumps(cfg))
    paths = [p.partition(": ")[0] for p in err.value.problems]
    assert paths == ["externalSystems[2].connectionString", "processDefinitions[0].entwine.streamStateStore",
                     "processDefinitions[0].entwine.pemPath"]
    cfg["pipelines"][0]["processes"].append({"name": "Nowhere"})  # a problem of the core's own validation
    with pytest.raises(ConfigError) as err:
        compile_with_keys(orjson.dumps(cfg))
    assert any(p.startswith("externalSystems[2].connectionString: unknown scheme") for p in err.value.problems)
    assert any(p.startswith("pipelines[0]") for p in err.value.problems)


def test_compiled_outputs_show_connection_strings_through_the_specs() -> None:
    cs = "https://me:hunter2@example.com/hook?token=abc&v=1"
    cfg = config({"tee": {"name": "Out", "outputConnectorRef": "Web"}}, externals=(external("ExternalHttp", "Web", cs),))
    plan = compile_with_keys(orjson.dumps(cfg))
    sent: list[Put] = []

    class Sink:
        def perform(self, effects: list) -> list:
            sent.extend(effects)
            return [None] * len(effects)

    [outcome] = Runtime(plan, {"Web": Sink()}).process([Record("r1", {"a": 1})])
    [(_, event)] = outcome.outputs
    [entry] = event["internal:tee:output"]
    assert entry["connectionString"] == redact(cs) == "https://me:***@example.com/hook?token=***&v=1"
    assert len(sent) == 1


def test_the_registry_refuses_bad_options_with_every_problem() -> None:
    with pytest.raises(UnknownConnector) as err:
        registry_of().build_all(load_config(config(MARK, externals=(
            external("ExternalKVStore", "A", "dynamo:tablename=t"), external("ExternalPubSub", "B", "sqs:")))))
    assert "did you mean 'tableName'" in str(err.value) and "sqs: needs queueUrl" in str(err.value)


def test_an_adapter_says_what_it_offers() -> None:
    with pytest.raises(UnknownConnector, match="this adapter offers: file, gcs, mem, s3"):
        registry_of().build(ext("ExternalObjectStore", "azure:container=b"))


# --- the catalog ----------------------------------------------------------------------------------


def test_every_adapter_offers_every_connector() -> None:
    """One config runs everywhere: each adapter's registry holds the whole catalog (AWS's on Cloud Functions,
    Google's on Lambda, both under ``agglo run``)."""
    everything = {(t, scheme) for spec in CATALOG for t in spec.external_types for scheme in spec.schemes}
    assert {("ExternalKVStore", "dynamo"), ("ExternalPubSub", "pubsub"), ("ExternalObjectStore", "gcs")} <= everything
    registry = default_registry()
    assert {key for key in everything if registry.spec(*key)} == everything


@pytest.mark.parametrize("form", ["options", "value"])
def test_a_connector_without_its_client_library_names_the_extra(form: str) -> None:
    library = ClientLibrary("agglo_test_no_such_client", "vault", "agglo-test-no-such-client>=1.0")
    spec = ConnectorSpec("Vault", ("vault",), ("ExternalKVStore",), frozenset({"Put"}), library, "",
                         lambda ext, opts: pytest.fail("built without its library"), form=form,  # type: ignore[arg-type]
                         options=(Option("name", required=True),))
    with pytest.raises(UnknownConnector) as err:
        registry_of((spec,)).build(ext("ExternalKVStore", "vault:name=x" if form == "options" else "vault:x"))
    assert "external system 'X'" in str(err.value) and "Vault needs the Python package agglo-test-no-such-client" in str(err.value)
    assert "pip install 'agglo[vault]'" in str(err.value)


def test_every_client_library_is_an_extra_of_the_package() -> None:
    """What a missing library's message tells people to install exists, with the requirement artefacts use."""
    pyproject = tomllib.loads((pathlib.Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for spec in CATALOG:
        if spec.library is not None:
            assert spec.library.requirement in extras[spec.library.extra], spec.name
            assert spec.library.installed(), spec.name  # the dev install has every extra


def test_a_blocked_library_is_missing() -> None:
    code = ("import sys; sys.modules['boto3'] = None; "
            "from handlers.connectors.aws import BOTO3; print(BOTO3.installed())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_specs_import_no_sdk() -> None:
    code = ("import sys; before = set(sys.modules); import handlers.connectors.catalog, handlers.connectors.checks; "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('boto3', 'botocore', "
            "'google', 'redis')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_the_readme_table_is_the_one_the_specs_render() -> None:
    readme = (REPO / "README.md").read_text()
    table = re.search(r"<!-- connector-table: .*? -->\n(.*?)<!-- /connector-table -->", readme, re.S)
    assert table is not None and table.group(1) == render_table()


# --- options round-trip, secrets stay hidden ------------------------------------------------------

SAFE = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._", min_size=1, max_size=12)


def option_value(option: Option) -> st.SearchStrategy[str]:
    if option.type == "int":
        return st.integers(-10**6, 10**6).map(str)
    if option.type == "bool":
        return st.sampled_from(["true", "false"])
    if option.type == "seconds":
        return st.tuples(st.integers(0, 10**4), st.integers(1, 999)).map(lambda t: f"{t[0]}.{t[1]:03d}")
    if option.pattern == r"projects/[^/]+/topics/[^/]+":
        return st.tuples(SAFE, SAFE).map(lambda pt: f"projects/{pt[0]}/topics/{pt[1]}")
    return SAFE if option.name != "queueUrl" else SAFE.map(lambda s: f"https://sqs.eu-west-1.amazonaws.com/1/{s}")


def options_of(spec: ConnectorSpec) -> st.SearchStrategy[dict[str, str]]:
    required = {o.name: option_value(o) for o in spec.options if o.required}
    optional = {o.name: option_value(o) for o in spec.options if not o.required}
    return st.fixed_dictionaries(required, optional=optional)


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: f"{s.name}-{s.external_types[0]}")
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_specs_options_round_trip(spec: ConnectorSpec, data: st.DataObject) -> None:
    options = data.draw(options_of(spec))
    for scheme in spec.schemes:
        if not scheme and "/" not in options.get("directory", "/"):
            continue  # a bare path needs a slash to be told from a scheme
        cs = spec.format(scheme, options)
        assert spec.parse(cs) == options, cs
        assert spec.problems(cs) == [], cs


SECRET = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=16).map(lambda s: "Zq" + s)


def secret_specs() -> tuple[ConnectorSpec, ...]:
    """A secret option in each form, named so that no guess by key name would find it."""
    def spec(form: str, scheme: str) -> ConnectorSpec:
        return ConnectorSpec(f"vault-{form}", (scheme,), ("ExternalKVStore",), frozenset(), None, "",
                             lambda ext, opts: None, form=form,  # type: ignore[arg-type]
                             options=(Option("key", required=True, secret=True), Option("region")))
    return spec("options", "vo"), spec("url", "vu"), spec("value", "vv")


@settings(max_examples=60, deadline=None)
@given(secret=SECRET, region=SAFE, user=SAFE)
def test_a_secret_never_appears_in_what_redact_shows(secret: str, region: str, user: str) -> None:
    options_spec, url_spec, value_spec = secret_specs()
    catalog = (*CATALOG, *secret_specs())
    shown = [redact(options_spec.format("vo", {"region": region, "key": secret}), catalog),
             redact(url_spec.format("vu", {"key": secret, "region": region}, "host"), catalog),
             redact(value_spec.format("vv", {"key": secret}), catalog)]
    for spec in CATALOG:
        if spec.form == "url":  # a URL's password (or a lone token) is always secret
            for scheme in spec.schemes:
                shown += [redact(f"{scheme}://{user}:{secret}@host:1/0", catalog),
                          redact(f"{scheme}://{secret}@host:1/0", catalog)]
    assert all(secret not in s for s in shown), shown
    assert region in shown[0] and region in shown[1]  # only the secret is hidden


def test_secrets_come_from_the_spec_not_from_key_names() -> None:
    assert redact("dynamo:tableName=auth-tokens,region=eu-west-1") == "dynamo:tableName=auth-tokens,region=eu-west-1"
    assert redact("ftp:host=x,password=pw") == "ftp:host=x,password=***"  # no spec: names are all there is
    assert redact("https://me:pw@example.com/hook?token=abc&v=1") == "https://me:***@example.com/hook?token=***&v=1"


# --- the base class -------------------------------------------------------------------------------

def test_http_503_is_transient_and_400_permanent_against_a_real_server() -> None:
    statuses = {"/a": 503, "/b": 400, "/c": 429, "/d": 408, "/e": 404}
    hook = JsonHook(lambda hook, headers, body: (statuses[body["path"]], b'{"error": "no"}'))
    try:
        target = HttpTarget(hook.url)
        answers = target.perform([Put("Web", f"k{p}", {"path": p}) for p in statuses])
    finally:
        hook.close()
    assert [a.transient for a in answers] == [True, False, True, True, False]
    assert [a.details["status"] for a in answers] == list(statuses.values())
    unreachable = HttpTarget("http://127.0.0.1:9/nothing", deadline_s=2).perform([Put("Web", "k", {})])[0]
    assert isinstance(unreachable, EffectFailed) and unreachable.transient


def test_http_posts_of_many_keys_share_one_pool_for_the_connectors_life() -> None:
    seen: set[str] = set()
    hook = JsonHook(lambda hook, headers, body: (200, b"{}"))
    try:
        target = HttpTarget(hook.url)
        target.perform([Put("Web", f"k{i}", {"i": i}) for i in range(8)])
        pool = target.pool()
        target.perform([Put("Web", f"k{i}", {"i": i}) for i in range(8)])
        assert target.pool() is pool and len(hook.requests) == 16
        seen = {t.name for t in threading.enumerate() if t.name.startswith("HttpTarget")}
        assert 0 < len(seen) <= HttpTarget.concurrency
    finally:
        target.close()
        hook.close()


UNSERIALISABLE = [{"n": 2**70}, {"n": float("nan"), "s": {1, 2}}]


def deep(levels: int) -> dict:
    body: dict = {}
    for _ in range(levels):
        body = {"x": body}
    return body


@pytest.mark.parametrize("cs", ["mem:ser", "sqlite:{tmp}/s.db", "file:{tmp}/objects", "{tmp}/files"])
def test_a_body_that_cannot_be_serialised_fails_its_effect_alone(cs: str, tmp_path) -> None:
    kind = "ExternalKVStore" if cs.split(":")[0] in ("mem", "sqlite") else \
        "ExternalObjectStore" if cs.startswith("file:") else "ExternalLocalFile"
    store = default_registry().build(ext(kind, cs.format(tmp=tmp_path)))
    bodies = [{"ok": 1}, *UNSERIALISABLE, deep(300), {"ok": 2}]
    answers = store.perform([Put("t", f"k{i}", body) for i, body in enumerate(bodies)])
    assert answers[0] is None and answers[-1] is None
    for answer in answers[1:-1]:
        assert isinstance(answer, EffectFailed) and not answer.transient and "JSON" in answer.message
    assert store.get("k0") == {"ok": 1} and store.get(f"k{len(bodies) - 1}") == {"ok": 2}


def test_a_compare_and_put_that_cannot_be_serialised_fails_alone(tmp_path) -> None:
    store = default_registry().build(ext("ExternalKVStore", f"sqlite:{tmp_path}/c.db"))
    answers = store.perform([CompareAndPut("s", "h", None, (("h", {"uuid": "a", "n": 2**80}),)),
                             CompareAndPut("s", "g", None, (("g", {"uuid": "b"}),))])
    assert isinstance(answers[0], EffectFailed) and not answers[0].transient and answers[1] is True
    assert store.get("h") is None and store.get("g") == {"uuid": "b"}


def test_an_effect_the_connector_cannot_perform_is_refused_permanently() -> None:
    store = FirestoreKV({"collection": "c", "project": "p"})  # no client is made: refused before any call
    answers = store.perform([GetItems("s", ("a",)), CompareAndPut("s", "h", None, ())])
    assert [(a.transient, a.message) for a in answers] == [
        (False, "Firestore collection c cannot perform GetItems"),
        (False, "Firestore collection c cannot perform CompareAndPut")]


# --- bounded optimistic loops ---------------------------------------------------------------------

def test_an_optimistic_loop_gives_up_after_its_attempts_with_jittered_backoff() -> None:
    waits: list[float] = []
    tries = []

    def always_conflicts() -> None:
        tries.append(1)
        raise Conflict

    with pytest.raises(Contended, match="still contended after 6 attempts"):
        optimistic(always_conflicts, "item 'k'", attempts=6, sleep=waits.append)
    assert len(tries) == 6 and len(waits) == 5
    assert all(0 <= w <= 0.2 for w in waits)
    assert optimistic(lambda: 7, "item 'k'", attempts=1) == 7


def dynamo_table() -> None:
    from handlers.connectors.aws import client

    client("dynamodb").create_table(TableName="state", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST")


def test_dynamo_gives_up_on_an_item_other_writers_always_change(aws) -> None:
    """Another writer changes the item between every read and write: the change fails, transient, and says so."""
    dynamo_table()
    registry = registry_of()
    store, other = (registry.build(ext("ExternalKVStore", "dynamo:tableName=state")) for _ in range(2))
    store.optimistic_attempts = 3
    read = store._get
    writes = []

    def get(key: str) -> dict:
        item = read(key)
        if key == "k":
            writes.append(other.perform([ApplyDeltas("s", key, {"v": ("add", 1)})]))
        elif key == "j":
            writes.append(other.perform([JoinAdd("s", key, f"m{len(writes)}", 10**15)]))
        return item

    store._get = get
    marked = ApplyDeltas("s", "k", {"v": ("add", 1)}, marks=(("r1", {"v": ("add", 1)}),))
    [applied] = store.perform([marked])
    assert isinstance(applied, EffectFailed) and applied.transient
    assert "still contended after 3 attempts" in applied.message
    [joined] = store.perform([JoinAdd("s", "j", "a", 10**15)])
    assert isinstance(joined, EffectFailed) and joined.transient and "still contended after 3" in joined.message
    store._get = read
    assert store.get("mark/r1") is None  # nothing of the failed change was written
    assert store.get("k") == {"v": 3} and len(writes) == 6  # only the other writer's three changes of each
