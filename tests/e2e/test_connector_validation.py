"""``agglo validate`` and ``agglo lint``, as the commands, refuse connection strings the connector specs refuse."""

from __future__ import annotations

import json
import pathlib

import pytest
from _servers import run_agglo
from builders import config, external
from entwine_world import ed25519_pem

MARK = {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "flag", "value": "true"}]}}
SS = "e546e731-2b86-43cd-b847-764f437a7835"

# Per external type: (connection string, the JSON path's problem as printed). Http and local files take no
# named options, so they have no misspelt or missing named option to refuse.
BAD = {
    "ExternalKVStore": [
        ("sqlit:state.db", "unknown scheme 'sqlit:'; did you mean 'sqlite:'?"),
        ("dynamo:tablename=t", "unknown option 'tablename' for dynamo:; did you mean 'tableName'?"),
        ("firestore:project=p", "firestore: needs collection="),
    ],
    "ExternalObjectStore": [
        ("s4:bucketName=b", "unknown scheme 's4:'; did you mean 's3:'?"),
        ("gcs:bucket=b", "unknown option 'bucket' for gcs:; did you mean 'bucketName'?"),
        ("s3:prefix=p", "s3: needs bucketName="),
    ],
    "ExternalPubSub": [
        ("kinesiss:streamName=s", "unknown scheme 'kinesiss:'; did you mean 'kinesis:'?"),
        ("sqs:queueURL=u", "unknown option 'queueURL' for sqs:; did you mean 'queueUrl'?"),
        ("kinesis:region=eu-west-1", "kinesis: needs streamName="),
    ],
    "ExternalHttp": [
        ("htps://example.com/hook", "unknown scheme 'htps:'; did you mean 'https://'?"),
    ],
    "ExternalLocalFile": [
        ("fil:/tmp/out", "unknown scheme 'fil:'; did you mean 'file:'?"),
        ("file:", "file: needs DIR"),
    ],
    "ExternalSearchIndex": [
        ("es://localhost:9200", "no connector serves ExternalSearchIndex"),
    ],
}


def write(tmp: pathlib.Path, name: str, cfg: dict) -> pathlib.Path:
    path = tmp / name
    path.write_text(json.dumps(cfg))
    return path


def bad_config(kind: str) -> dict:
    return config(MARK, externals=tuple(external(kind, f"Bad{i}", cs) for i, (cs, _) in enumerate(BAD[kind])))


def expected(kind: str) -> list[tuple[str, str]]:
    field = "externalType" if kind == "ExternalSearchIndex" else "connectionString"
    return [(f"externalSystems[{i}].{field}", message) for i, (_, message) in enumerate(BAD[kind])]


@pytest.mark.parametrize("kind", sorted(BAD))
def test_validate_refuses_each_bad_connection_string_at_its_path(kind: str, tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, f"{kind}.json", bad_config(kind))
    done = run_agglo(["validate", "-c", str(path)], cwd=tmp_path)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 1, done
    assert len(lines) == len(BAD[kind]), lines
    for line, (where, message) in zip(lines, expected(kind), strict=True):
        assert line.startswith(f"{path}: {where}: ") and message in line, line


def test_lint_refuses_them_as_errors_with_their_paths(tmp_path: pathlib.Path) -> None:
    paths = {kind: write(tmp_path, f"{kind}.json", bad_config(kind)) for kind in BAD}
    done = run_agglo(["lint", "--format", "json", *map(str, paths.values())], cwd=tmp_path)
    assert done.returncode == 1
    found = json.loads(done.stdout)
    for kind, path in paths.items():
        mine = [(f["path"], f["level"], f["rule"], f["message"]) for f in found if f["config"] == str(path)]
        assert [m[:3] for m in mine] == [(where, "error", "invalid-config") for where, _ in expected(kind)]
        assert all(message in m[3] for m, (_, message) in zip(mine, expected(kind), strict=True))


def entwine_config(state: str) -> dict:
    return config({"entwine": {"name": "E", "streamStateStore": "KV", "objectStore": "Objects", "pemPath": "k.pem",
                               "subStreamID": SS, "tickerEndpoint": "127.0.0.1:1", "tickerInterval": 3}},
                  externals=(external("ExternalKVStore", "KV", state),
                             external("ExternalObjectStore", "Objects", "mem:objects")))


def test_entwine_state_on_firestore_is_refused_by_validate_and_lint(tmp_path: pathlib.Path) -> None:
    (tmp_path / "k.pem").write_bytes(ed25519_pem())
    bad = write(tmp_path, "bad.json", entwine_config("firestore:project=p,collection=c"))
    good = write(tmp_path, "good.json", entwine_config("dynamo:tableName=${TABLE}"))
    where = "processDefinitions[0].entwine.streamStateStore"
    done = run_agglo(["validate", "-c", str(bad)], cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.decode().splitlines() == [
        f"{bad}: {where}: 'KV' (firestore:) cannot CompareAndPut, GetItems; entwine's streamStateStore needs a "
        "connector that can: mem:, sqlite:, redis://, rediss://, dynamo:"]
    assert run_agglo(["validate", "-c", str(good)], cwd=tmp_path).returncode == 0  # whatever the adapter
    linted = run_agglo(["lint", "--format", "json", str(bad)], cwd=tmp_path)
    assert [(f["path"], f["level"]) for f in json.loads(linted.stdout)] == [(where, "error")]


def test_run_refuses_a_misspelt_scheme_before_reading_any_event(tmp_path: pathlib.Path) -> None:
    cfg = config({"tee": {"name": "Out", "outputConnectorRef": "State"}},
                 externals=(external("ExternalKVStore", "State", "sqlit:state.db"),))
    path = write(tmp_path, "run.json", cfg)
    done = run_agglo(["run", "-c", str(path)], cwd=tmp_path, stdin=b'{"a": 1}\n')
    assert done.returncode == 2 and b"did you mean 'sqlite:'?" in done.stderr
    assert not (tmp_path / "state.db").exists()
