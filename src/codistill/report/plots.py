"""The report's plots (matplotlib, PNG): pass@1 with Wilson CIs, loss curves, the α/β curriculum,
teacher context leakage and question-completion perplexity.

matplotlib is imported inside the functions: importing this module is cheap, and without
matplotlib :func:`make_plots` skips every plot with a note.
"""

from __future__ import annotations

import math
from pathlib import Path

from codistill.report.load import Arm, RunInfo

__all__ = ["make_plots"]


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    return fig


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _plot_pass(arms: list[str], benches: list[str], table1: dict, path: Path) -> Path | None:
    have = [(b, a) for b in benches for a in arms if (table1.get(a) or {}).get(b)]
    if not have:
        return None
    n_arms = len(arms)
    group = min(0.8, 0.22 * max(n_arms, 1))
    width = group / max(n_arms, 1)
    fig = _figure(max(6.5, 1.0 + len(benches) * (0.55 * n_arms + 0.6)), 4.4)
    ax = fig.add_subplot()
    top = 0.0
    for i, (arm, color) in enumerate(zip(arms, _colors(n_arms))):
        xs, ys, lo, hi = [], [], [], []
        for j, b in enumerate(benches):
            cell = (table1.get(arm) or {}).get(b)
            if not cell:
                continue
            p = 100 * cell["pass@1"]
            ci = cell.get("ci")
            xs.append(j - group / 2 + width * (i + 0.5))
            ys.append(p)
            lo.append(p - 100 * ci[0] if ci else 0.0)
            hi.append(100 * ci[1] - p if ci else 0.0)
            top = max(top, p + (hi[-1] if ci else 0))
        ax.bar(xs, ys, width * 0.92, yerr=[lo, hi], capsize=3, color=color, label=arm,
               error_kw={"elinewidth": 1, "ecolor": "#333"})
        if n_arms * len(benches) <= 24:
            for x, y, h in zip(xs, ys, hi):
                ax.text(x, y + h + 1, f"{y:.1f}", ha="center", va="bottom", fontsize=7.5)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_xlim(-0.6, len(benches) - 0.4)
    ax.set_ylabel("pass@1 (%)")
    if top < 88:
        ax.set_ylim(0, min(100.0, top + 12))
    else:  # room for the value labels above 100 %, no tick past it
        ax.set_ylim(0, 112)
        ax.set_yticks(range(0, 101, 20))
    ax.set_title("pass@1 per benchmark (error bars: Wilson 95% CI)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="arm")
    return _save(fig, path)


def _smooth(ys: list[float], w: int) -> list[float]:
    out, acc = [], 0.0
    q: list[float] = []
    for y in ys:
        q.append(y)
        acc += y
        if len(q) > w:
            acc -= q.pop(0)
        out.append(acc / len(q))
    return out


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v) and isinstance(r.get("step"), (int, float)):
            xs.append(r["step"])
            ys.append(float(v))
    return xs, ys


def _plot_loss(arms: list[Arm], path: Path) -> Path | None:
    keys = [k for k in ("token_loss", "structure_loss")
            if any(_series(a.train_rows, k)[0] or _series(a.val_rows, k)[0] for a in arms)]
    if not keys:
        return None
    fig = _figure(5.2 * len(keys) + 1.6, 4.0)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colors = dict(zip([a.name for a in arms], _colors(len(arms))))
    styles = dict(zip([a.name for a in arms], ["-", "-.", ":", (0, (5, 1))] * len(arms)))
    markers = dict(zip([a.name for a in arms], ["s", "o", "^", "D", "v", "P"] * len(arms)))
    titles = {"token_loss": "token loss (cross-entropy)", "structure_loss": "structure loss L_s"}
    for ax, key in zip(axes, keys):
        for a in arms:
            xs, ys = _series(a.train_rows, key)
            c = colors[a.name]
            ls = styles[a.name]
            if xs:
                if len(xs) > 100:
                    ax.plot(xs, ys, color=c, alpha=0.25, lw=0.8)
                    w = max(5, len(xs) // 40)
                    ax.plot(xs, _smooth(ys, w), color=c, lw=1.8, ls=ls, label=f"{a.name} train ({w}-step mean)")
                else:
                    ax.plot(xs, ys, color=c, lw=1.8, ls=ls, marker="o" if len(xs) < 15 else None, ms=3,
                            label=f"{a.name} train")
            vx, vy = _series(a.val_rows, key)
            if vx:
                ax.plot(vx, vy, color=c, lw=0, marker=markers[a.name], ms=6, mec="black", mew=0.6, label=f"{a.name} val")
        ax.set_title(titles[key])
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=8)
    return _save(fig, path)


def _plot_schedule(arms: list[Arm], path: Path) -> Path | None:
    if not any(_series(a.train_rows, "alpha")[0] or _series(a.train_rows, "beta")[0] for a in arms):
        return None
    fig = _figure(12.0, 3.6)
    axes = fig.subplots(1, 2)
    colors = _colors(len(arms))
    styles = ["-", "--", ":", "-."]
    for ax, key, sym in zip(axes, ("alpha", "beta"), ("α (token loss weight)", "β (structure loss weight)")):
        for i, a in enumerate(arms):
            xs, ys = _series(a.train_rows, key)
            if xs:
                ax.plot(xs, ys, color=colors[i], ls=styles[i % len(styles)], lw=2.0 - 0.25 * (i % 3), label=a.name)
        ax.set_title(sym)
        ax.set_xlabel("optimizer step")
        if all(0 <= y <= 1 for a in arms for y in _series(a.train_rows, key)[1]):
            ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    h, l = axes[0].get_legend_handles_labels()
    if not h:
        h, l = axes[1].get_legend_handles_labels()
    fig.legend(h, l, loc="outside right upper", frameon=False, fontsize=8)
    return _save(fig, path)


def _plot_leakage(runs: list[RunInfo], path: Path) -> tuple[Path | None, str | None]:
    raw = [(r, r.leakage_valid) for r in runs if r.leakage_valid]
    hists = [(r, ((r.teach_manifest or {}).get("leakage") or {}).get("final") or {}) for r in runs]
    hists = [(r, h) for r, h in hists if h.get("histogram") and not r.leakage_valid]
    if not raw and not hists:
        return None, None
    fig = _figure(7.5, 3.8)
    ax = fig.add_subplot()
    colors = _colors(len(runs))
    cidx = {id(r): i for i, r in enumerate(runs)}
    thresholds = set()
    bins = [i / 20 for i in range(21)]
    for r, xs in raw:
        one = len(raw) == 1
        ax.hist(xs, bins=bins, histtype="stepfilled" if one else "step", lw=1.6, alpha=0.75 if one else 1,
                color=colors[cidx[id(r)]], label=f"{r.name}: {len(xs)} valid contexts")
        thr = (((r.teach_manifest or {}).get("config") or {}).get("leakage_threshold")
               or (((r.teach_manifest or {}).get("leakage") or {}).get("final") or {}).get("threshold"))
        if thr is not None:
            thresholds.add(float(thr))
    for r, h in hists:
        lefts, counts = [], []
        for k, v in h["histogram"].items():
            try:
                lefts.append(float(str(k).split("-")[0]))
                counts.append(v)
            except ValueError:
                continue
        wid = (lefts[1] - lefts[0]) if len(lefts) > 1 else 0.1
        ax.bar(lefts, counts, width=wid, align="edge", alpha=0.6, color=colors[cidx[id(r)]], edgecolor="white",
               label=f"{r.name}: manifest histogram ({h.get('count', sum(counts))} contexts)")
        if h.get("threshold") is not None:
            thresholds.add(float(h["threshold"]))
    for t in sorted(thresholds):
        ax.axvline(t, color="#c0392b", ls="--", lw=1.2, label=f"rejection threshold {t:g}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("leakage score (share of reference-code n-grams in the context)")
    ax.set_ylabel("contexts")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("teacher context leakage (valid contexts)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    source = "contexts.jsonl (valid rows)" if raw else "teach_manifest.json histogram"
    return _save(fig, path), source


def _plot_ppl(arms: list[Arm], path: Path) -> Path | None:
    have = [a for a in arms if a.ppl]
    if not have:
        return None
    lo = min(min(a.ppl) for a in have)
    hi = max(max(a.ppl) for a in have)
    logx = lo > 0 and hi / lo > 20
    n_bins = max(8, min(40, int(2 * math.sqrt(max(len(a.ppl) for a in have)))))
    if logx:
        bins = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / n_bins) for i in range(n_bins + 1)]
    elif hi > lo:
        bins = [lo + (hi - lo) * i / n_bins for i in range(n_bins + 1)]
    else:
        bins = [lo - 0.5, lo + 0.5]
    fig = _figure(7.5, 3.8)
    ax = fig.add_subplot()
    colors = dict(zip([a.name for a in arms], _colors(len(arms))))
    styles = ["-", "--", "-.", ":"]
    for i, a in enumerate(have):
        med = sorted(a.ppl)[len(a.ppl) // 2]  # the convention of results.json (codistill eval)
        ax.hist(a.ppl, bins=bins, histtype="step", lw=2.0, ls=styles[i % len(styles)], color=colors[a.name],
                label=f"{a.name} (n={len(a.ppl)}, median {med:.2f})")
        ax.axvline(med, color=colors[a.name], ls=":", lw=1.2)
    if logx:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("question-completion perplexity" + (" (log scale)" if logx else ""))
    ax.set_ylabel("MBPP questions")
    ax.set_title("question-completion perplexity (dotted: medians)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path)


def make_plots(arms: list[Arm], runs: list[RunInfo], benches: list[str], table1: dict, plot_dir: Path,
                baseline_first: list[str], sweep: dict | None = None) -> tuple[dict, dict]:
    """Returns ({key: {"path", "title", ...}}, {key: reason skipped})."""
    made: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    titles = {"pass_at_1": "pass@1 with Wilson 95% CIs", "loss": "training loss curves",
              "alpha_beta": "α/β curriculum", "leakage": "teacher context leakage",
              "perplexity": "question-completion perplexity"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        for k in titles:
            skipped[k] = "matplotlib is not installed (pip install 'codistill[metrics]')"
        return made, skipped
    trained = [a for a in arms if a.train_rows or a.val_rows]
    p = _plot_pass(baseline_first, benches, table1, plot_dir / "pass_at_1.png")
    if p:
        made["pass_at_1"] = {"path": p}
    else:
        skipped["pass_at_1"] = "no pass@1 results"
    p = _plot_loss(trained, plot_dir / "loss.png") if trained else None
    if p:
        made["loss"] = {"path": p}
    else:
        skipped["loss"] = "no training log (train/train_log.jsonl) with losses"
    p = _plot_schedule(trained, plot_dir / "alpha_beta.png") if trained else None
    if p:
        made["alpha_beta"] = {"path": p}
    else:
        skipped["alpha_beta"] = "no training log with α/β"
    p, src = _plot_leakage(runs, plot_dir / "leakage.png")
    if p:
        made["leakage"] = {"path": p, "source": src}
    else:
        skipped["leakage"] = "no teacher contexts (teach/contexts.jsonl) or teach_manifest.json leakage histogram"
    p = _plot_ppl(arms, plot_dir / "perplexity.png")
    if p:
        made["perplexity"] = {"path": p}
    else:
        skipped["perplexity"] = "no question-completion perplexities (mbpp-questions rows in tasks.jsonl)"
    if sweep:  # only runs that sampled more than once per task have one (else not even "skipped")
        from codistill.report.pipeline import plot_sweep

        titles["sweep"] = "solve@k (plans × codes) and pass@k (codes) against programs drawn per task"
        p = plot_sweep(sweep, plot_dir / "sweep.png")
        if p:
            made["sweep"] = {"path": p}
    for k, v in made.items():
        v["title"] = titles[k]
    return made, skipped
