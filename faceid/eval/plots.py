"""The ROC curve and the similarity histograms of a verification run, as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(scores: np.ndarray, same: np.ndarray, folder: Path, *, title: str) -> list[Path]:
    """ROC curve (log FAR) and same/different similarity histograms as PNG files in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(same, scores)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.semilogx(np.maximum(fpr, 1e-5), tpr)
    ax.set(
        xlabel="false accept rate", ylabel="true accept rate", title=f"ROC: {title}", xlim=(1e-4, 1), ylim=(0.8, 1.001)
    )
    ax.grid(True, which="both", alpha=0.3)
    roc = folder / "roc.png"
    fig.savefig(roc, dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    bins = np.linspace(-0.5, 1.0, 76).tolist()
    ax.hist(scores[same], bins=bins, alpha=0.6, label="same person")
    ax.hist(scores[~same], bins=bins, alpha=0.6, label="different people")
    ax.set(xlabel="cosine similarity", ylabel="pairs", title=f"Similarities: {title}")
    ax.legend()
    hist = folder / "similarities.png"
    fig.savefig(hist, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [roc, hist]
