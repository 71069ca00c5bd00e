"""Pictures of pipelines: readable conditions, the graph's nodes and edges, and its three renderings."""

from __future__ import annotations

import pathlib
import xml.dom.minidom

from builders import cmp, config, exists, external, kv, lit, num, var

from agglo_core import load_config
from agglo_core.condition_syntax import condition_text
from agglo_core.config import Condition
from handlers.authoring.graph import build, dot, mermaid, svg

REPO = pathlib.Path(__file__).resolve().parents[2]


def expr(kind: str, lhs: dict, op: str, rhs: dict) -> dict:
    return {"expression": {kind: {"lhs": lhs, "op": op, "rhs": rhs}}}


def test_conditions_read_as_one_line():
    def text(c: dict) -> str | None:
        return condition_text(Condition.model_validate(c))

    assert text(cmp(var("someNum"), "GreaterThanOrEqual", num(3))) == "someNum >= 3"
    assert text(cmp(var("name"), "RegexMatch", lit('^a"b'))) == "name =~ '^a\"b'"
    either = expr("logical", {"expression": cmp(var("a"), "Equal", lit("x"))["expression"]}, "LogicalOr",
                  {"expression": cmp(var("tags.0.weight"), "GreaterThan", num(3))["expression"]})
    assert text(either) == "a == 'x' || tags.0.weight > 3"
    total = expr("comparator", {"expression": expr("binary", var("a"), "Addition", num(1))["expression"]},
                 "LessThan", var("b"))
    assert text(total) == "a + 1 < b"
    # binge's names: Inversion is logical not, LogicalNot bitwise not.
    assert text({"expression": {"unary": {"op": "Inversion", "rhs": var("done")}}}) == "!done"
    bitwise_not = {"expression": {"unary": {"op": "LogicalNot", "rhs": var("n")}}}
    assert text(cmp(bitwise_not, "Equal", num(-1))) == "~n == -1"
    assert text(exists("author", negate=("githash",))) == "exists(author) && !exists(githash)"
    assert text({}) is None and condition_text(None) is None


def sample_config() -> dict:
    return config(
        {"continuation": {"name": "OnlyBig", "condition": cmp(var("n"), "GreaterThan", num(10))}},
        {"aggregator": {"name": "Count", "stateStore": "State", "condition": exists("user"),
                        "aggregation": {"key": "n", "aggregationType": "AggCount", "groupByKeys": ["user"]}}},
        {"spawner": {"name": "Notify", "doSync": True, "job": {"runnable": {"pathToExec": "/usr/bin/notify"}}}},
        {"tee": {"name": "Out", "outputConnectorRef": "Hook", "condition": cmp(var("kind"), "Equal", lit("<a>"))}},
        externals=(kv(), external("ExternalHttp", "Hook", "https://user:secret@example.com/hook")))


def test_the_graph_has_processes_in_order_and_conditions_on_edges():
    g = build(load_config(sample_config()))
    (name, ids), = g.clusters
    assert name == "P" and [g.nodes[i].lines[0] for i in ids] == ["event in", "OnlyBig", "Count", "Notify", "Out",
                                                                  "output"]
    labelled = {(g.nodes[e.src].lines[0], g.nodes[e.dst].lines[0]): e.label for e in g.edges}
    assert labelled[("OnlyBig", "Count")] == "if n > 10"
    assert labelled[("Count", "State")] == "if exists(user)"
    assert labelled[("Notify", "/usr/bin/notify")] is None
    assert labelled[("Out", "Hook")] == "if kind == '<a>'"
    assert g.nodes[ids[2]].lines[2] == "AggCount of n by user"
    hook = next(n for n in g.nodes.values() if n.lines[0] == "Hook")
    assert "secret" not in hook.lines[1] and "***" in hook.lines[1]


def test_mermaid_dot_and_svg_renderings():
    g = build(load_config(sample_config()))
    m = mermaid(g)
    assert m.startswith("flowchart TD\n") and 'subgraph pipeline0 ["P"]' in m
    assert '-.->|"if kind == \'#lt;a#gt;\'"|' in m
    assert 'p0_0 -->|"if n #gt; 10"| p0_1' in m
    d = dot(g)
    assert "subgraph cluster_0 {" in d and 'label="if kind == \'<a>\'", style=dashed' in d
    assert d.count("->") == len(g.edges)
    doc = xml.dom.minidom.parseString(svg(g))
    assert len(doc.getElementsByTagName("g")) == len(g.nodes)
    assert len(doc.getElementsByTagName("line")) == len(g.edges)
    texts = {t.firstChild.data for t in doc.getElementsByTagName("text")}
    assert {"if n > 10", "if kind == '<a>'", "OnlyBig", "P"} <= texts


def test_svg_boxes_never_overlap_with_several_pipelines_sharing_a_store():
    cfg = sample_config()
    cfg["pipelines"].append({"name": "Second", "processes": [{"name": "Count"}, {"name": "Out"}]})
    doc = xml.dom.minidom.parseString(svg(build(load_config(cfg))))
    boxes = [tuple(int(g.getElementsByTagName("rect")[0].getAttribute(a)) for a in ("x", "y", "width", "height"))
             for g in doc.getElementsByTagName("g")]
    assert len(boxes) == 6 + 4 + 2 + 1  # two pipelines' nodes, the state store and the hook, the executable
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1, "two boxes overlap"
    width = int(doc.documentElement.getAttribute("width"))
    assert all(x + w <= width for x, _, w, _ in boxes)
