"""``agglo requirements``: the pip requirements a deployment running some configs needs, one a line.

Decided from the configs themselves: the platform's own base (what its entry point and the core import),
the client library of each external system's connector (``ConnectorSpec.library``: every external is
connected at start-up, used by a process or not) and ``cryptography`` when a config signs with a private key
(entwine). The Makefile's Lambda build installs exactly these; the README's Cloud Functions instructions
write them to ``requirements.txt``. A config that does not validate is refused with its problems, as ``agglo validate``
refuses it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from handlers.connectors.aws import BOTO3
from handlers.connectors.gcs import GCS_CLIENT
from handlers.connectors.spec import project_name

if TYPE_CHECKING:
    from agglo_core.config import PipelinesConfig

Platform = Literal["aws", "gcp", "local"]

CORE = ("pydantic>=2.6", "orjson>=3.9", "google-re2>=1.1,<2")
"""What the core needs anywhere: pyproject.toml's ``dependencies``."""
BASES: dict[str, tuple[str, ...]] = {
    "local": CORE,
    # The Makefile's LAMBDA_REQUIREMENTS: the handler, Powertools' batch processing, X-Ray, the SnapStart hooks;
    # boto3 always, as the function reads S3 trigger objects and DynamoDB stream images with it.
    "aws": (*CORE, BOTO3.requirement, "aws-lambda-powertools>=3.0", "aws-xray-sdk>=2.12", "snapshot-restore-py>=1.0"),
    # handlers/gcp_functions.py: functions-framework serves it, CloudEvents arrive through cloudevents, and an
    # object-finalized trigger is read with Cloud Storage's client (which trigger it has is not in the config).
    "gcp": (*CORE, "functions-framework>=3.5", "cloudevents>=1.10", GCS_CLIENT.requirement),
}
ENTWINE = "cryptography>=42"
"""pyproject.toml's ``entwine`` extra: entwine signs and verifies with it."""


def config_requirements(config: PipelinesConfig) -> set[str]:
    """What one validated config needs beyond a platform's base."""
    from agglo_core.connstr import scheme_of
    from handlers.connectors.catalog import spec_for
    from handlers.runtime.entwine_keys import key_files

    needed: set[str] = set()
    for system in config.externalSystems:
        spec = spec_for(system.externalType.value, scheme_of(system.connectionString))
        if spec is not None and spec.library is not None:
            needed.add(spec.library.requirement)
    if key_files(config):  # a process that names a private key signs with it (entwine), which cryptography does
        needed.add(ENTWINE)
    return needed


def chosen_by_environment(config: PipelinesConfig) -> list[str]:
    """The JSON paths of the external systems whose scheme is a ``${NAME}``: which connector, and so which
    client library, they need is known only where the environment fills it in."""
    from handlers.connectors.checks import scheme_from_environment

    return [f"externalSystems[{i}].connectionString" for i, system in enumerate(config.externalSystems)
            if scheme_from_environment(system.connectionString)]


def requirements(configs: Iterable[PipelinesConfig], platform: Platform = "local") -> list[str]:
    """The base of ``platform`` and what each config needs: sorted by name, each project once."""
    wanted = {project_name(r): r for r in BASES[platform]}
    for config in configs:
        for requirement in config_requirements(config):
            wanted.setdefault(project_name(requirement), requirement)
    return [wanted[name] for name in sorted(wanted)]


def main(args: Any) -> int:
    from agglo_core import ConfigError
    from handlers.runtime.boot import read_config_file
    from handlers.runtime.entwine_keys import validate_source

    configs, refused = [], False
    for path in args.configs:
        try:
            config, _ = validate_source(read_config_file(path))  # unreadable keys: the function's to read
        except ConfigError as e:
            # stderr: stdout is what pip installs.
            sys.stderr.write("".join(f"{path}: {problem}\n" for problem in e.problems))
            refused = True
            continue
        configs.append(config)
        for where in chosen_by_environment(config):
            print(f"{path}: warning: {where}: the environment chooses its connector, so no client library is "
                  f"listed for it", file=sys.stderr)
    if refused:
        return 1
    sys.stdout.write("".join(f"{requirement}\n" for requirement in requirements(configs, args.platform)))
    return 0
