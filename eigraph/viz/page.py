"""The ``.html`` output: one self-contained page (no scripts, no outside resources) with the
drawing, the Dale's-law summary of ``eigraph validate``, the findings, and tables of the
populations and projections.
"""

from __future__ import annotations

import re
from html import escape

from eigraph import __version__
from eigraph.expr.ast import format_number
from eigraph.summary import format_tau
from eigraph.viz import style
from eigraph.viz.scene import Scene, delay_text

CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1a1a1a; margin: 24px auto;
       max-width: 1200px; padding: 0 16px; line-height: 1.45; background: #fff; }
h1 { font-size: 1.5em; margin: 0 0 4px; } h2 { font-size: 1.15em; margin: 28px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; margin: 0 0 16px; font-size: 0.92em; }
figure { margin: 0; border: 1px solid #e2e2e2; border-radius: 6px; padding: 8px; overflow-x: auto; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
table { border-collapse: collapse; font-size: 0.86em; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #ececec; vertical-align: top; }
th { background: #f5f5f3; font-weight: 600; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.compact { width: auto; } table.compact td, table.compact th { padding: 4px 16px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.95em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 50%; margin-right: 6px;
          vertical-align: -0.05em; border: 1.5px solid; }
.ok { color: #2e7d32; font-weight: 600; } .bad { color: #7b1fa2; font-weight: 600; }
.warn { color: #b36b00; font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
.plastic { color: #2e7d32; font-weight: 600; font-style: italic; }
footer { margin-top: 32px; color: #888; font-size: 0.8em; }
"""


def _sign_cell(sign: int) -> str:
    return (f'<span class="swatch" style="background:{style.SIGN_FILL[sign]};border-color:{style.SIGN_STROKE[sign]}">'
            f"</span>{style.SIGN_WORD[sign]}")


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), compact: bool = False) -> str:
    cells = "".join(f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
                    for i, h in enumerate(head))
    out = [f'<table{" class=compact" if compact else ""}><thead><tr>{cells}</tr></thead><tbody>']
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def dale_summary(graph, diagnostics) -> str:
    """The Dale's-law part of ``eigraph validate``, as HTML."""
    on = bool(graph.graph.get("dale", True))
    nodes = list(graph.nodes(data=True))
    rows = []
    for sign in (1, -1, 0):
        pops = [n for n, d in nodes if d["sign"] == sign]
        if not pops:
            continue
        neurons = sum(graph.nodes[n]["size"] for n in pops)
        edges = [d for u, _, d in graph.edges(data=True) if graph.nodes[u]["sign"] == sign]
        syn = sum(d["expected_synapses"] for d in edges)
        rows.append([_sign_cell(sign), str(len(pops)), f"{neurons:,}", str(len(edges)), f"~{style.human(syn)}"])
    exc = sum(d["size"] for _, d in nodes if d["sign"] > 0 and d["role"] == "hidden")
    inh = sum(d["size"] for _, d in nodes if d["sign"] < 0 and d["role"] == "hidden")
    dale = [d for d in diagnostics if d.code.startswith("D")]
    errors = [d for d in dale if d.is_error]
    parts = [f"<p>Dale's law is <b>{'on' if on else 'off'}</b> for this network"
             + ("" if on else " (its findings are warnings)") + ".</p>"]
    if exc + inh:
        parts.append(f'<p class="note">Hidden neurons: {exc:,} excitatory, {inh:,} inhibitory'
                     + (f" ({100 * exc / (exc + inh):.0f}% E)" if exc + inh else "") + ".</p>")
    parts.append(_table(["sign", "populations", "neurons", "projections from them", "synapses"], rows, {1, 2, 3, 4},
                        compact=True))
    if not dale:
        parts.append('<p class="ok">No Dale\'s-law findings: every hidden population is excitatory or inhibitory, '
                     "and every projection from a signed population stores magnitudes of one sign.</p>")
    else:
        verdict = "bad" if errors else "warn"
        parts.append(f'<p class="{verdict}">{len(dale)} Dale\'s-law finding{"s" if len(dale) != 1 else ""}'
                     f" ({len(errors)} error{'s' if len(errors) != 1 else ''}):</p>")
        parts.append("<ul>" + "".join(f"<li><code>{escape(d.code)}</code> {escape(d.severity)} "
                                      f"{'at ' + escape(str(d.span)) + ': ' if d.span else ''}{escape(d.message)}"
                                      + (f'<br><span class="note">hint: {escape(d.hint)}</span>' if d.hint else "")
                                      + "</li>" for d in dale) + "</ul>")
    return "\n".join(parts)


def page(model, scene: Scene, svg: str, diagnostics) -> str:
    graph = getattr(model, "graph", model)
    name = graph.graph.get("name") or "network"
    svg = re.sub(r"^<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"^<!DOCTYPE[^>]*>\s*", "", svg)
    natural = re.search(r'<svg[^>]*\swidth="([\d.]+)pt"', svg)
    if natural:  # up to 1.5 times its size in points, as wide as the page allows
        wide = float(natural.group(1)) * 1.5
        svg = re.sub(r'(<svg[^>]*?)\swidth="[\d.]+pt"\s+height="[\d.]+pt"',
                     rf'\1 style="width: min(100%, {wide:.0f}px); height: auto"', svg, count=1)
    dt = graph.graph.get("dt")
    meta = [escape(str(graph.graph.get("file") or "")),
            f"dt = {format_number(round(dt * 1e3, 6))} ms" if dt else "no dt (discrete steps)",
            f"seed {graph.graph.get('seed')}", escape(str(graph.graph.get("precision")))]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(name)} · eigraph</title>", '<link rel="icon" href="data:,">',
           f"<style>{CSS}</style></head><body>",
           f"<h1>{escape(name)}</h1>", f'<p class="meta">{" · ".join(meta)}<br>{escape(scene.subtitle)}</p>',
           f"<figure>{svg}</figure>"]
    if scene.notes:
        out.append("<ul>" + "".join(f'<li class="note">{escape(n)}</li>' for n in scene.notes) + "</ul>")
    out += ["<h2>Dale's law</h2>", dale_summary(graph, diagnostics)]
    if diagnostics:
        errors = sum(d.is_error for d in diagnostics)
        out.append(f"<h2>Findings ({errors} error{'s' if errors != 1 else ''}, "
                   f"{len(diagnostics) - errors} warning{'s' if len(diagnostics) - errors != 1 else ''})</h2>")
        rows = [[f"{'E' if d.is_error else 'W'}{i}", f'<span class="{"bad" if d.is_error else "warn"}">'
                 f"{escape(d.severity)}</span>", f"<code>{escape(d.code)}</code>",
                 escape(str(d.span)) if d.span else "–",
                 escape(d.message) + (f'<br><span class="note">hint: {escape(d.hint)}</span>' if d.hint else "")]
                for i, d in enumerate(diagnostics, 1)]
        out.append(_table(["mark", "severity", "code", "where", "message"], rows))
    rows = []
    for pop, d in graph.nodes(data=True):
        rows.append([f"<b>{escape(pop)}</b>", escape(d.get("area") or "–"), escape(d["celltype"]),
                     _sign_cell(d["sign"]), escape(d["role"]), f"{d['size']:,}", (format_tau(d) or "–"), escape(d["activation"]),
                     format_number(d["noise"]), escape(", ".join(d.get("compartments") or []) or "–")])
    out += ["<h2>Populations</h2>", _table(["name", "area", "cell type", "sign", "role", "neurons", "tau",
                                            "activation", "noise", "compartments"], rows, {5})]
    rows = []
    dt = graph.graph.get("dt")
    for u, v, key, d in graph.edges(keys=True, data=True):
        learn = d.get("learn")
        target = v + (f".{d['target_compartment']}" if d.get("target_compartment") else "")
        rows.append([f"<b>{escape(key)}</b>", escape(u), escape(target), _sign_cell(d["sign"]),
                     f"<code>{escape(d['connectivity'].get('text', d['connectivity'].get('kind', '')))}</code>",
                     format_number(round(d["fan_in"], 2)), f"{round(d['expected_synapses']):,}",
                     f"<code>{escape(d['init']['text'])}</code>" if d.get("init") else "from file",
                     escape(delay_text(d, dt).replace("delay ", "")) + (f" ({d['delay']} steps)" if dt else ""),
                     f'<span class="plastic">{escape(learn["text"])}</span>' if learn else "–"])
    if rows:
        out += ["<h2>Projections</h2>", _table(["name", "source", "target", "sign", "connectivity", "fan-in",
                                               "synapses", "init", "delay", "learning rule"], rows, {5, 6})]
    used = sorted({d["learn"]["rule"] for *_, d in graph.edges(data=True) if d.get("learn")})
    if used:
        rules = graph.graph.get("rules") or {}
        items = []
        for rule in used:
            eqs = "; ".join(rules.get(rule, {}).get("equations", []))
            items.append(f"<li><b>{escape(rule)}</b>: <code>{escape(eqs)}</code></li>")
        out += ["<h2>Learning rules in use</h2>", "<ul>" + "".join(items) + "</ul>"]
    out.append(f"<footer>Drawn by eigraph {escape(__version__)}. Hover over a population or a projection in the "
               f"drawing for its details.</footer>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
