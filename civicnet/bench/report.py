"""The bench's tables, from the results one run wrote (results.json): times and ratios, writes,
memory, the peer, the pipeline's stages and the invariants. Ratios are pipeline/baseline (above 1:
the pipeline is slower)."""

from __future__ import annotations

from typing import Any

from civicnet.bench.measure import TIERS
from civicnet.bench.pipeline_side import INGEST_STAGES, QUALITY_STAGES

MIB = 2**20


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b >= 0.05 else "—"  # a baseline that did nothing has no ratio


def _written(side: dict[str, Any]) -> dict[str, Any]:
    return next(iter(side.get("written", {}).values()), {"files": 0, "bytes_per_tier": dict.fromkeys(TIERS, 0)})


def quality_share(pipe: dict[str, Any]) -> float:
    return float(sum(pipe["steps"].get(k, 0.0) for k in QUALITY_STAGES) / pipe["seconds"])


def times(results: dict[str, Any]) -> list[str]:
    lines = [f"{'case':<18} {'rows':>10} {'pipeline s':>10} {'fan-out s':>9} {'×':>5} {'relay s':>8} {'×':>5} "
             f"{'rows/s':>9} {'quality':>7}"]
    for c in results["cases"]:
        s = c["sides"]
        p, f, r = s["pipeline"]["seconds"], s["fanout"]["seconds"], s["relay"]["seconds"]
        rows = results["drops"].get(c["case"], {}).get("rows", 0)
        rate = f"{rows / p:>9,.0f}" if rows else f"{'—':>9}"
        lines.append(f"{c['title']:<18} {rows:>10,} {p:>10.1f} {f:>9.1f} {_ratio(p, f):>5} {r:>8.1f} "
                     f"{_ratio(p, r):>5} {rate} {quality_share(s['pipeline']):>7.0%}")
    return lines


def writes(results: dict[str, Any]) -> list[str]:
    lines = [f"{'case':<18} {'node files written':^26} {'pipeline MiB of written node files per tier':^44} "
             f"{'MiB sent to storage':^26}",
             f"{'':<18} {'pipeline':>8} {'fan-out':>8} {'relay':>8} " + " ".join(f"{t:>10}" for t in TIERS)
             + f" {'pipeline':>8} {'fan-out':>8} {'relay':>8}"]
    for c in results["cases"]:
        s = c["sides"]
        w = {k: _written(s[k]) for k in ("pipeline", "fanout", "relay")}
        lines.append(f"{c['title']:<18} " + " ".join(f"{w[k]['files']:>8}" for k in w) + " "
                     + " ".join(f"{w['pipeline']['bytes_per_tier'][t] / MIB:>10.1f}" for t in TIERS) + " "
                     + " ".join(f"{s[k]['write_bytes'] / MIB:>8.0f}" for k in w))
    return lines


def memory(results: dict[str, Any]) -> list[str]:
    lines = [f"{'case':<18} {'pipeline largest':>16} {'pipeline sum':>12} {'processes':>9} {'fan-out':>8} "
             f"{'relay':>8} {'peer':>8}   (peak RSS, MiB)"]
    for c in results["cases"]:
        s = c["sides"]
        peer = f"{s['peer']['peak_largest_mib']:>8.0f}" if "peer" in s else f"{'—':>8}"
        lines.append(f"{c['title']:<18} {s['pipeline']['peak_largest_mib']:>16.0f} "
                     f"{s['pipeline']['peak_sum_mib']:>12.0f} {s['pipeline']['processes']:>9} "
                     f"{s['fanout']['peak_largest_mib']:>8.0f} {s['relay']['peak_largest_mib']:>8.0f} {peer}")
    return lines


def peer(results: dict[str, Any]) -> list[str]:
    if not results.get("peer"):
        return ["peer (dlt) skipped: no .venv-dlt (`make bench` creates it)"]
    lines = [f"{'case':<18} {'rows':>10} {'civicnet city-tier ingest s':>27} {'dlt scd2 s':>10} {'×':>5}"]
    for c in results["cases"]:
        s = c["sides"]
        if "peer" in s:
            ingest = sum(s["pipeline"]["residents_ingest"].get(k, 0.0) for k in INGEST_STAGES)
            lines.append(f"{c['title']:<18} {s['peer']['rows']:>10,} {ingest:>27.1f} {s['peer']['seconds']:>10.1f} "
                         f"{_ratio(ingest, s['peer']['seconds']):>5}")
    return lines


def stages(results: dict[str, Any]) -> list[str]:
    lines = []
    for c in results["cases"]:
        p = c["sides"]["pipeline"]
        shares = ", ".join(f"{k} {v:.1f} s ({v / p['seconds']:.0%})" for k, v in p["steps"].items())
        lines.append(f"{c['title']}: {shares}; city changes {p['city_changes'] or 'none'}")
    return lines


def invariants(results: dict[str, Any]) -> list[str]:
    lines = []
    for c in results["cases"]:
        inv = c.get("invariants")
        if inv is None:
            continue
        word = "hold" if inv["hold"] else "BROKEN"
        lines.append(f"{c['title']}: invariants {word} — {inv['nodes']} nodes, "
                     f"{len(inv['outside_jurisdiction'])} with rows outside their jurisdiction, "
                     f"{len(inv['tier_sum_mismatches'])} tier-sum mismatches, "
                     f"{len(inv['unbalanced_batches'])} of {inv['batches']} batches unbalanced")
    return lines


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    loads = ", ".join(f"{c['case']} {c['load_before'][0]:.1f}" for c in results["cases"])
    head = (f"civicnet bench — scale {results['scale']}, {results['drops']['full']['rows']:,} residents in the "
            f"initial drop, {results['workers']} sync worker(s), started {results['started']}\n"
            f"machine: {m['nproc']} cores, {m['mem_gib']} GiB, {m['cpu']}; 1-min load before each case: {loads}")
    parts = [("times (× = pipeline / baseline; quality = conform + gx gate + reconcile + quality report)", times),
             ("writes", writes), ("memory", memory), ("peer", peer), ("pipeline stages", stages),
             ("invariants (pipeline home after each case)", invariants)]
    return "\n\n".join([head] + [f"{title}\n" + "\n".join(fn(results)) for title, fn in parts])
