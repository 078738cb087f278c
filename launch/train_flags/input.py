"""Flags of the input: which module, image size, preprocessing, order and bad records."""
from absl import flags

import input as inputs
from input import preprocessing


def define(fv: flags.FlagValues):
    flags.DEFINE_enum("input", "imagenet", list(inputs.MODULES), "Input module.", flag_values=fv)
    flags.DEFINE_integer("image_size", 224, "Training and evaluation image size.",
                         flag_values=fv)
    flags.DEFINE_integer("num_classes", None, "Classes (default: from the input).",
                         flag_values=fv)
    flags.DEFINE_enum("preprocessing", "vendor", list(preprocessing.STYLES),
                      "Preprocessing style: vendor (the recipe's crop, flip, [-1, 1]) or "
                      "inception (area 0.08-1 crop, ImageNet mean/std).", flag_values=fv)
    flags.DEFINE_boolean("deterministic", False, "Reproducible input order and deterministic "
                         "ops (with --seed, a rerun gives the same metrics).", flag_values=fv)
    flags.DEFINE_boolean("skip_corrupt", False, "Leave undecodable or mislabelled examples out "
                         "(found by one scan, counted in the log) instead of stopping.",
                         flag_values=fv)
    flags.DEFINE_integer("shuffle_buffer", 8192, "Examples in the training shuffle buffer.",
                         flag_values=fv)
