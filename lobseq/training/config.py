"""What one training run is: the model, its hyperparameters and the optimisation settings."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from lobseq.config import stage_config
from lobseq.errors import LobseqError


@stage_config
class TrainConfig:
    """One training run; checked on construction (model name, preset and hyperparameter names too)."""

    model: str = Field("lstm", description="Model builder (see `lobseq models`).")
    hyper: dict[str, Any] = Field(default_factory=dict,
                                  description="Overrides of the builder's (or preset's) defaults.")
    preset: str | None = Field(None, description="Named hyperparameter preset, e.g. dixon for rnn.")
    head: Literal["classification", "regression"] = Field(
        "classification", description="Class probabilities, or the next return (regression).")
    epochs: StrictInt = Field(20, ge=1, description="Most epochs to train.")
    batch_size: StrictInt = Field(64, ge=1, description="Windows per gradient step.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    patience: StrictInt = Field(5, ge=0, description="Epochs without validation-loss improvement "
                                                     "before stopping.")
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="balanced: n / (K * count_k) on the training windows.")
    seed: StrictInt = Field(0, description="Seed for weights, shuffling and ops.")
    max_train_windows: StrictInt | None = Field(
        None, ge=1, description="Train on at most this many windows, evenly spaced (fast runs).")
    max_val_windows: StrictInt | None = Field(
        None, ge=1, description="Validate on at most this many windows, evenly spaced.")

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        from lobseq.models import MODEL_NAMES

        if name not in MODEL_NAMES:
            raise LobseqError(f"unknown model {name!r}", field="model",
                              fix=f"use one of {', '.join(MODEL_NAMES)}")
        return name

    @model_validator(mode="after")
    def _known_hyperparameters(self):
        self.model_hyperparameters()  # unknown preset or hyperparameter: fail at the door
        return self

    def model_hyperparameters(self) -> dict:
        """The builder's full hyperparameters: defaults, then the preset's, then `hyper`."""
        from lobseq.models import hyperparameters

        params = hyperparameters(self.model, self.preset)
        unknown = sorted(set(self.hyper) - set(params))
        if unknown:
            raise LobseqError(f"unknown hyperparameter(s) {', '.join(unknown)} for model {self.model!r}",
                              field="hyper", fix=f"valid for {self.model}: {', '.join(params)}")
        params.update(self.hyper)
        return params

    def to_dict(self) -> dict:
        return asdict(self)
