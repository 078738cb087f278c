"""Flags of the model beyond the recipe's --model: batch norm, initialization, custom DenseNets,
memory, layout and initial weights."""
from absl import flags


def define(fv: flags.FlagValues):
    flags.DEFINE_float("bn_epsilon", 1.1e-5, "Batch-norm epsilon (the recipe's 1.1e-5; Keras "
                       "1.001e-5).", flag_values=fv)
    flags.DEFINE_float("bn_momentum", 0.99, "Batch-norm moving-average momentum (the recipe's "
                       "0.99, Keras' default); the averages need about 3 / (1 - momentum) "
                       "updates to forget their initial values.", flag_values=fv)
    flags.DEFINE_integer("precise_bn_batches", 0, "Before each evaluation (and the checkpoint "
                         "after an epoch), set the BN statistics to the population statistics "
                         "of this many training batches per worker (about 8192 images in "
                         "all); 0: off, the recipe's moving averages.", flag_values=fv)
    flags.DEFINE_enum("kernel_initializer", "glorot_uniform", ["glorot_uniform", "he_normal"],
                      "Conv and dense kernel initializer (the recipe's Glorot, or the paper's "
                      "He).", flag_values=fv)
    flags.DEFINE_list("blocks", None, "--model=densenet: dense layers per block, e.g. "
                      "6,12,24,16.", flag_values=fv)
    flags.DEFINE_integer("growth_rate", 32, "--model=densenet: channels each dense layer adds.",
                         flag_values=fv)
    flags.DEFINE_integer("stem_filters", 64, "--model=densenet: channels of the stem "
                         "convolution.", flag_values=fv)
    flags.DEFINE_boolean("recompute", False, "Memory-efficient dense blocks: recompute each "
                         "dense layer's concat-BN-ReLU-conv in the backward pass, for much less "
                         "peak memory and a little more time (python -m launch.benchmark "
                         "--mode=memory measures both).", flag_values=fv)
    flags.DEFINE_enum("data_format", "NHWC", ["NHWC", "NCHW"], "Layout inside the net (NCHW "
                      "for GPUs).", flag_values=fv)
    flags.DEFINE_string("init_checkpoint", None, "Initial weights: a checkpoint of ours or a "
                        "Keras .h5 file (fine-tuning).", flag_values=fv)
    flags.DEFINE_boolean("init_skip_head", False, "With --init_checkpoint: leave the classifier "
                         "out.", flag_values=fv)
