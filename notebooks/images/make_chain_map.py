"""Draw the map of the IRSA chain shown in notebook 00 (``irsa-chain.png``).

Run once after changing the picture: ``.venv/bin/python notebooks/images/make_chain_map.py``.
The PNG is stored in the repository so the notebook shows it without running code.
Each box carries its step number, so the notebooks can refer to "step 4" in words;
notebook 00 gives the same map as a numbered list (the picture's text alternative).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).with_name("irsa-chain.png")

# (step, title, detail, x, y): x and y are box centres in axes units (0-100).
K8S = "#4c78a8"
AWS = "#f58518"
BOXES = [
    (1, "pod spec", "serviceAccountName:\ns3-readonly-sa", 10, 74, K8S),
    (2, "API server", "admission:\ncalls the webhook", 33, 74, K8S),
    (3, "webhook", "pod identity webhook:\nenv vars + token volume", 56, 74, K8S),
    (4, "kubelet", "TokenRequest, writes\nthe token file, renews", 79, 74, K8S),
    (5, "AWS SDK in the pod", "reads AWS_ROLE_ARN +\nAWS_WEB_IDENTITY_TOKEN_FILE", 89, 46, K8S),
    (6, "STS", "AssumeRoleWith-\nWebIdentity", 79, 18, AWS),
    (7, "OIDC issuer", "discovery document\n+ JWKS: signature", 56, 18, AWS),
    (8, "IAM role", "trust policy:\n<issuer>:sub and :aud", 33, 18, AWS),
    (9, "S3", "temporary credentials;\npermission policy", 10, 18, AWS),
]
W, H = 16.0, 16.0
GAP = 1.0  # between a box's edge (with its rounded padding) and an arrow's tip


def _edge(step: int, side: str, offset: float = 0.0) -> tuple[float, float]:
    """A point just outside the box of ``step``: side is left, right, top or bottom."""
    _s, _t, _d, x, y, _c = BOXES[step - 1]
    if side == "left":
        return x - W / 2 - GAP, y + offset
    if side == "right":
        return x + W / 2 + GAP, y + offset
    if side == "top":
        return x + offset, y + H / 2 + GAP
    return x + offset, y - H / 2 - GAP


# (from, to, curvature, label, label position)
ARROWS = [
    (_edge(1, "right"), _edge(2, "left"), 0.0, "", None),
    (_edge(2, "right", 3), _edge(3, "left", 3), 0.0, "AdmissionReview →\n← JSONPatch", (44.5, 84)),
    (_edge(3, "left", -3), _edge(2, "right", -3), 0.0, "", None),
    (
        _edge(4, "bottom", -4),
        _edge(2, "bottom", 4),
        -0.2,
        "TokenRequest (aud sts.amazonaws.com, 24 h)",
        (56, 53),
    ),
    (_edge(4, "bottom", 4), _edge(5, "top", -4), 0.0, "", None),
    (_edge(5, "bottom", -4), _edge(6, "top", 4), 0.0, "", None),
    (_edge(6, "left"), _edge(7, "right"), 0.0, "", None),
    (_edge(7, "left"), _edge(8, "right"), 0.0, "", None),
    (_edge(8, "left"), _edge(9, "right"), 0.0, "", None),
]


def draw() -> Figure:
    fig = Figure(figsize=(12, 5.2), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.axis("off")
    ax.text(2, 95, "Kubernetes side (the cluster)", fontsize=11, color=K8S, weight="bold")
    ax.text(2, 3, "AWS side (the account)", fontsize=11, color=AWS, weight="bold")
    for step, title, detail, x, y, colour in BOXES:
        ax.add_patch(
            FancyBboxPatch(
                (x - W / 2, y - H / 2),
                W,
                H,
                boxstyle="round,pad=0.6",
                facecolor="white",
                edgecolor=colour,
                linewidth=2,
            )
        )
        ax.text(
            x, y + 4.5, f"{step}. {title}", ha="center", va="center", fontsize=10, weight="bold"
        )
        ax.text(x, y - 3, detail, ha="center", va="center", fontsize=8)
    for start, stop, bend, label, where in ARROWS:
        ax.add_patch(
            FancyArrowPatch(
                start,
                stop,
                connectionstyle=f"arc3,rad={bend}",
                arrowstyle="-|>",
                mutation_scale=14,
                shrinkA=0,
                shrinkB=0,
                color="#333333",
                linewidth=1.4,
            )
        )
        if label and where is not None:
            ax.text(*where, label, ha="center", va="bottom", fontsize=8, style="italic")
    return fig


if __name__ == "__main__":
    draw().savefig(OUT, format="png", dpi=100, metadata={"Software": None})
    print(f"wrote {OUT}")
