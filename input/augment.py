"""RandAugment and random erasing: per-example TF ops, stateless, for the parallel map.

RandAugment (Cubuk et al. 2019) as timm's `rand-m{M}-n{N}-mstd{S}[-inc1]`: N ops per image, each
drawn uniformly from `OPS` and applied with probability 0.5, at magnitude M (0-10) plus Gaussian
noise of std S (S = inf: uniform in [0, M]), clipped to [0, 10]. Rotate, shear and translate go
either way (a random sign). timm has two level mappings, and so do we:
  default   timm's `_RAND_TRANSFORMS`: solarize's threshold and posterize's kept bits rise with M
            (so they weaken), the enhancements' factor is 0.1 + 1.8 M / 10 (weaker below 5,
            stronger above);
  inc1      timm's `_RAND_INCREASING_TRANSFORMS`, which its published RandAugment recipes use:
            every op strengthens with M, the enhancements by 1 +- 0.9 M / 10.
The ops follow Pillow (ImageOps/ImageEnhance/Image.transform, which timm calls) on uint8
pixels, down to its rounding, so that RandAugment means here what it means there;
tests/input/test_augment.py compares them op by op.

Random erasing (Zhong et al. 2017) as timm's `--reprob P --remode pixel`: with probability P, a
box of 2-33% of the image with aspect 0.3-3.3 is filled with per-pixel normal noise, on the
normalized image.

All randomness comes from the example's seed pair, so the same (seed, example) gives the same
pixels on every run, worker count and TF version.
"""
import dataclasses
import math
import re

import tensorflow as tf

OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize",
       "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x",
       "translate_y")
ENHANCEMENTS = ("color", "contrast", "brightness", "sharpness")
MAX_LEVEL = 10.0
# timm fills the corners that geometric ops uncover with the ImageNet mean, in grey levels.
FILL = (124, 116, 104)


def _as_float(image):
    return tf.cast(image, tf.float32)


def _as_uint8(values):
    """Pillow's conversion of a computed value: truncation, clipped to 0-255."""
    return tf.cast(tf.clip_by_value(tf.floor(values), 0.0, 255.0), tf.uint8)


def _blend(degenerate, image, factor):
    """Pillow's Image.blend(degenerate, image, factor), which ImageEnhance uses."""
    degenerate, image = _as_float(degenerate), _as_float(image)
    return _as_uint8(degenerate + factor * (image - degenerate))


def _grey(image):
    """Pillow's RGB -> L: (19595 R + 38470 G + 7471 B + 2^15) >> 16, [H, W, 1] int32."""
    rgb = tf.cast(image, tf.int32)
    weighted = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
    return tf.bitwise.right_shift(weighted, 16)[..., tf.newaxis]


def autocontrast(image):
    """Each channel stretched to 0-255 (ImageOps.autocontrast, cutoff 0)."""
    values = tf.cast(image, tf.float64)  # Python floats in Pillow: float32 misses exact ends
    low = tf.reduce_min(values, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(values, axis=[0, 1], keepdims=True)
    flat = high <= low
    one = tf.ones_like(low)
    scale = tf.where(flat, one, 255.0 / tf.where(flat, one, high - low))
    offset = tf.where(flat, tf.zeros_like(low), -low * scale)
    stretched = tf.clip_by_value(tf.floor(values * scale + offset), 0.0, 255.0)
    return tf.cast(stretched, tf.uint8)


def equalize(image):
    """Each channel's histogram equalized (ImageOps.equalize)."""
    channels = []
    for c in range(3):
        channel = tf.cast(image[..., c], tf.int32)
        histogram = tf.math.bincount(tf.reshape(channel, [-1]), minlength=256, maxlength=256)
        last = histogram[tf.reduce_max(tf.where(histogram > 0))]
        step = (tf.reduce_sum(histogram) - last) // 255  # 256 before Pillow 9.1
        safe_step = tf.maximum(step, 1)
        before = tf.cumsum(histogram, exclusive=True)
        lut = tf.minimum((safe_step // 2 + before) // safe_step, 255)
        lut = tf.where(step > 0, lut, tf.range(256))
        channels.append(tf.gather(lut, channel))
    return tf.cast(tf.stack(channels, axis=-1), tf.uint8)


def solarize(image, threshold):
    """Levels at or above `threshold` inverted (ImageOps.solarize)."""
    return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def posterize(image, bits):
    """Only the `bits` most significant bits kept (ImageOps.posterize)."""
    mask = tf.bitwise.bitwise_and(tf.bitwise.left_shift(255, 8 - bits), 255)
    return tf.bitwise.bitwise_and(image, tf.cast(mask, tf.uint8))


def color(image, factor):
    """ImageEnhance.Color: blend with the greyscale image."""
    return _blend(tf.tile(_grey(image), [1, 1, 3]), image, factor)


def contrast(image, factor):
    """ImageEnhance.Contrast: blend with the mean grey level, rounded."""
    mean = tf.floor(tf.reduce_mean(tf.cast(_grey(image), tf.float64)) + 0.5)
    return _blend(tf.fill(tf.shape(image), tf.cast(mean, tf.float32)), image, factor)


def brightness(image, factor):
    """ImageEnhance.Brightness: blend with black."""
    return _blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
    """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH (3x3, centre 5, /13), whose
    border rows and columns are the original pixels."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(_as_float(image)[tf.newaxis], kernel, [1, 1, 1, 1],
                                    "VALID")[0]
    smooth = tf.floor(smooth + 0.5)
    degenerate = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows = tf.range(height)[:, tf.newaxis, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, :, tf.newaxis]
    inner = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    degenerate = tf.where(inner, degenerate, _as_float(image))
    return _blend(degenerate, image, factor)


def affine(image, matrix):
    """Image.transform(size, AFFINE, matrix, BILINEAR, fillcolor=FILL): output pixel (x, y)
    samples the input at (a x + b y + c, d x + e y + f), both in Pillow's pixel-centre
    coordinates; points outside the input take FILL, edges inside are clamped."""
    a, b, c, d, e, f = (tf.cast(m, tf.float32) for m in matrix)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    # Pillow samples centres (x + 0.5) and reads index (coordinate - 0.5); TF reads indices.
    transform = tf.stack([a, b, c + 0.5 * a + 0.5 * b - 0.5,
                          d, e, f + 0.5 * d + 0.5 * e - 0.5, 0.0, 0.0])[tf.newaxis]
    sampled = tf.raw_ops.ImageProjectiveTransformV3(
        images=_as_float(image)[tf.newaxis], transforms=transform,
        output_shape=tf.stack([height, width]), fill_value=0.0, interpolation="BILINEAR",
        fill_mode="NEAREST")[0]
    ys = tf.cast(tf.range(height), tf.float32)[:, tf.newaxis] + 0.5
    xs = tf.cast(tf.range(width), tf.float32)[tf.newaxis, :] + 0.5
    x_in, y_in = a * xs + b * ys + c, d * xs + e * ys + f
    inside = ((x_in >= 0) & (x_in < tf.cast(width, tf.float32))
              & (y_in >= 0) & (y_in < tf.cast(height, tf.float32)))
    fill = tf.constant(FILL, tf.float32)
    return _as_uint8(tf.where(inside[..., tf.newaxis], tf.floor(sampled), fill))


def rotate(image, degrees):
    """Image.rotate(degrees) about the centre, counter-clockwise, same size."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    cx, cy = tf.cast(width, tf.float32) / 2, tf.cast(height, tf.float32) / 2
    angle = -tf.cast(degrees, tf.float32) * math.pi / 180
    cos, sin = tf.cos(angle), tf.sin(angle)
    return affine(image, (cos, sin, cx - cos * cx - sin * cy,
                          -sin, cos, cy + sin * cx - cos * cy))


def shear_x(image, factor):
    return affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0))


def shear_y(image, factor):
    return affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0))


def translate_x(image, fraction):
    """Shifted left by `fraction` of the width (right when negative)."""
    return affine(image, (1.0, 0.0, fraction * tf.cast(tf.shape(image)[1], tf.float32),
                          0.0, 1.0, 0.0))


def translate_y(image, fraction):
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0,
                          fraction * tf.cast(tf.shape(image)[0], tf.float32)))


def not_identity_at_zero(increasing: bool) -> tuple:
    """The ops that change an image at magnitude 0: autocontrast and equalize take no
    magnitude; posterize keeps at most 4 bits (timm: 4 down to 0 with inc1, 0 up to 4
    without); without inc1, solarize inverts every level at 0 and the enhancements' factor is
    0.1."""
    if increasing:
        return ("autocontrast", "equalize", "posterize")
    return ("autocontrast", "equalize", "posterize", "solarize", *ENHANCEMENTS)


def apply_op(image, name, level, sign=1.0, *, increasing: bool = False):
    """uint8 [H, W, 3] -> uint8: op `name` at magnitude `level` (0-10) with timm's level
    mapping (`increasing`: its inc1 one); `sign` (+1 or -1) is the direction of the ops that
    have one."""
    level = tf.cast(level, tf.float32) / MAX_LEVEL
    sign = tf.cast(sign, tf.float32)
    if name == "identity":
        return tf.identity(image)
    if name == "autocontrast":
        return autocontrast(image)
    if name == "equalize":
        return equalize(image)
    if name == "rotate":
        return rotate(image, sign * level * 30.0)
    if name == "solarize":
        threshold = tf.minimum(256, tf.cast(tf.floor(level * 256), tf.int32))
        return solarize(image, 256 - threshold if increasing else threshold)
    if name == "posterize":
        bits = tf.cast(tf.floor(level * 4), tf.int32)
        # At least 1 bit: Pillow refuses 0 (an all-black image) since version 10.
        return posterize(image, tf.maximum(1, 4 - bits if increasing else bits))
    if name in ENHANCEMENTS:
        factor = (tf.maximum(0.1, 1.0 + sign * level * 0.9) if increasing
                  else level * 1.8 + 0.1)
        return {"color": color, "contrast": contrast, "brightness": brightness,
                "sharpness": sharpness}[name](image, factor)
    if name in ("shear_x", "shear_y"):
        return (shear_x if name == "shear_x" else shear_y)(image, sign * level * 0.3)
    if name in ("translate_x", "translate_y"):
        shift = translate_x if name == "translate_x" else translate_y
        return shift(image, sign * level * 0.45)
    raise ValueError(f"unknown RandAugment op {name!r}; expected one of {', '.join(OPS)}")


@dataclasses.dataclass(frozen=True)
class RandAugment:
    """`num_layers` random ops at `magnitude` (0-10), +- Gaussian noise of `magnitude_std`
    (inf: uniform in [0, magnitude]), each applied with probability `prob`; `increasing`:
    timm's inc1 level mapping."""
    magnitude: float
    num_layers: int = 2
    magnitude_std: float = 0.0
    prob: float = 0.5
    increasing: bool = False

    def __post_init__(self):
        if not 0 <= self.magnitude <= MAX_LEVEL:
            raise ValueError(f"RandAugment magnitude must be in [0, 10], not {self.magnitude}")
        if self.num_layers < 1:
            raise ValueError(f"RandAugment needs at least one op per image, not "
                             f"{self.num_layers}")
        if self.magnitude_std < 0:
            raise ValueError(f"RandAugment magnitude std must not be negative, not "
                             f"{self.magnitude_std}")

    @classmethod
    def parse(cls, text: str) -> "RandAugment":
        """'M,N[,S]' (e.g. '9,2,0.5', timm's rand-m9-n2-mstd0.5) or a timm string
        ('rand-m7-n2-mstd0.5-inc1'; n defaults to 2) -> RandAugment; ValueError naming what is
        wrong."""
        if text.startswith("rand"):
            return cls._parse_timm(text)
        parts = [p.strip() for p in text.split(",")]
        if len(parts) not in (2, 3):
            raise ValueError(f"RandAugment takes M,N[,S] or rand-mM-nN[-mstdS][-inc1], not "
                             f"{text!r}")
        try:
            magnitude, num_layers = float(parts[0]), int(parts[1])
            std = float(parts[2]) if len(parts) == 3 else 0.0
        except ValueError:
            raise ValueError(f"RandAugment takes numbers M,N[,S], not {text!r}") from None
        return cls(magnitude=magnitude, num_layers=num_layers, magnitude_std=std)

    @classmethod
    def _parse_timm(cls, text):
        keys = {"m": "magnitude", "n": "num_layers", "mstd": "magnitude_std",
                "inc": "increasing"}
        options = {}
        for part in text.split("-")[1:]:
            match = re.fullmatch(r"([a-z]+?)(inf|[0-9.]+)", part)
            if not match or match.group(1) not in keys:
                raise ValueError(f"RandAugment: unknown part {part!r} of {text!r} (takes m, n, "
                                 f"mstd, inc)")
            key, value = match.groups()
            try:
                options[keys[key]] = (int(value) if key == "n" else bool(int(value))
                                      if key == "inc" else float(value))
            except ValueError:
                raise ValueError(f"RandAugment: {part!r} of {text!r} is not a number") from None
        if "magnitude" not in options:
            raise ValueError(f"RandAugment: {text!r} names no magnitude (rand-mM...)")
        return cls(**options)

    def _level(self, seed):
        if math.isinf(self.magnitude_std):
            return tf.random.stateless_uniform([], seed, 0.0, self.magnitude)
        if self.magnitude_std > 0:
            noise = tf.random.stateless_normal([], seed, stddev=self.magnitude_std)
            return tf.clip_by_value(self.magnitude + noise, 0.0, MAX_LEVEL)
        return tf.constant(self.magnitude, tf.float32)

    def __call__(self, image, seed):
        """uint8 [H, W, 3] image, int64 [2] seed -> the augmented uint8 image."""
        for layer in range(self.num_layers):
            seeds = tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(seed, layer), 4)
            which = tf.random.stateless_uniform([], seeds[0], 0, len(OPS), tf.int32)
            applied = tf.random.stateless_uniform([], seeds[1]) < self.prob
            sign = tf.where(tf.random.stateless_uniform([], seeds[2]) < 0.5, -1.0, 1.0)
            level = self._level(seeds[3])
            branches = [lambda name=name: apply_op(image, name, level, sign,
                                                   increasing=self.increasing)
                        for name in OPS]
            shape = image.shape
            image = tf.cond(applied, lambda: tf.switch_case(which, branches),
                            lambda: tf.identity(image))
            image.set_shape(shape)
        return image


def random_erasing(image, seed, probability):
    """float32 [H, W, C] (normalized) -> with `probability`, one box of 2-33% of the area and
    aspect 0.3-3.3 filled with standard normal noise; timm's first-of-10-attempts rule."""
    seeds = tf.random.experimental.stateless_split(seed, 6)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    area = tf.cast(height * width, tf.float32)
    attempts = 10
    target = tf.random.stateless_uniform([attempts], seeds[0], 0.02, 1 / 3) * area
    aspect = tf.exp(tf.random.stateless_uniform([attempts], seeds[1], math.log(0.3),
                                                math.log(1 / 0.3)))
    box_h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    box_w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (box_h < height) & (box_w < width)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    box_h, box_w = box_h[first], box_w[first]
    # randint(0, size - box) inclusive, as Python's random.randint
    top = tf.random.stateless_uniform([], seeds[2], 0, height - box_h + 1, tf.int32)
    left = tf.random.stateless_uniform([], seeds[3], 0, width - box_w + 1, tf.int32)
    erase = (tf.random.stateless_uniform([], seeds[4]) < probability) & tf.reduce_any(fits)

    def erased():
        rows = tf.range(height)[:, tf.newaxis, tf.newaxis]
        cols = tf.range(width)[tf.newaxis, :, tf.newaxis]
        box = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
        noise = tf.random.stateless_normal(tf.shape(image), seeds[5], dtype=image.dtype)
        return tf.where(box, noise, image)
    return tf.cond(erase, erased, lambda: tf.identity(image))
