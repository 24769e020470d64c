"""The chart of a run, BENCHMARKS.svg: grouped bars of throughput, the
systems side by side at 10,000 keys, then causalkv by key count and replica
count. Drawn with matplotlib (Agg backend); without it, no chart and a note.
"""

from .tables import get, short

COLORS = {
    "HTTP ceiling": "#9e9e9e", "causalkv, 1 replica": "#1f77b4",
    "causalkv, spread over 3": "#6baed6", "etcd, fsync": "#d62728",
    "etcd, no fsync": "#ff9896", "Redis, 1+2 replicas": "#2ca02c",
    "scale: GET": "#9467bd", "scale: PUT": "#ff7f0e",
}


def panels(r):
    """[(panel title, [(group label, [(series, req/s or None)])])]: what
    the chart shows, from a run's results."""
    ck, ce = r.get("causalkv", {}), r.get("ceiling", {})
    systems = []
    for op, label in (("get", "GET"), ("put", "PUT"), ("mix", "90/10 mix")):
        g = [("HTTP ceiling", get(ce, op, "rps")),
             ("causalkv, 1 replica", get(ck, f"{op}_one", "rps")),
             ("causalkv, spread over 3", get(ck, f"{op}_spread", "rps"))]
        if op != "mix":
            g += [("etcd, fsync", get(r, "etcd_fsync", op, "rps")),
                  ("etcd, no fsync", get(r, "etcd_nofsync", op, "rps")),
                  ("Redis, 1+2 replicas", get(r, "redis", "set" if op == "put" else "get", "rps"))]
        systems.append((label, g))
    scale = []
    sc = r.get("scale")
    if sc:
        for lv in sorted(sc["levels"]):
            scale.append((f"{short(lv)} keys", [
                ("scale: GET", get(sc, "levels", lv, "get", "rps")),
                ("scale: PUT", get(sc, "levels", lv, "put", "rps"))]))
        if sc.get("five"):
            lv = sorted(sc["levels"])[0]
            scale.append((f"5 replicas, {short(lv)}", [
                ("scale: GET", get(sc, "five", "get", "rps")),
                ("scale: PUT", get(sc, "five", "put", "rps"))]))
    out = [("Systems (10,000 keys)", systems)]
    if scale:
        out.append(("causalkv: keys, replicas", scale))
    return out


def write(r, path):
    """Writes the chart to path; None if it did, else why not (a note for
    the report). Never raises."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (python3-matplotlib): BENCHMARKS.svg not written"
    try:
        matplotlib.use("Agg")
        draw(r, path)
        return None
    except Exception as e:  # a chart is not worth a failed run
        return f"matplotlib failed: {type(e).__name__}: {e}: BENCHMARKS.svg not written"


def draw(r, path, fmt="svg"):
    """Draws the chart into path (`fmt`: svg, or png to look at it)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    plt.rcParams["svg.hashsalt"] = "causalkv-bench"  # the same figures, the same file
    plt.rcParams["font.family"] = "sans-serif"
    ps = panels(r)
    widths = [sum(len(g) + 1 for _, g in groups) for _, groups in ps]
    fig, axes = plt.subplots(1, len(ps), sharey=True, squeeze=False,
                             figsize=(max(7.0, 0.25 * sum(widths) + 1.5), 5.0),
                             gridspec_kw={"width_ratios": widths})
    used = []
    for ax, (title, groups) in zip(axes[0], ps):
        x, ticks = 0.0, []
        for label, g in groups:
            start = x
            for name, v in g:
                if name not in used:
                    used.append(name)
                if v:
                    ax.bar(x, v, width=0.9, color=COLORS[name])
                    ax.text(x, v, f"{v / 1000:.0f}k", ha="center", va="bottom", fontsize=6)
                else:
                    ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=6, color="#999999")
                x += 1
            ticks.append(((start + x - 1) / 2, label.replace(", ", ",\n")))
            x += 1  # the gap between groups
        ax.set_xticks([t for t, _ in ticks], [lb for _, lb in ticks], fontsize=8)
        ax.set_xlim(-1, x - 1)
        ax.set_title(title, fontsize=10, fontweight="bold")
        ax.grid(axis="y", color="#e6e6e6")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0][0].yaxis.set_major_formatter(lambda v, _: f"{v / 1000:,.0f}k")
    fig.suptitle("Throughput, requests/s (median of runs)", x=0.02, ha="left", fontsize=12,
                 fontweight="bold")
    fig.legend(handles=[Patch(color=COLORS[n], label=n) for n in COLORS if n in used],
               loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    plt.close(fig)
