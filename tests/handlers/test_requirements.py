"""``agglo requirements``: what a deployment of some configs installs, decided from the configs."""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

from builders import config, external
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.authoring.requirements import BASES, CORE, ENTWINE, requirements
from handlers.connectors.catalog import CATALOG
from handlers.runtime.entwine_keys import validate_source

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MARK = {"annotator": {"name": "Mark", "annotations": [{"fieldKey": "flag", "value": "true"}]}}

# Per scheme, a connection string of each external type it serves and the client library a deployment then
# installs, written out here rather than read from the specs, so that a spec naming the wrong one fails.
EXAMPLES: dict[str, list[tuple[str, str, str | None]]] = {
    "mem": [("ExternalKVStore", "mem:state", None), ("ExternalObjectStore", "mem:objects", None)],
    "sqlite": [("ExternalKVStore", "sqlite:state.db", None)],
    "redis": [("ExternalKVStore", "redis://localhost:6379/0", "redis>=5.0")],
    "rediss": [("ExternalKVStore", "rediss://cache.example:6380/1", "redis>=5.0")],
    "": [("ExternalLocalFile", "out/tee", None)],
    "file": [("ExternalLocalFile", "file:out/tee", None), ("ExternalObjectStore", "file:out/objects", None)],
    "http": [("ExternalHttp", "http://localhost:8080/hook", None)],
    "https": [("ExternalHttp", "https://example.com/hook", None)],
    "dynamo": [("ExternalKVStore", "dynamo:tableName=state", "boto3>=1.34")],
    "s3": [("ExternalObjectStore", "s3:bucketName=b,prefix=p/", "boto3>=1.34")],
    "sqs": [("ExternalPubSub", "sqs:queueUrl=https://sqs.eu-west-1.amazonaws.com/1/q", "boto3>=1.34")],
    "kinesis": [("ExternalPubSub", "kinesis:streamName=s", "boto3>=1.34")],
    "firestore": [("ExternalKVStore", "firestore:project=p,collection=c", "google-cloud-firestore>=2.16")],
    "gcs": [("ExternalObjectStore", "gcs:bucketName=b", "google-cloud-storage>=2.14")],
    "pubsub": [("ExternalPubSub", "pubsub:projects/p/topics/t", "google-cloud-pubsub>=2.20")],
}
ALL_EXAMPLES = [example for examples in EXAMPLES.values() for example in examples]


def _makefile_lambda_requirements() -> tuple[str, ...]:
    text = (ROOT / "Makefile").read_text()
    value = re.search(r"^LAMBDA_REQUIREMENTS\s*:=\s*((?:.*\\\n)*.*)$", text, re.MULTILINE)
    assert value is not None
    return tuple(shlex.split(value.group(1).replace("\\\n", " ")))


def test_the_platform_bases_are_what_the_package_and_the_lambda_build_say():
    assert tuple(PYPROJECT["project"]["dependencies"]) == CORE
    assert BASES["aws"] == _makefile_lambda_requirements()
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(BASES["aws"]) - set(CORE) <= set(extras["aws"])
    assert set(BASES["gcp"]) - set(CORE) <= set(extras["gcp"])
    assert extras["entwine"] == [ENTWINE]


def test_the_examples_cover_every_connector():
    served = {(t, scheme) for spec in CATALOG for scheme in spec.schemes for t in spec.external_types}
    assert {(t, scheme) for scheme, examples in EXAMPLES.items() for t, _, _ in examples} == served


def _validated(externals: list[tuple[str, str, str | None]], entwine: bool = False):
    cfg = config(MARK, externals=tuple(external(t, f"System{i}", cs) for i, (t, cs, _) in enumerate(externals)))
    if entwine:
        entwined = json.loads((ROOT / "pipelines/entwine-a.json").read_text())
        cfg["processDefinitions"] += [d for d in entwined["processDefinitions"] if "entwine" in d]
        cfg["externalSystems"] += [e for e in entwined["externalSystems"]
                                   if e["name"] not in {x["name"] for x in cfg["externalSystems"]}]
    validated, _ = validate_source(json.dumps(cfg))  # the entwine key is not on this machine: a warning
    return validated


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(ALL_EXAMPLES), max_size=5), min_size=1, max_size=3),
       st.sampled_from(sorted(BASES)), st.booleans())
def test_a_deployment_needs_its_base_and_each_external_s_client_library(configs, platform, entwine):
    """Whatever externals the configs have, on whichever platform: the base, each client library once, and
    cryptography exactly when a config uses entwine."""
    validated = [_validated(externals, entwine and i == 0) for i, externals in enumerate(configs)]
    needed = requirements(validated, platform)
    libraries = {library for externals in configs for _, _, library in externals if library}
    expected = set(BASES[platform]) | libraries | ({ENTWINE} if entwine else set())
    assert set(needed) == expected
    names = [re.split(r"[<>=]", r, maxsplit=1)[0] for r in needed]
    assert names == sorted(names) and len(set(names)) == len(names)


def _agglo(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handlers.local", "requirements", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_command_prints_one_requirement_a_line_for_every_config_given():
    done = _agglo("-c", "pipelines/aws-basic.json", "pipelines/entwine-a.json", "--for", "aws")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == sorted([*BASES["aws"], ENTWINE])
    gcp = _agglo("-c", "pipelines/gcp.json", "--for", "gcp")
    assert gcp.stdout.splitlines() == sorted(
        [*BASES["gcp"], "google-cloud-pubsub>=2.20", "redis>=5.0"]), gcp.stderr
    local = _agglo("pipelines/basic.json")
    assert local.stdout.splitlines() == sorted(CORE)


def test_a_config_that_does_not_validate_is_refused_with_its_problems(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(config(MARK, externals=(external("ExternalKVStore", "State", "redis://h:6379/0"),))))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config(MARK, externals=(external("ExternalKVStore", "State", "azure:x"),))))
    done = _agglo("-c", str(good), "-c", str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""  # nothing for pip to install from a refused deployment
    assert done.stderr.startswith(f"{bad}: externalSystems[0].connectionString: unknown scheme 'azure:'")


def _readme_gcf_command() -> str:
    """The command the README's Cloud Functions deploy instructions write ``requirements.txt`` with."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Deploying with `gcloud functions deploy`"):]
    block = section[section.index("```sh\n") + len("```sh\n"):]
    [command] = [line for line in block[:block.index("```")].splitlines() if "requirements.txt" in line]
    return command


def test_the_readme_s_cloud_functions_requirements_follow_the_config(tmp_path):
    """Run as the README says, in a checkout: pipelines/gcp.json keeps its state in Redis; the same config
    with its state in Firestore gets Firestore's client instead."""
    command = _readme_gcf_command()
    assert command == "agglo requirements -c pipelines/gcp.json --for gcp > requirements.txt"
    shipped = json.loads((ROOT / "pipelines/gcp.json").read_text())
    on_firestore = json.loads(json.dumps(shipped))
    [store] = [e for e in on_firestore["externalSystems"] if e["externalType"] == "ExternalKVStore"]
    store["connectionString"] = "firestore:project=${GOOGLE_CLOUD_PROJECT},collection=agglo-state"
    env = {"PATH": f"{pathlib.Path(sys.executable).parent}:/usr/bin:/bin"}
    written = {}
    for name, cfg in (("redis", shipped), ("firestore", on_firestore)):
        checkout = tmp_path / name
        (checkout / "pipelines").mkdir(parents=True)
        (checkout / "pipelines/gcp.json").write_text(json.dumps(cfg))
        subprocess.run(command, shell=True, cwd=checkout, env=env, check=True, timeout=120)
        written[name] = (checkout / "requirements.txt").read_text().splitlines()
    common = [*BASES["gcp"], "google-cloud-pubsub>=2.20"]
    assert written["redis"] == sorted([*common, "redis>=5.0"])
    assert written["firestore"] == sorted([*common, "google-cloud-firestore>=2.16"])


def test_a_connector_the_environment_chooses_is_warned_about(tmp_path):
    cfg = config(MARK, externals=(external("ExternalKVStore", "State", "${STATE_STORE}"),
                                  external("ExternalPubSub", "Out", "pubsub:${TOPIC}")))
    path = tmp_path / "chosen.json"
    path.write_text(json.dumps(cfg))
    done = _agglo("-c", str(path), "--for", "gcp", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.splitlines() == sorted([*BASES["gcp"], "google-cloud-pubsub>=2.20"])
    assert done.stderr.splitlines() == [
        f"{path}: warning: externalSystems[0].connectionString: the environment chooses its connector, so no "
        f"client library is listed for it"]
