"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on batches, as timm's `Mixup` in
batch mode: each batch is mixed, with probability `prob`, with itself in reverse order; with
both alphas on, CutMix is chosen for half the batches. lambda ~ Beta(alpha, alpha); CutMix's box
is cut to the image and lambda corrected to the area it really covers. The labels become soft
targets [B, num_classes] (lambda for the example's own class, 1 - lambda for its partner's);
label smoothing, linear in the targets, is the loss's to apply.

The draw of a batch is stateless from (seed, batch number, worker), so a resumed run, which
starts its stream at the batch it stopped at, mixes exactly as the uninterrupted one.
"""
import dataclasses

import tensorflow as tf

SWITCH_PROB = 0.5  # timm's: the share of CutMix batches when both alphas are on


@dataclasses.dataclass(frozen=True)
class Mixing:
    """mixup_alpha, cutmix_alpha: the Beta parameters (0: off); prob: the share of batches
    mixed at all."""
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0

    def __post_init__(self):
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError("mixup and CutMix alphas must not be negative")
        if not 0 <= self.prob <= 1:
            raise ValueError(f"the mixing probability must be in [0, 1], not {self.prob}")

    @property
    def enabled(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0

    def draw(self, seed):
        """(lambda, use_cutmix) of one batch; lambda is 1 when the batch is not mixed."""
        seeds = tf.random.experimental.stateless_split(seed, 4)
        mixed = tf.random.stateless_uniform([], seeds[0]) < self.prob
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = tf.random.stateless_uniform([], seeds[1]) < SWITCH_PROB
        else:
            use_cutmix = tf.constant(self.cutmix_alpha > 0)
        alpha = tf.where(use_cutmix, float(self.cutmix_alpha), float(self.mixup_alpha))
        lam = beta(seeds[2], alpha)
        return tf.where(mixed, lam, 1.0), use_cutmix & mixed

    def __call__(self, images, labels, *, num_classes: int, seed):
        """(images [B, H, W, C], int labels [B]) -> (mixed images, soft targets [B, classes]
        float32, summing to 1); seed: int64 [2], one per batch and worker."""
        seeds = tf.random.experimental.stateless_split(seed, 2)
        lam, use_cutmix = self.draw(seeds[0])
        partners = tf.reverse(images, axis=[0])

        def cutmix():
            box, lam_box = cutmix_box(tf.shape(images)[1], tf.shape(images)[2], lam, seeds[1])
            mixed = tf.where(box[tf.newaxis, :, :, tf.newaxis], partners, images)
            return mixed, lam_box

        def mixup():
            blend = tf.cast(lam, images.dtype)
            return images * blend + partners * (1 - blend), lam

        images, lam = tf.cond(use_cutmix, cutmix, mixup)
        own = tf.one_hot(labels, num_classes)
        return images, own * lam + tf.reverse(own, axis=[0]) * (1.0 - lam)


def beta(seed, alpha):
    """One Beta(alpha, alpha) draw, from two stateless Gamma(alpha) draws."""
    gammas = tf.random.stateless_gamma([2], seed, alpha=alpha)
    total = gammas[0] + gammas[1]
    # Tiny alphas can underflow both gammas; timm's numpy Beta would return 0 or 1 there.
    return tf.where(total > 0, gammas[0] / tf.maximum(total, 1e-30), 1.0)


def cutmix_box(height, width, lam, seed):
    """timm's rand_bbox: a box of side sqrt(1 - lam) x the image's, centred uniformly, cut to
    the image. Returns (bool mask [H, W], lambda corrected to 1 - box area / image area)."""
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
    cut_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    cy = tf.random.stateless_uniform([], seeds[0], 0, height, tf.int32)
    cx = tf.random.stateless_uniform([], seeds[1], 0, width, tf.int32)
    top, bottom = tf.clip_by_value(cy - cut_h // 2, 0, height), tf.clip_by_value(
        cy + cut_h // 2, 0, height)
    left, right = tf.clip_by_value(cx - cut_w // 2, 0, width), tf.clip_by_value(
        cx + cut_w // 2, 0, width)
    rows = tf.range(height)[:, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, :]
    box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    area = tf.cast((bottom - top) * (right - left), tf.float32)
    return box, 1.0 - area / tf.cast(height * width, tf.float32)


def mix_batches(batches: tf.data.Dataset, mixing: Mixing, *, num_classes: int, seed: int,
                slot: int, first_batch: int = 0) -> tf.data.Dataset:
    """(images, labels) batches -> (mixed images, soft targets), batch k of micro-batch slot
    `slot`'s stream (counted from `first_batch`, the batches a resumed run already took) keyed
    by (seed, k, slot), whichever worker runs the slot."""
    def mix(number, batch):
        images, labels = batch
        key = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(seed, tf.int64), number]), slot)
        return mixing(images, labels, num_classes=num_classes, seed=key)
    return batches.enumerate(start=first_batch).map(mix, num_parallel_calls=tf.data.AUTOTUNE)
