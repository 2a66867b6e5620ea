"""`make bench-sweep`: the full initial load at several scales, and how its cost grows with rows.

Each scale is one `python -m civicnet.bench --cases full` run (its own home under --home, its own
results.json); then a least-squares line through the points, per side, splits seconds and peak
memory into a part fixed per run (per node: the 899 node files, imports, the GX suite) and a part
per million residents. With three points the line is a reading aid, not a model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SIDES = ("pipeline", "fanout", "relay")


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line; slope 0 with one point."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return my - slope * mx, slope


def point(results: dict[str, Any]) -> dict[str, Any]:
    full = results["cases"][0]["sides"]
    return {"scale": results["scale"], "rows": results["drops"]["full"]["rows"],
            "load": results["cases"][0]["load_before"][0],
            **{f"{s}_s": full[s]["seconds"] for s in SIDES},
            **{f"{s}_largest_mib": full[s]["peak_largest_mib"] for s in SIDES},
            "pipeline_sum_mib": full["pipeline"]["peak_sum_mib"]}


def render(points: list[dict[str, Any]]) -> str:
    lines = [f"{'scale':>6} {'residents':>11} {'load':>5} {'pipeline s':>10} {'fan-out s':>9} {'relay s':>8} "
             f"{'pipe largest MiB':>16} {'pipe sum MiB':>12} {'relay MiB':>9}"]
    for p in points:
        lines.append(f"{p['scale']:>6} {p['rows']:>11,} {p['load']:>5.1f} {p['pipeline_s']:>10.1f} "
                     f"{p['fanout_s']:>9.1f} {p['relay_s']:>8.1f} {p['pipeline_largest_mib']:>16.0f} "
                     f"{p['pipeline_sum_mib']:>12.0f} {p['relay_largest_mib']:>9.0f}")
    rows = [p["rows"] / 1e6 for p in points]
    lines.append("\nfitted: fixed per run + per million residents")
    for key in ("pipeline_s", "fanout_s", "relay_s", "pipeline_largest_mib", "pipeline_sum_mib"):
        fixed, per_m = fit(rows, [p[key] for p in points])
        lines.append(f"  {key:<22} {fixed:>9.1f} + {per_m:>8.1f} per M rows")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="civicnet.bench.sweep")
    p.add_argument("--home", default="bench-out-sweep")
    p.add_argument("--scales", default="0.01,0.1,1.0")
    p.add_argument("--lock", help="passed on to each run (held for the big scales)")
    p.add_argument("--peer", default="auto")
    args = p.parse_args(argv)
    out = Path(args.home).resolve()
    points = []
    for scale in (float(s) for s in args.scales.split(",")):
        home = out / f"scale-{scale}"
        cmd = [sys.executable, "-m", "civicnet.bench", "--scale", str(scale), "--home", str(home), "--cases", "full",
               "--no-connectors", "--peer", args.peer, *(["--lock", args.lock] if args.lock else [])]
        subprocess.run(cmd, check=True)
        points.append(point(json.loads((home / "results.json").read_text())))
        (out / "sweep.json").write_text(json.dumps(points, indent=1))
    print("\nfull initial load against rows\n" + render(points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
