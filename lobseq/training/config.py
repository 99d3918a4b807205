"""What one training run is: the model, its hyperparameters and the optimisation settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lobseq.errors import LobseqError

HEADS = ("classification", "regression")


CLASS_WEIGHTS = ("none", "balanced")


@dataclass
class TrainConfig:
    model: str = "lstm"
    hyper: dict = field(default_factory=dict)  # overrides of the builder's (or preset's) defaults
    preset: str | None = None
    head: str = "classification"
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5  # epochs without val-loss improvement before stopping
    class_weight: str = "none"  # none | balanced (n / (K * count_k) on training windows)
    seed: int = 0
    max_train_windows: int | None = None  # evenly spaced subsample, for fast runs
    max_val_windows: int | None = None

    def validate(self) -> None:
        if self.head not in HEADS:
            raise LobseqError(f"unknown head {self.head!r}", field="head", fix=f"use one of {', '.join(HEADS)}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise LobseqError(f"unknown class weighting {self.class_weight!r}", field="class_weight",
                              fix=f"use one of {', '.join(CLASS_WEIGHTS)}")
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LobseqError(f"{key} must be a positive integer, got {value!r}", field=key)
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise LobseqError(f"patience must be an integer >= 0, got {self.patience!r}", field="patience")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise LobseqError(f"learning_rate must be > 0, got {self.learning_rate!r}", field="learning_rate")
        for key in ("max_train_windows", "max_val_windows"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise LobseqError(f"{key} must be a positive integer, got {value!r}", field=key)

    def model_hyperparameters(self) -> dict:
        """The builder's full hyperparameters: defaults, then the preset's, then `hyper`."""
        from lobseq.models import hyperparameters

        params = hyperparameters(self.model, self.preset)
        unknown = sorted(set(self.hyper) - set(params))
        if unknown:
            raise LobseqError(f"unknown hyperparameter(s) {', '.join(unknown)} for model {self.model!r}",
                              field="param", fix=f"valid for {self.model}: {', '.join(params)}")
        params.update(self.hyper)
        return params

    def to_dict(self) -> dict:
        return asdict(self)
