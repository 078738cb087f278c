"""What the engine needs of a model, and nothing more: a second architecture trains by
implementing this protocol (nets.DenseNet does; tests/engine/standins.py has the smallest one).

Batch statistics are values: `forward` returns them beside the logits, the engine decides
whether and when to apply them (a refused non-finite step applies none; accumulated
micro-batches carry them through `moved_statistics` and assign once). The engine never sees a
normalization layer, only these flat tuples, aligned with `moving_statistics()`: (mean,
variance) of each normalization layer in turn. A model without any returns () and [].
"""
from typing import Protocol, Sequence, runtime_checkable

import tensorflow as tf

ROLES = ("kernels", "biases", "normalization")  # keys of Model.variables_by_role()


@runtime_checkable
class Model(Protocol):
    num_classes: int
    statistics_momentum: float  # moving = momentum * moving + (1 - momentum) * batch

    @property
    def variables(self) -> Sequence[tf.Variable]:
        """Every variable whose value the workers must share (tf.Module's)."""

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """float32 logits [N, num_classes] of inference."""

    def forward(self, images: tf.Tensor, *, training: bool, dropout: bool = True,
                dropout_key=None) -> tuple[tf.Tensor, tuple]:
        """(logits, batch statistics): the statistics only in training, else (); nothing
        assigned. dropout=False: a training-mode pass without dropout. dropout_key: int64 [2],
        the key of every random draw of the pass (the train step's, from seed, step and
        slot), so that a micro-batch draws the same whichever worker runs it."""

    def moved_statistics(self, batch_statistics: tuple, moving: Sequence = None) -> tuple:
        """The moving statistics one update on from `moving` (default: their current values)."""

    def moving_statistics(self) -> list[tf.Variable]:
        """Non-trainable variables, aligned with forward's statistics."""

    def trainable_variables_in_order(self) -> list[tf.Variable]:
        """What the optimizer updates, in a fixed order."""

    def variables_by_role(self) -> dict[str, list[tf.Variable]]:
        """{role: variables} for each of ROLES: what weight decay covers."""

    def checkpoint_parts(self, *, head: bool = True) -> dict:
        """{name: trackable} of the weights and statistics (no classifier unless `head`)."""


def assign(variables: Sequence[tf.Variable], values: Sequence) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def statistic_pairs(flat: Sequence) -> list[tuple]:
    """(mean, variance) pairs from a flat sequence of statistics."""
    return list(zip(flat[0::2], flat[1::2]))
