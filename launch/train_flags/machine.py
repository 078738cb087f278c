"""Flags of the machine's share of each worker: thread pools (launch.hardware sizes them)."""
from absl import flags


def define(fv: flags.FlagValues):
    flags.DEFINE_integer("intra_op_threads", None, "Threads of TensorFlow's intra-op pool "
                         "(one op's parallel work). Default: TF_NUM_INTRAOP_THREADS if set, "
                         "else the host's cores / workers on this host when a launcher started "
                         "several, else TensorFlow's own sizing.", flag_values=fv)
    flags.DEFINE_integer("inter_op_threads", None, "Threads of TensorFlow's inter-op pool "
                         "(independent ops at once). Default as --intra_op_threads, with "
                         "TF_NUM_INTEROP_THREADS.", flag_values=fv)
    flags.DEFINE_integer("dataset_private_threads", None, "Threads of the input pipeline's own "
                         "tf.data pool. Default: the host's cores / workers on this host when "
                         "a launcher started several, else tf.data's process-wide pool.",
                         flag_values=fv)
