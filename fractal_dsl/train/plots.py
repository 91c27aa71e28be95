"""``curves.png``: training loss and test accuracy per column, one point per epoch."""

from __future__ import annotations

from pathlib import Path


def curves(history: list[dict], path: str | Path, title: str) -> None:
    """Draw the metrics of :func:`~fractal_dsl.train.loop.train` (one dict per epoch) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.plot(epochs, [h["train_loss"] for h in history], marker=".", color="black")
    left.set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    right.plot(epochs, [100 * h["test_acc"] for h in history], marker=".", color="black", lw=2, label="whole network")
    for k in range(len(history[0]["column_acc"]) if history else 0):
        right.plot(epochs, [100 * h["column_acc"][k] for h in history], marker=".", label=f"column {k + 1}")
    right.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    right.legend(loc="lower right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
