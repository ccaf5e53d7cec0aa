"""One PNG: ratios to the reference per workload (left) and the fan-out
delivery-latency curves (right), so a glance shows where we stand and how
latency is spread rather than just its p99."""

from __future__ import annotations

from pathlib import Path

from .report import REFS, Summary, ratio
from .workloads import BY_NAME

COLORS = {"ours": "#1f77b4", "ref-mem": "#ff7f0e", "ref-file": "#2ca02c"}
TARGETS = {"append_small": 1.5, "append_many": 1.5, "append_json": 1.5, "read_small": 1.5, "read_catchup": 2.0}
FANOUTS = ("fanout_sse_1000", "fanout_sse_10000", "fanout_longpoll_1000", "fanout_longpoll_10000")


def draw(summary: Summary, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = plt.figure(figsize=(16, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, 3, width_ratios=[1.6, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    names = [w for w in BY_NAME if w in summary]
    y = list(range(len(names)))
    h = 0.38
    for k, ref in enumerate(REFS):
        vals = [ratio(summary, w, ref) or 0.0 for w in names]
        bars = ax.barh([i + (k - 0.5) * h for i in y], vals, height=h, color=COLORS[ref], label=f"vs {ref}")
        for b, v in zip(bars, vals, strict=True):
            if v:
                ax.text(b.get_width() * 1.05, b.get_y() + h / 2, f"{v:.2f}x", va="center", fontsize=7)
    for i, w in enumerate(names):
        if w in TARGETS:
            ax.plot([TARGETS[w]] * 2, [i - 0.45, i + 0.45], color="black", lw=1.5)
        if w.startswith("append"):
            ax.plot([30, 30], [i - 0.45, i + 0.45], color=COLORS["ref-file"], lw=1.5, ls=":")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(y, [f"{w}\n({BY_NAME[w].unit})" for w in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ours vs reference (x, >1 = ours better; black tick: target vs ref-mem; dotted: 30x vs ref-file)")
    ax.legend(loc="lower right")
    ax.set_title("Ratios to the reference (same run)")
    for idx, wl in enumerate(FANOUTS):
        a = fig.add_subplot(grid[idx // 2, 1 + idx % 2])
        for server, m in summary.get(wl, {}).items():
            curve = m.get("latency_curve_ms")
            if not isinstance(curve, list) or not curve:
                continue
            qs = [p[0] for p in curve]
            ms = [max(p[1], 0.01) for p in curve]
            frac = m.get("delivered_fraction")
            frac = frac if isinstance(frac, int | float) else 0.0
            label = f"{server} (p99 {m.get('latency_p99_ms')} ms, got {frac:.2%})"
            a.plot(ms, qs, color=COLORS.get(server), label=label)
        a.set_xscale("log")
        a.set_ylim(0, 100)
        a.set_xlabel("delivery latency (ms)")
        a.set_ylabel("percentile")
        a.set_title(wl, fontsize=9)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
