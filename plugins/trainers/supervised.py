"""``supervised``: cross-entropy on the training labels (BCE for multi-label), the default trainer.

One phase through the shared loop, validated on the validation split: exactly the training every job had
before trainers were plugins.
"""

from __future__ import annotations

from vidbench import hookimpl
from vidbench.specs import Fitted, TrainerSpec, TrainingSession


def fit(session: TrainingSession) -> Fitted:
    """Train the job's model on its labels, early-stopping on validation top-1 as the settings say."""
    return session.run_phase(
        "main", session.model, None, session.loader("train", train=True), val_loader=session.loader("val")
    )


@hookimpl
def vidbench_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(name="supervised", fit=fit, default=True, description="cross-entropy on the labels (the default)")
    ]
