"""entwine: store each matching event, append it to the substream's signed chain, anchor to the ticker.

The config side (model, checks, docs); the stage, and how the substream is kept, is
``agglo_core.stages.entwine``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import StrictInt, StrictStr

from agglo_core.config import ConditionField, ConfigModel
from agglo_core.processes.spec import CheckContext, ExternalRef, Problem, ProcessSpec
from agglo_core.stages import entwine as stage
from agglo_core.stages.entwine import stream_keys

__all__ = ["SPEC", "Entwine", "stream_keys"]

class Entwine(ConfigModel):
    name: StrictStr = ""
    streamStateStore: StrictStr = ""
    objectStore: StrictStr = ""
    pemPath: StrictStr = ""
    subStreamID: StrictStr = ""
    tickerEndpoint: StrictStr = ""
    tickerInterval: StrictInt = 0
    condition: ConditionField | None = None


def _check(d: Entwine, ctx: CheckContext) -> Iterator[Problem]:
    if not d.pemPath:
        yield "pemPath", "must name a PEM private key file"
    if not d.tickerEndpoint:
        yield "tickerEndpoint", "must name the ticker (host:port or a URL)"
    if not d.subStreamID:
        yield "subStreamID", "must not be empty"
    if d.tickerInterval < 0:
        yield "tickerInterval", "must not be negative"


_DOC = """\
store the event in `objectStore`, append it to the signed
substream `subStreamID` kept in `streamStateStore`, and anchor the substream to
the ticker at `tickerEndpoint` every `tickerInterval` messages (0 counts as 1);
`pemPath` is the substream's private key. See [Entwine](#entwine-provable-order-across-independent-pipelines).

```json
{"entwine": {"name": "EntwineA", "streamStateStore": "KVStore", "objectStore": "ObjectStore",
  "pemPath": "out/a.pem", "subStreamID": "e546e731-2b86-43cd-b847-764f437a7835",
  "tickerEndpoint": "127.0.0.1:9080", "tickerInterval": 1, "condition": {}}}
```
"""

SPEC = ProcessSpec(
    kind="entwine", doc=_DOC, proto_field=9, model=Entwine, compile=stage.compile,
    summary="Stores each event in an object store and appends it to its substream's signed hash chain, "
            "anchored to an entwine ticker every `tickerInterval` messages, so anyone can later prove what "
            "happened and in which order.",
    externals=(
        ExternalRef("streamStateStore", "ExternalKVStore", "key-value store",
                    frozenset({"GetItems", "CompareAndPut"})),
        ExternalRef("objectStore", "ExternalObjectStore", "object store", frozenset({"Put"})),
    ),
    check=_check, key_files=lambda d: [("pemPath", d.pemPath)] if d.pemPath else [],
)
