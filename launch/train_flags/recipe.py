"""The vendor recipe's command line: the same names, types and defaults."""
from absl import flags

import nets
from engine import optimizers

MODELS = tuple(nets.MODEL_NAMES) + ("densenet",)


def define(fv: flags.FlagValues):
    flags.DEFINE_string("dataset_dir", "/data/imagenet/tf_records", "Path to dataset.",
                        flag_values=fv)
    flags.DEFINE_string("model_dir", "./", "Directory for checkpoints, logs, flags.txt, "
                        "metrics.", flag_values=fv)
    flags.DEFINE_enum("dtype", "bf16", ["fp32", "bf16", "auto"], "Training precision (compute "
                      "dtype; variables, BN statistics, loss and gradients stay fp32). auto: bf16 "
                      "where the device computes it natively, fp32 elsewhere (flags.txt records "
                      "the pick); bf16 where it is emulated warns at start.", flag_values=fv)
    flags.DEFINE_float("dropout_rate", 0.0, "Dropout rate after each conv in blocks and "
                       "transitions.", flag_values=fv)
    flags.DEFINE_enum("optimizer", "sgd", list(optimizers.NAMES),
                      "sgd: momentum 0.9 Nesterov; adam/rmsprop: epsilon 1e-2 as the recipe; lars: "
                      "momentum with a layer-wise trust ratio (see --lars_eta), for global "
                      "batches of thousands.",
                      flag_values=fv)
    flags.DEFINE_integer("batch_size", 256, "Global batch size; each worker takes batch_size "
                         "/ workers.", flag_values=fv)
    flags.DEFINE_float("initial_lr", 0.1, "Initial learning rate (used as given, no "
                       "rescaling).", flag_values=fv)
    flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay (see --weight_decay_mode).",
                       flag_values=fv)
    flags.DEFINE_integer("epochs", 90, "Total number of epochs.", flag_values=fv)
    flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: training "
                         "examples // batch_size).", flag_values=fv)
    flags.DEFINE_integer("validation_steps", None, "Validation batches per worker; default: "
                         "the whole validation split exactly once; 0 disables validation.",
                         flag_values=fv)
    flags.DEFINE_enum("model", "densenet121", list(MODELS), "Model; `densenet` is a custom "
                      "one from --blocks, --growth_rate and --stem_filters.", flag_values=fv)
    flags.DEFINE_string("train_subset", "train", "Training subset folder in dataset_dir.",
                        flag_values=fv)
    flags.DEFINE_string("val_subset", "validation", "Validation subset folder in dataset_dir.",
                        flag_values=fv)
    flags.DEFINE_string("resume_from_checkpoint_path", None, "Checkpoint to resume from (used "
                        "when model_dir holds none; a run in a model_dir with checkpoints "
                        "resumes from its latest).", flag_values=fv)
    flags.DEFINE_integer("resume_from_epoch", 0, "Epoch of --resume_from_checkpoint_path, for "
                         "checkpoints that do not record it.", flag_values=fv)
    flags.DEFINE_string("evaluate_checkpoint_path", None, "Only evaluate this checkpoint on "
                        "--val_subset.", flag_values=fv)
    flags.DEFINE_integer("seed", None, "Random seed (default: drawn, and written to "
                         "flags.txt).", flag_values=fv)
    flags.DEFINE_integer("warmup_epochs", 5, "Epochs of linear learning-rate warm-up.",
                         flag_values=fv)
    flags.DEFINE_integer("save_summary_steps", None, "Steps between TensorBoard summaries; "
                         "None: none (evaluation summaries are always written).", flag_values=fv)
    flags.DEFINE_boolean("run_on_hpu", False, "Run on Gaudi: load the Habana module.",
                         flag_values=fv)
    flags.DEFINE_boolean("use_hpu_strategy", False, "Data-parallel over several HPUs: here "
                         "that is Horovod over HCCL (launch with mpirun or horovodrun), "
                         "replacing the recipe's HPUStrategy.", flag_values=fv)
    flags.DEFINE_integer("dataset_num_parallel_calls", -1, "Threads decoding images; -1: "
                         "AUTOTUNE.", flag_values=fv)
