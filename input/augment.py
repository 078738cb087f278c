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
pixels on every run and worker count, and on TF 2.15 and 2.21 alike (a test checks both).
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
    """Pillow's Image.blend(degenerate, image, factor), which ImageEnhance uses: float32
    product, then float32 sum. The product is formed exactly in float64 and rounded once, so
    that XLA cannot fuse the two roundings into one multiply-add and land on the other side
    of an integer."""
    degenerate = _as_float(degenerate)
    difference = tf.cast(image, tf.float64) - tf.cast(degenerate, tf.float64)
    product = tf.cast(tf.cast(factor, tf.float64) * difference, tf.float32)
    return _as_uint8(degenerate + product)


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
    pixels = tf.reshape(tf.cast(image, tf.int32), [-1, 3])
    channel_bins = pixels + tf.range(3) * 256  # the three histograms side by side
    histogram = tf.reshape(tf.math.unsorted_segment_sum(
        tf.ones_like(channel_bins), channel_bins, 3 * 256), [3, 256])
    levels = tf.range(256)
    last_level = tf.reduce_max(tf.where(histogram > 0, levels, -1), axis=1, keepdims=True)
    last = tf.reduce_sum(tf.where(levels == last_level, histogram, 0), axis=1, keepdims=True)
    step = (tf.reduce_sum(histogram, axis=1, keepdims=True) - last) // 255  # 256 before 9.1
    safe_step = tf.maximum(step, 1)
    before = tf.cumsum(histogram, axis=1, exclusive=True)
    lut = tf.minimum((safe_step // 2 + before) // safe_step, 255)
    lut = tf.where(step > 0, lut, levels)
    equalized = tf.gather(tf.reshape(lut, [-1]), channel_bins)
    return tf.cast(tf.reshape(equalized, tf.shape(image)), tf.uint8)


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
    pixels = _as_float(image)
    # Nine shifted views rather than a convolution: XLA fuses them, and its CPU depthwise
    # convolution is far slower.
    neighbours = [pixels[1 + dy:(dy - 1) or None, 1 + dx:(dx - 1) or None]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    smooth = tf.floor((tf.add_n(neighbours) + 4.0 * neighbours[4]) / 13.0 + 0.5)
    degenerate = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows = tf.range(height)[:, tf.newaxis, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, :, tf.newaxis]
    inner = (rows > 0) & (rows < height - 1) & (cols > 0) & (cols < width - 1)
    degenerate = tf.where(inner, degenerate, pixels)
    return _blend(degenerate, image, factor)


def affine(image, matrix):
    """Image.transform(size, AFFINE, matrix, BILINEAR, fillcolor=FILL): output pixel (x, y)
    samples the input at (a x + b y + c, d x + e y + f), both in Pillow's pixel-centre
    coordinates; points outside the input take FILL, neighbours past an edge are clamped.
    Written with gathers rather than ImageProjectiveTransform, which XLA cannot compile."""
    a, b, c, d, e, f = (tf.cast(m, tf.float32) for m in matrix)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    ys = tf.cast(tf.range(height), tf.float32)[:, tf.newaxis] + 0.5
    xs = tf.cast(tf.range(width), tf.float32)[tf.newaxis, :] + 0.5
    x_in, y_in = a * xs + b * ys + c, d * xs + e * ys + f
    inside = ((x_in >= 0) & (x_in < tf.cast(width, tf.float32))
              & (y_in >= 0) & (y_in < tf.cast(height, tf.float32)))
    x, y = x_in - 0.5, y_in - 0.5  # Pillow reads the pixel whose centre is half a pixel on
    x0, y0 = tf.floor(x), tf.floor(y)
    dx, dy = (x - x0)[..., tf.newaxis], (y - y0)[..., tf.newaxis]
    left = tf.clip_by_value(tf.cast(x0, tf.int32), 0, width - 1)
    right = tf.clip_by_value(tf.cast(x0, tf.int32) + 1, 0, width - 1)
    top = tf.clip_by_value(tf.cast(y0, tf.int32), 0, height - 1)
    bottom = tf.clip_by_value(tf.cast(y0, tf.int32) + 1, 0, height - 1)
    rows = tf.reshape(_as_float(image), [-1, 3])

    def at(row, col):
        return tf.gather(rows, row * width + col)
    upper = at(top, left) + (at(top, right) - at(top, left)) * dx
    lower = at(bottom, left) + (at(bottom, right) - at(bottom, left)) * dx
    sampled = upper + (lower - upper) * dy
    return _as_uint8(tf.where(inside[..., tf.newaxis], sampled, tf.constant(FILL, tf.float32)))


def rotate(image, degrees):
    """Image.rotate(degrees) about the centre, counter-clockwise, same size."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    cx, cy = tf.cast(width, tf.float64) / 2, tf.cast(height, tf.float64) / 2
    angle = -tf.cast(degrees, tf.float64) * math.pi / 180  # in double, as Pillow
    cos, sin = tf.cos(angle), tf.sin(angle)
    return affine(image, (cos, sin, cx - cos * cx - sin * cy,
                          -sin, cos, cy + sin * cx - cos * cy))


def shear_x(image, factor):
    return affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0))


def shear_y(image, factor):
    return affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0))


def translate_x(image, fraction):
    """Shifted left by `fraction` of the width (right when negative)."""
    width = tf.cast(tf.shape(image)[1], tf.float64)
    return affine(image, (1.0, 0.0, tf.cast(fraction, tf.float64) * width, 0.0, 1.0, 0.0))


def translate_y(image, fraction):
    height = tf.cast(tf.shape(image)[0], tf.float64)
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, tf.cast(fraction, tf.float64) * height))


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
    have one. The op's argument is computed in float64, as timm's Python does; the pixel work
    is XLA-compiled, one function per op: fused, it costs a fraction of TF's kernels run one
    by one (python -m launch.benchmark --mode=input measures it)."""
    if name not in OPS:
        raise ValueError(f"unknown RandAugment op {name!r}; expected one of {', '.join(OPS)}")
    argument = _argument(name, tf.cast(level, tf.float64) / MAX_LEVEL,
                         tf.cast(sign, tf.float64), increasing)
    return _COMPILED[name](image, argument)


def _argument(name, level, sign, increasing):
    """timm's level -> argument of op `name` (level in [0, 1], float64)."""
    if name == "rotate":
        return sign * level * 30.0
    if name == "solarize":
        threshold = tf.minimum(tf.floor(level * 256), 256.0)
        return 256.0 - threshold if increasing else threshold
    if name == "posterize":
        bits = tf.floor(level * 4)
        # At least 1 bit: Pillow refuses 0 (an all-black image) since version 10.
        return tf.maximum(4.0 - bits if increasing else bits, 1.0)
    if name in ENHANCEMENTS:
        return tf.maximum(1.0 + sign * level * 0.9, 0.1) if increasing else level * 1.8 + 0.1
    if name in ("shear_x", "shear_y"):
        return sign * level * 0.3
    if name in ("translate_x", "translate_y"):
        return sign * level * 0.45
    return tf.constant(0.0, tf.float64)  # identity, autocontrast, equalize: none


_KERNELS = {"identity": lambda image, argument: tf.identity(image),
            "autocontrast": lambda image, argument: autocontrast(image),
            "equalize": lambda image, argument: equalize(image),
            "rotate": lambda image, degrees: rotate(image, degrees),
            "solarize": lambda image, threshold: solarize(image, tf.cast(threshold, tf.int32)),
            "posterize": lambda image, bits: posterize(image, tf.cast(bits, tf.int32)),
            "color": lambda image, factor: color(image, tf.cast(factor, tf.float32)),
            "contrast": lambda image, factor: contrast(image, tf.cast(factor, tf.float32)),
            "brightness": lambda image, factor: brightness(image, tf.cast(factor, tf.float32)),
            "sharpness": lambda image, factor: sharpness(image, tf.cast(factor, tf.float32)),
            "shear_x": shear_x, "shear_y": shear_y,
            "translate_x": translate_x, "translate_y": translate_y}
_COMPILED = {name: tf.function(kernel, jit_compile=True) for name, kernel in _KERNELS.items()}


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
    return tf.cond(erase, lambda: _erase_box(image, top, left, box_h, box_w, seeds[5]),
                   lambda: tf.identity(image))


def _erase_box(image, top, left, height, width, seed):
    """image with [top, top + height) x [left, left + width) replaced by N(0, 1) noise, drawn
    for the box alone (a draw for the whole image costs most of the op)."""
    noise = tf.random.stateless_normal(tf.stack([height, width, tf.shape(image)[2]]), seed,
                                       dtype=image.dtype)
    below, right = tf.shape(image)[0] - top - height, tf.shape(image)[1] - left - width
    placed = tf.pad(noise, [[top, below], [left, right], [0, 0]])
    rows = tf.range(tf.shape(image)[0])[:, tf.newaxis, tf.newaxis]
    cols = tf.range(tf.shape(image)[1])[tf.newaxis, :, tf.newaxis]
    box = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return tf.where(box, placed, image)
