"""Preprocessing styles: encoded image bytes -> float image [size, size, 3].

`vendor`    the vendor recipe's: crop from sample_distorted_bounding_box (min_object_covered 0.6,
            aspect 0.75-1.33, area 0.6-1.0, 100 attempts, whole image when nothing fits) fused
            with the JPEG decode, bilinear resize ignoring aspect, random left-right flip; eval:
            shorter side to `size` keeping aspect, central crop; pixels to [-1, 1].
`inception` the standard crop (area 0.08-1.0, aspect 3/4-4/3) and eval resize of the shorter side
            to size / 0.875 then central crop; ImageNet mean/std normalization, which
            Keras-pretrained DenseNets expect.

Either style may add RandAugment and random erasing (input/augment.py) after the flip, as timm
does. Randomness is stateless, from a per-example seed pair, so that a pipeline can be replayed
exactly; the augmentations draw from seeds folded from it, so the crop and flip stay the same.
JPEGs take the fused decode-and-crop path; PNGs and other formats are decoded whole, then cropped.
Greyscale and CMYK images come out as 3-channel RGB.
"""
import tensorflow as tf

from input import augment

STYLES = ("vendor", "inception")
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
# sample_distorted_bounding_box's settings of the training crop, by style.
CROP_SETTINGS = {"vendor": dict(min_object_covered=0.6, aspect_ratio_range=(0.75, 1.33),
                      area_range=(0.6, 1.0)),
         "inception": dict(min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
                           area_range=(0.08, 1.0))}
_EVAL_CROP_FRACTION = {"vendor": 1.0, "inception": 0.875}


def _image_shape(encoded):
    """[height, width, channels] without decoding pixels (header only, for JPEG)."""
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.io.extract_jpeg_shape(encoded),
                   lambda: tf.shape(decode_whole(encoded), out_type=tf.int32))


# TF's default JPEG IDCT ("INTEGER_FAST") is up to 7 levels off libjpeg's accurate one, which
# Pillow and most tools use; the accurate one costs little next to the resize.
DCT_METHOD = "INTEGER_ACCURATE"


def decode_whole(encoded):
    """uint8 [H, W, 3] pixels of a JPEG (accurate IDCT), PNG, GIF or BMP."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method=DCT_METHOD),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False,
                                   dtype=tf.uint8))


def decode_crop(encoded, offset_y, offset_x, height, width):
    """uint8 crop of the image, decoding only the window for JPEGs."""
    def jpeg():
        return tf.image.decode_and_crop_jpeg(
            encoded, tf.stack([offset_y, offset_x, height, width]), channels=3,
            dct_method=DCT_METHOD)

    def other():
        return tf.image.crop_to_bounding_box(decode_whole(encoded), offset_y, offset_x,
                                             height, width)
    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def train_image(encoded, size, example_seed, style="vendor", *, randaugment=None,
                random_erasing=0.0):
    """A randomly cropped, resized and flipped float32 [size, size, 3] image.

    example_seed: int32/int64 [2], e.g. (run seed, example number): the same pair gives the same
    image. randaugment: an augment.RandAugment, applied to the uint8 pixels after the flip;
    random_erasing: the probability of erasing a box of the normalized image.
    """
    shape = _image_shape(encoded)
    example_seed = tf.cast(example_seed, tf.int64)
    seeds = tf.random.experimental.stateless_split(example_seed, 2)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
        max_attempts=100, use_image_if_no_bounding_boxes=True, **CROP_SETTINGS[style])
    image = decode_crop(encoded, begin[0], begin[1], crop_size[0], crop_size[1])
    image = tf.image.resize(tf.image.convert_image_dtype(image, tf.float32), [size, size],
                            method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    if randaugment is not None:
        # timm augments Pillow images: uint8 pixels, rounded from the resize.
        pixels = tf.cast(tf.round(tf.clip_by_value(image * 255.0, 0.0, 255.0)), tf.uint8)
        pixels = randaugment(pixels, tf.random.experimental.stateless_fold_in(example_seed, 1))
        image = tf.cast(pixels, tf.float32) / 255.0
    image = _normalize_float(image, style)
    if random_erasing:
        image = augment.random_erasing(
            image, tf.random.experimental.stateless_fold_in(example_seed, 2), random_erasing)
    return image


def _normalize_float(image01, style):
    if style == "vendor":
        return (image01 - 0.5) * 2.0
    return (image01 - _MEAN) / _STD


def eval_image(encoded, size, style="vendor"):
    """Shorter side resized to size / crop_fraction keeping the aspect, then the central
    size x size crop: float32 [size, size, 3]."""
    image = tf.image.convert_image_dtype(decode_whole(encoded), tf.float32)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    target = tf.cast(tf.math.ceil(size / _EVAL_CROP_FRACTION[style]), tf.float32)
    scale = target / tf.cast(tf.minimum(height, width), tf.float32)
    new_h = tf.maximum(tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32), size)
    new_w = tf.maximum(tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32), size)
    image = tf.image.resize(image, [new_h, new_w], method="bilinear")
    top, left = (new_h - size) // 2, (new_w - size) // 2
    image = image[top:top + size, left:left + size]
    image = tf.ensure_shape(image, [size, size, 3])
    return _normalize_float(image, style)
