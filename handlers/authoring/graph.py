"""``agglo graph``: a picture of a config's pipelines as Mermaid, Graphviz dot or SVG.

Each pipeline is a column of its processes in order, from "event in" to
"output"; each process lists what it does; edges to the external systems and
executables a process touches carry the condition under which it does. A
continuation's condition labels the edge it lets events through. SVG is drawn
here with a simple top-down layout, so it needs no Graphviz; for Graphviz's own
layout, pipe ``--format dot`` into ``dot -Tsvg``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from agglo_core import ConfigError, PipelinesConfig, load_config
from agglo_core.condition_syntax import condition_text
from agglo_core.config import ProcessDefinition
from agglo_core.processes import spec_of
from handlers.connectors.catalog import redact


@dataclass
class Node:
    id: str
    lines: list[str]
    shape: str
    """"io" (event in, output), "process", "store" (an external system) or "exec" (an executable)."""


@dataclass
class Edge:
    src: str
    dst: str
    label: str | None = None
    dashed: bool = False


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    clusters: list[tuple[str, list[str]]] = field(default_factory=list)
    """(pipeline name, its node ids in order)."""


def _when(cond: Any, prefix: str = "if ") -> str | None:
    text = condition_text(cond)
    return None if text is None else prefix + text


def _describe(d: ProcessDefinition) -> tuple[list[str], list[tuple[str, str | None]], list[tuple[str, str | None]]]:
    """What a process does (lines), and the externals and executables it touches, each with its condition."""
    spec, body = spec_of(d), d.body
    when = _when(getattr(body, "condition", None))
    stores = [(name, when) for ref in spec.externals if (name := getattr(body, ref.field))]
    execs = [(ref.executable, _when(ref.condition)) for ref in spec.executables(body)]
    return spec.describe(body), stores, execs


def build(config: PipelinesConfig) -> Graph:
    g = Graph()
    outside: dict[str, str] = {}  # external name or executable path -> node id

    def outside_node(key: str, is_exec: bool) -> str:
        if key not in outside:
            node_id = outside[key] = f"{'e' if is_exec else 'x'}{len(outside)}"
            if is_exec:
                g.nodes[node_id] = Node(node_id, [key], "exec")
            else:
                ext = config.external(key)
                g.nodes[node_id] = Node(node_id, [key, f"{ext.externalType.value.removeprefix('External')}: "
                                                      f"{redact(ext.connectionString)}"], "store")
        return outside[key]

    for pi, pipe in enumerate(config.pipelines):
        ids = [f"p{pi}_in"]
        g.nodes[ids[0]] = Node(ids[0], ["event in"], "io")
        label_next: str | None = None
        for j, proc in enumerate(pipe.processes):
            d = config.process(proc.name)
            lines, stores, execs = _describe(d)
            node_id = f"p{pi}_{j}"
            g.nodes[node_id] = Node(node_id, [d.name, f"({d.kind})", *lines], "process")
            g.edges.append(Edge(ids[-1], node_id, label_next))
            ids.append(node_id)
            label_next = _when(d.body.condition) if spec_of(d).gates_pipeline else None
            g.edges.extend(Edge(node_id, outside_node(name, False), cond, True) for name, cond in stores)
            g.edges.extend(Edge(node_id, outside_node(path, True), cond, True) for path, cond in execs)
        out_id = f"p{pi}_out"
        g.nodes[out_id] = Node(out_id, ["output"], "io")
        g.edges.append(Edge(ids[-1], out_id, label_next))
        g.clusters.append((pipe.name, [*ids, out_id]))
    return g


def _nodes(g: Graph, node: Callable[[Node, str], str], opening: Callable[[int, str], list[str]],
           closing: str) -> list[str]:
    """Every node's line: a pipeline's inside its group (``opening`` … ``closing``), then the others."""
    out, grouped = [], set()
    for i, (name, ids) in enumerate(g.clusters):
        out.extend(opening(i, name))
        out.extend(node(g.nodes[n], "    ") for n in ids)
        out.append(closing)
        grouped.update(ids)
    out.extend(node(n, "  ") for n in g.nodes.values() if n.id not in grouped)
    return out


# --- Mermaid -------------------------------------------------------------------------------------------------

_MERMAID_SHAPES = {"io": ('(["', '"])'), "process": ('["', '"]'), "store": ('[("', '")]'), "exec": ('[["', '"]]')}


def _mermaid_text(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def mermaid(g: Graph) -> str:
    out = ["flowchart TD"]

    def node(n: Node, indent: str) -> str:
        left, right = _MERMAID_SHAPES[n.shape]
        return f"{indent}{n.id}{left}{'<br/>'.join(_mermaid_text(line) for line in n.lines)}{right}"

    out.extend(_nodes(g, node, lambda i, name: [f'  subgraph pipeline{i} ["{_mermaid_text(name)}"]'], "  end"))
    for e in g.edges:
        arrow = "-.->" if e.dashed else "-->"
        label = f'|"{_mermaid_text(e.label)}"|' if e.label else ""
        out.append(f"  {e.src} {arrow}{label} {e.dst}")
    return "\n".join(out) + "\n"


# --- Graphviz dot --------------------------------------------------------------------------------------------

_DOT_SHAPES = {"io": "oval", "process": "box", "store": "cylinder", "exec": "component"}


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(g: Graph) -> str:
    out = ["digraph agglo {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];',
           '  edge [fontname="Helvetica", fontsize=10];']

    def node(n: Node, indent: str) -> str:
        label = "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in n.lines)
        style = ', style="rounded"' if n.shape == "process" else ""
        return f'{indent}{n.id} [label="{label}", shape={_DOT_SHAPES[n.shape]}{style}];'

    out.extend(_nodes(g, node, lambda i, name: [f"  subgraph cluster_{i} {{", f"    label={_dot_text(name)};"], "  }"))
    for e in g.edges:
        attrs = [f"label={_dot_text(e.label)}"] if e.label else []
        if e.dashed:
            attrs.append("style=dashed")
        out.append(f"  {e.src} -> {e.dst}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    out.append("}")
    return "\n".join(out) + "\n"


# --- SVG -----------------------------------------------------------------------------------------------------

_CHAR_W, _LINE_H, _PAD, _ROW_GAP, _COL_GAP, _TOP = 7, 15, 10, 44, 110, 50
_FILLS = {"io": "#eef3f8", "process": "#ffffff", "store": "#fdf6e3", "exec": "#f3eefb"}


def _size(n: Node) -> tuple[int, int]:
    return max(120, max(len(line) for line in n.lines) * _CHAR_W + 2 * _PAD), len(n.lines) * _LINE_H + 2 * _PAD


def svg(g: Graph) -> str:
    """A simple layout: a column per pipeline, external systems and executables in a column on the right."""
    boxes: dict[str, tuple[int, int, int, int]] = {}  # id -> x, y, w, h
    x = 20
    for _, ids in g.clusters:
        width = max(_size(g.nodes[i])[0] for i in ids)
        y = _TOP
        for i in ids:
            w, h = _size(g.nodes[i])
            boxes[i] = (x + (width - w) // 2, y, w, h)
            y += h + _ROW_GAP
        x += width + _COL_GAP + 80
    free_y = _TOP
    for n in g.nodes.values():
        if n.id in boxes:
            continue
        first = min((boxes[e.src][1] for e in g.edges if e.dst == n.id), default=_TOP)
        w, h = _size(n)
        y = max(first, free_y)
        boxes[n.id] = (x, y, w, h)
        free_y = y + h + _ROW_GAP // 2
    width = max(bx + bw for bx, _, bw, _ in boxes.values()) + 20
    height = max(by + bh for _, by, _, bh in boxes.values()) + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           '<rect width="100%" height="100%" fill="white"/>']
    for name, ids in g.clusters:
        bx, by, _, _ = boxes[ids[0]]
        left = min(boxes[i][0] for i in ids) - 10
        right = max(boxes[i][0] + boxes[i][2] for i in ids) + 10
        bottom = max(boxes[i][1] + boxes[i][3] for i in ids) + 10
        out.append(f'<rect x="{left}" y="{by - 34}" width="{right - left}" height="{bottom - by + 34}" rx="6" '
                   'fill="#f7f7f7" stroke="#bbb"/>')
        out.append(f'<text x="{left + 8}" y="{by - 16}" font-weight="bold">{escape(name)}</text>')
    for e in g.edges:
        sx, sy, sw, sh = boxes[e.src]
        dx, dy, dw, dh = boxes[e.dst]
        if e.dashed:  # to the side: from the process's right edge to the external's left edge
            x1, y1, x2, y2 = sx + sw, sy + sh // 2, dx, dy + dh // 2
        else:
            x1, y1, x2, y2 = sx + sw // 2, sy + sh, dx + dw // 2, dy
        dash = ' stroke-dasharray="5,4"' if e.dashed else ""
        out.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555"{dash} marker-end="url(#arrow)"/>')
        if e.label:
            lx, ly = ((x1 + x2) // 2 + 6, (y1 + y2) // 2 + 4) if not e.dashed else (x1 + 8, y1 - 6)
            out.append(f'<text x="{lx}" y="{ly}" font-size="11" fill="#a33" stroke="white" stroke-width="3" '
                       f'paint-order="stroke">{escape(e.label)}</text>')
    for n in g.nodes.values():
        bx, by, bw, bh = boxes[n.id]
        rx = bh // 2 if n.shape == "io" else 4 if n.shape == "process" else 0
        dash = ' stroke-dasharray="3,3"' if n.shape == "exec" else ""
        out.append(f'<g class="{n.shape}"><rect x="{bx}" y="{by}" width="{bw}" height="{bh}" rx="{rx}" '
                   f'fill="{_FILLS[n.shape]}" stroke="#333"{dash}/>')
        for k, line in enumerate(n.lines):
            weight = ' font-weight="bold"' if k == 0 and n.shape != "io" else ""
            out.append(f'<text x="{bx + bw // 2}" y="{by + _PAD + 11 + k * _LINE_H}" text-anchor="middle"{weight}>'
                       f'{escape(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


RENDERERS = {"mermaid": mermaid, "dot": dot, "svg": svg}


def main(args: Any) -> int:
    from handlers.runtime.boot import UsageError, read_config_file

    try:
        config = load_config(read_config_file(args.config))
    except ConfigError as e:
        raise UsageError(f"{args.config}: {e}") from None
    sys.stdout.write(RENDERERS[args.format](build(config)))
    return 0
