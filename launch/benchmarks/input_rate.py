"""input: images/s of the imagenet input module's training pipeline against a bare tf.data loop
of read -> parse -> fused decode-and-crop -> resize over the same files, and of the pipeline with
each augmentation (RandAugment m9-n2, + random erasing 0.25, + mixup 0.2 / CutMix 1.0), and of
the plain pipeline as one worker running 2 and 4 micro-batch slots (slot_streams_N: N streams of
batch / N, joined), alternating, medians, each with its ratio to the plain pipeline (one
stream). Reads `dataset_dir`, or writes `input_images` procedurally drawn JPEGs of 320 x 320
first."""
import statistics
import sys
import tempfile
import time


def run(*, dataset_dir, input_images, image_size, batch_size, input_batches, repeats):
    import tensorflow as tf

    import input as inputs
    from input import augment, demo_data, mixing, preprocessing, records

    data_dir = dataset_dir
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="input-bench-")
        per_class = input_images // len(demo_data.CLASS_NAMES)
        demo_data.write_demo_data(data_dir, per_class, 2, size=320, train_shards=8)
    size, batch = image_size, batch_size
    randaugment = augment.RandAugment(magnitude=9, num_layers=2)
    mix = mixing.Mixing(mixup_alpha=0.2, cutmix_alpha=1.0)
    variants = {  # row -> the input module's augmentation options, batch mixing
        "plain": ({}, None),
        "randaugment_m9_n2": (dict(randaugment=randaugment), None),
        "randaugment_erasing": (dict(randaugment=randaugment, random_erasing=0.25), None),
        "randaugment_erasing_mix": (dict(randaugment=randaugment, random_erasing=0.25), mix)}
    modules = {name: inputs.build("imagenet", dataset_dir=data_dir, mixing=mixes,
                                  options=inputs.InputOptions(image_size=size, **options))
               for name, (options, mixes) in variants.items()}
    files = records.list_shards(data_dir, "train")

    def bare():
        def one(serialized):
            encoded = tf.io.parse_single_example(serialized, records.FEATURES)["image/encoded"]
            shape = tf.io.extract_jpeg_shape(encoded)
            begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
                shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=(1, 2), max_attempts=100,
                use_image_if_no_bounding_boxes=True, **preprocessing.CROP_SETTINGS["vendor"])
            image = tf.image.decode_and_crop_jpeg(
                encoded, tf.stack([begin[0], begin[1], crop[0], crop[1]]), channels=3,
                dct_method=preprocessing.DCT_METHOD)
            return tf.image.resize(image, [size, size])
        return (tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE).repeat()
                .map(one, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
                .prefetch(tf.data.AUTOTUNE))

    def rate(dataset):
        iterator = iter(dataset)
        for _ in range(5):  # warm-up: thread pools, autotuning, page cache
            next(iterator)
        start = time.perf_counter()
        for _ in range(input_batches):
            next(iterator)
        return input_batches * batch / (time.perf_counter() - start)

    slot_rows = {f"slot_streams_{n}": n for n in (2, 4) if batch % n == 0}
    rates = {name: [] for name in [*variants, *slot_rows, "bare_loop"]}
    for _ in range(repeats):
        for name, module in modules.items():
            rates[name].append(rate(module.train_dataset(batch, seed=1)))
        for name, streams in slot_rows.items():
            rates[name].append(rate(modules["plain"].train_dataset(batch, seed=1,
                                                                   micro_batches=streams)))
        rates["bare_loop"].append(rate(bare()))
        print("input: " + ", ".join(f"{name} {r[-1]:.1f}" for name, r in rates.items())
              + " img/s", file=sys.stderr)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    return {"mode": "input", "image_size": size, "batch_size": batch, "repeats": repeats,
            "dataset_dir": data_dir,
            "images_per_sec": {name: round(m, 1) for name, m in medians.items()},
            "ratio_to_plain": {name: round(m / medians["plain"], 3)
                               for name, m in medians.items()},
            "plain_to_bare_loop": round(medians["plain"] / medians["bare_loop"], 3)}
