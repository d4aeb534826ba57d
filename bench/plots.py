"""PNG plots of the provisioning results: time to ready and requests per node against N, one line per system.

matplotlib with the Agg backend (no display on a build machine); without matplotlib (the `bench` extra
not installed) nothing is drawn and the JSON and Markdown results stand alone.
"""

from __future__ import annotations

from pathlib import Path

# (summary key, y-axis label, file suffix): what `make bench` plots against N.
PROVISION_PLOTS = (
    ("create_s_median", "time until all N are ready (s, median)", "time"),
    ("requests_per_node", "cloud requests per node (create + destroy)", "requests"),
)


def provision_plots(summary: list[dict], stem: Path, title: str = "") -> list[Path]:
    """One PNG per entry of PROVISION_PLOTS beside ``stem``; the paths written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for key, label, suffix in PROVISION_PLOTS:
        fig, ax = plt.subplots(figsize=(6, 4))
        for system in sorted({r["system"] for r in summary}):
            mine = sorted((r for r in summary if r["system"] == system), key=lambda r: r["nodes"])
            ax.plot([r["nodes"] for r in mine], [r[key] for r in mine], marker="o", label=system)
        ax.set_xscale("log")  # N spans 1 to hundreds
        ns = sorted({r["nodes"] for r in summary})
        ax.set_xticks(ns, [str(n) for n in ns])  # the Ns measured, not powers of ten
        ax.minorticks_off()
        ax.set_xlabel("N nodes (log scale)")
        ax.set_ylabel(label)
        if title:
            ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend()
        path = stem.with_name(f"{stem.name}-{suffix}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
