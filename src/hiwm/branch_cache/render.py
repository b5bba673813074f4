"""The tree of a session as text and as an image: one lane per branch, step along x.

Nodes are coloured by the source of the action that led to them (policy, human, scripted); a
branch's line by its outcome label (success green, failure red, else grey). Red rings mark failure
states: nodes labelled failure-prone, and fork points on a branch labelled failure-prone. Forks are
drawn from the base node to the first node of the branch.
"""

from __future__ import annotations

from pathlib import Path

from hiwm.branch_cache.store import SOURCE_HUMAN, SOURCE_POLICY, SOURCE_SCRIPTED, Branch, BranchStore, branch_verdict

SOURCE_COLORS = {SOURCE_POLICY: "#1f77b4", SOURCE_HUMAN: "#ff7f0e", SOURCE_SCRIPTED: "#2ca02c"}
FIRST_COLOR = "#7f7f7f"
OUTCOME_COLORS = {"success": "#2ca02c", "failure": "#d62728"}
OTHER_COLOR = "#b0b0b0"


def outcome(labels: list[str]) -> str | None:
    """The branch's final verdict (an operator label over the detector's), as a colour key."""
    success, _ = branch_verdict(labels)
    return None if success is None else ("success" if success else "failure")


def lanes(branches: list[Branch]) -> list[Branch]:
    """Branches in depth-first order from the root, children after their parent (so forks sit nearby)."""
    children: dict[str | None, list[Branch]] = {}
    for b in branches:
        children.setdefault(b.parent_branch, []).append(b)
    out: list[Branch] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        b = stack.pop()
        out.append(b)
        stack.extend(reversed(children.get(b.id, [])))
    return out


def text_tree(store: BranchStore, session_id: str) -> str:
    """An indented listing: each branch under its parent, with its fork point, length and labels."""
    ordered = lanes(store.branches(session_id))
    depth: dict[str, int] = {}
    lines = [f"session {session_id}"]
    for b in ordered:
        depth[b.id] = 0 if b.parent_branch is None else depth[b.parent_branch] + 1
        head = store.get(b.head_node) if b.head_node else None
        where = "root" if b.base_node is None else f"fork of {b.parent_branch} at {b.base_node}"
        steps = f"to step {head.step}" if head else "empty"
        labels = f" [{', '.join(b.labels)}]" if b.labels else ""
        lines.append(f"{'  ' * (depth[b.id] + 1)}{b.id}: {where}, {b.length} nodes, {steps}{labels}")
    return "\n".join(lines)


def render_tree(store: BranchStore, session_id: str, path: str | Path, max_nodes: int = 20000) -> Path:
    """Draw a session's tree to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ordered = lanes(store.branches(session_id))
    lane = {b.id: i for i, b in enumerate(ordered)}
    nodes = store.all_nodes(session_id)[:max_nodes]
    by_id = {n.id: n for n in nodes}
    max_step = max((n.step for n in nodes), default=1)
    fig, ax = plt.subplots(figsize=(min(18, max(9, 5 + 0.12 * max_step)), 2.4 + 0.5 * len(ordered)), dpi=110)
    labels_of = {b.id: b.labels for b in ordered}
    dot = max(6.0, min(28.0, 2400.0 / max(max_step, 1)))  # dense rollouts: smaller dots, still distinct
    rings = {n.id for n in nodes if "failure-prone" in n.labels}
    for b in ordered:
        y = lane[b.id]
        color = OUTCOME_COLORS.get(outcome(b.labels) or "", OTHER_COLOR)
        own = [n for n in nodes if n.branch == b.id]
        xs, ys = [n.step for n in own], [y] * len(own)
        base = by_id.get(b.base_node) if b.base_node else None
        if base is not None:  # the fork edge, from the base node's lane
            xs, ys = [base.step, *xs], [lane[base.branch], *ys]
            if "failure-prone" in labels_of.get(base.branch, []):  # corrections forked from a failure state
                rings.add(base.id)
        ax.plot(xs, ys, color=color, lw=2.5 if dot >= 20 else 1.5, zorder=1)
        ax.scatter(
            [n.step for n in own],
            [y] * len(own),
            c=[FIRST_COLOR if n.parent is None else SOURCE_COLORS.get(n.source, FIRST_COLOR) for n in own],
            s=dot,
            zorder=2,
            edgecolors="white",
            linewidths=0.5 if dot >= 20 else 0.0,
        )
        end = max(xs) if xs else 0
        ax.annotate(
            f"{b.id}" + (f"  [{', '.join(b.labels)}]" if b.labels else ""),
            (end, y),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ring_nodes = [by_id[i] for i in rings if i in by_id]
    ax.scatter(
        [n.step for n in ring_nodes], [lane[n.branch] for n in ring_nodes], s=260, facecolors="none",
        edgecolors="#d62728", lw=2, zorder=3,
    )  # fmt: skip
    ax.set_yticks(range(len(ordered)), [b.id for b in ordered])
    ax.set_ylim(len(ordered) - 0.5, -0.5)
    ax.set_xlim(-0.5, max_step * 1.15 + 4)
    ax.set_xlabel("step")
    ax.set_title(f"session {session_id}: {len(nodes)} states, {len(ordered)} branches")
    ax.grid(axis="x", alpha=0.25)
    legend = [
        Line2D([], [], marker="o", ls="", color=SOURCE_COLORS[SOURCE_POLICY], label="policy action"),
        Line2D([], [], marker="o", ls="", color=SOURCE_COLORS[SOURCE_HUMAN], label="human action"),
        Line2D([], [], marker="o", ls="", color=SOURCE_COLORS[SOURCE_SCRIPTED], label="scripted action"),
        Line2D([], [], marker="o", ls="", color=FIRST_COLOR, label="first state"),
        Line2D([], [], color=OUTCOME_COLORS["success"], lw=2.5, label="branch: success"),
        Line2D([], [], color=OUTCOME_COLORS["failure"], lw=2.5, label="branch: failure"),
        Line2D([], [], color=OTHER_COLOR, lw=2.5, label="branch: no outcome"),
        Line2D([], [], marker="o", ls="", mfc="none", mec="#d62728", ms=12, mew=2, label="failure-prone"),
    ]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
