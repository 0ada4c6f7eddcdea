"""Batch norm settings, passed as one value through every layer."""

import dataclasses
from typing import Any, Mapping

import keras


@dataclasses.dataclass(frozen=True)
class BatchNormOptions:
    """How every batch norm in a model is built (from SolverOptions).

    Attributes:
      momentum: moving-average momentum (Keras convention, 0.99).
      epsilon: added to the variance.
      synchronized: average statistics over all replicas in training.
    """
    momentum: float = 0.99
    epsilon: float = 1e-3
    synchronized: bool = False

    @classmethod
    def coerce(cls, value: 'BatchNormOptions | Mapping[str, Any] | None'
               ) -> 'BatchNormOptions':
        """Accepts an instance, a dict (from get_config) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**value)

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def make(self, name: str = 'batch_norm',
             gamma_initializer: str = 'ones') -> keras.layers.BatchNormalization:
        return keras.layers.BatchNormalization(
            axis=-1, momentum=self.momentum, epsilon=self.epsilon,
            synchronized=self.synchronized,
            gamma_initializer=gamma_initializer, name=name)
