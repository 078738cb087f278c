"""Flags of the augmentations beyond the preprocessing style: RandAugment and random erasing
per example, mixup and CutMix per batch (input/augment.py, input/mixing.py)."""
from absl import flags


def define(fv: flags.FlagValues):
    flags.DEFINE_string("randaugment", None, "RandAugment as M,N[,S]: N ops per image at "
                        "magnitude M (0-10), Gaussian magnitude noise of std S (inf: uniform "
                        "in [0, M]), as timm's rand-mM-nN-mstdS; or a timm string such as "
                        "rand-m7-n2-mstd0.5-inc1 (inc1: every op strengthens with M). Off by "
                        "default.", flag_values=fv)
    flags.DEFINE_float("random_erasing", 0.0, "Probability of erasing one random box of each "
                       "training image with noise (timm's --reprob, pixel mode).",
                       flag_values=fv)
    flags.DEFINE_float("mixup_alpha", 0.0, "Mixup's Beta(alpha, alpha) (0: off).",
                       flag_values=fv)
    flags.DEFINE_float("cutmix_alpha", 0.0, "CutMix's Beta(alpha, alpha) (0: off). With both "
                       "alphas on, each mixed batch uses one of the two, half and half.",
                       flag_values=fv)
    flags.DEFINE_float("mix_prob", 1.0, "Share of training batches that mixup/CutMix mix.",
                       flag_values=fv)
