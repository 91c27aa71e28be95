"""The compiler at large C: check, compile and render times and peak memory, examples/tiny.fdsl widened to C columns.

    python benchmarks/compile_speed.py --columns 3 4 5 6 7 8 9 10
    python benchmarks/compile_speed.py --columns 11 --lift-limits   # past the unit limit: the figure budget.py quotes

For each C, in a fresh Python process (so each peak is its own), one run of each stage:
**check** (parse, expand, validate: ``fractal_dsl.loads``), **compile** (the generated
module's source, ``codegen.generate``, with the output's syntax check, reported on its own
too), **import** (executing the generated module, whose ``_expand`` rebuilds the whole
network's tables from the blocks' graphs, and building the model: what ``train`` and
``build`` add), and **render** (the whole
network's DOT source as ``render`` draws it by default (blocks collapsed when the network is large), ``render.to_dot``; Graphviz's layout is ``benchmarks/render_speed.py``'s).
Peak memory is the process's maximum resident set (``ru_maxrss``): after check, compile
and render (which never import torch), with the interpreter's at the start for reference,
and after importing torch and building the model. Last, the generated module's size in
lines and the number of joins its tables describe.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

STAGES = r"""
import json, resource, sys, time
sys.path.insert(0, "benchmarks")
from render_speed import widened
from fractal_dsl import budget, codegen, render
from fractal_dsl.ir import LAYER
if sys.argv[2] == "lift":
    budget.MAX_UNITS = 10**9  # to measure a size past the limit (what the limit's comment quotes)

def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)

out = {"base_mb": rss()}
t = time.perf_counter(); net = widened(int(sys.argv[1])); out["check_s"] = time.perf_counter() - t
out["units"] = sum(1 for n in net.nodes() if n.kind == LAYER)
t = time.perf_counter(); source = codegen.generate(net, check=False); out["generate_s"] = time.perf_counter() - t
t = time.perf_counter(); compile(source, "<m>", "exec", dont_inherit=True); out["syntax_s"] = time.perf_counter() - t
out["compile_s"] = out["generate_s"] + out["syntax_s"]
out["source_kb"] = len(source) / 1024
out["lines"] = source.count("\n")
t = time.perf_counter(); render.to_dot(net); out["render_s"] = time.perf_counter() - t
out["peak_mb"] = rss()  # check, compile and render never import torch
import torch
out["torch_mb"] = rss()
t = time.perf_counter(); module = codegen.load_module(source, "m"); module.build()
out["import_s"] = time.perf_counter() - t
out["import_mb"] = rss()
out["joins"] = len(module._JOINS)
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--columns", type=int, nargs="+", default=list(range(3, 11)))
    ap.add_argument(
        "--lift-limits", action="store_true", help="raise the unit limit (fractal_dsl/budget.py) to measure past it"
    )
    args = ap.parse_args(argv)
    if min(args.columns) < 1:
        print("error: --columns must be at least 1", file=sys.stderr)
        return 2
    print(
        f"{'C':>3} {'units':>6} {'source':>9} {'check s':>8} {'compile s':>10} {'(syntax check)':>15} "
        f"{'render s':>9} {'peak MB':>8} {'(at start)':>11} {'import+build s':>15} {'peak MB with torch':>19} "
        f"{'joins':>6} {'lines':>6}"
    )
    for c in args.columns:
        run = subprocess.run(
            [sys.executable, "-c", STAGES, str(c), "lift" if args.lift_limits else "keep"],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode:
            print(f"C = {c}: failed\n{run.stderr}", file=sys.stderr)
            return 1
        r = json.loads(run.stdout)
        print(
            f"{c:>3} {r['units']:>6} {r['source_kb']:>6.0f} KB {r['check_s']:>8.2f} {r['compile_s']:>10.2f} "
            f"{r['syntax_s']:>15.2f} {r['render_s']:>9.2f} {r['peak_mb']:>8.0f} {r['base_mb']:>11.0f} "
            f"{r['import_s']:>15.2f} {r['import_mb']:>19.0f} {r['joins']:>6} {r['lines']:>6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
