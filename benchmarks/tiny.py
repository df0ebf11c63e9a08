"""MLPerf Tiny's four tasks, made here: the reference architectures in Keras 3, and offline stand-ins for their
data, so `invoke benchmark-tiny` can run `build-edge --model M --data D` (no other flag) on each.

The architectures are rewritten from `mlcommons/tiny` v1.4 (`benchmark/training/*`): the DS-CNN keyword
spotter (a 10x4 input convolution with stride 2, four depthwise-separable blocks of 64 channels, average
pooling), ResNet-8 for 32x32 colour images (16/32/64 filters, three residual stacks), MobileNetV1 alpha 0.25
for 96x96 visual wake words, and the dense autoencoder of anomaly detection (640 in, four 128-unit layers, an
8-unit bottleneck, four 128-unit layers, 640 out; its anomaly score is the reconstruction error).

The data are stand-ins, seeded, generated on this machine (nothing is downloaded):

- keyword spotting: words spoken by Debian's `espeak-ng`, with voices (accent + variant) split between train
  and test, random speed, pitch, time shift and noise at a random SNR; "silence" (noise alone) and "unknown"
  (other words) classes as in Speech Commands; MFCCs as MLPerf Tiny computes them (`tf.signal`: 30 ms Hann
  window, 20 ms stride, 40 mel bins from 20 to 4000 Hz, log, DCT, the first 10 coefficients): (49, 10, 1).
- anomaly detection: machine sounds (a fundamental with harmonics, an amplitude modulation, broadband noise),
  one machine type with several ids; anomalies add a bearing-like click train, a second harmonic series or a
  shifted fundamental. Log-mel spectrograms as DCASE/MLPerf Tiny compute them (1024-point FFT, hop 512, 128
  mel bins, 10 log10 of power), five consecutive frames flattened: 640 values. The training split holds normal
  windows only; the test split holds normal and anomalous ones (labels 0 and 1).
- image classification: 32x32 colour drawings of 8 shapes (`examples.draw_shape`).
- visual wake words: 96x96 colour scenes of clutter, with or without a target object (a star), 2 classes.

MLPerf Tiny's own reference files (`REFERENCE`) are quoted beside each result, raw and gzip bytes, measured on
the files of `mlcommons/tiny` at v1.4.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import time
from pathlib import Path

import numpy as np

from edgecompress.errors import EdgeCompressError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Reference:
    """MLPerf Tiny's trained int8 reference file of a task: its name in `mlcommons/tiny`, its bytes raw and
    after `gzip -9` (measured here on those files), its metric and the benchmark's quality target."""

    file: str
    bytes: int
    gzip_bytes: int
    metric: str
    target: float


REFERENCE = {
    "kws": Reference("keyword_spotting/trained_models/kws_ref_model.tflite", 53_936, 35_251, "top-1", 0.90),
    "ic": Reference("image_classification/trained_models/pretrainedResnet_quant.tflite", 98_496, 81_400, "top-1",
                    0.85),
    "vww": Reference("visual_wake_words/trained_models/vww_96_int8.tflite", 333_288, 94_955, "top-1", 0.80),
    "ad": Reference("anomaly_detection/trained_models/ad01_int8.tflite", 276_976, 188_301, "ROC-AUC", 0.85),
}


# ---------------------------------------------------------------- the reference architectures (Keras 3)

def ds_cnn(keras, input_shape=(49, 10, 1), classes: int = 12, filters: int = 64):
    """MLPerf Tiny's keyword spotter: a (10, 4) stride-2 convolution, four depthwise-separable blocks, average
    pooling over the whole map, a softmax."""
    reg = keras.regularizers.L2(1e-4)
    inp = keras.Input(input_shape)
    x = keras.layers.Conv2D(filters, (10, 4), strides=(2, 2), padding="same", kernel_regularizer=reg)(inp)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    x = keras.layers.Dropout(0.2)(x)
    for _ in range(4):
        x = keras.layers.DepthwiseConv2D((3, 3), padding="same", depthwise_regularizer=reg)(x)
        x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
        x = keras.layers.Conv2D(filters, (1, 1), padding="same", kernel_regularizer=reg)(x)
        x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))
    x = keras.layers.Dropout(0.4)(x)
    x = keras.layers.AveragePooling2D(pool_size=(input_shape[0] // 2, input_shape[1] // 2))(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(classes, activation="softmax")(x), name="ds_cnn")


def resnet8(keras, input_shape=(32, 32, 3), classes: int = 10, filters: int = 16):
    """MLPerf Tiny's ResNet-8 (EEMBC's CIFAR-10 ResNet v1): three stacks of two 3x3 convolutions with a residual,
    the last two at stride 2 with a 1x1 projection; average pooling; a softmax."""
    reg = keras.regularizers.L2(1e-4)

    def conv(x, n, k=3, s=1):
        return keras.layers.Conv2D(n, k, strides=s, padding="same", kernel_initializer="he_normal",
                                   kernel_regularizer=reg)(x)

    inp = keras.Input(input_shape)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(conv(inp, filters)))
    for stack in range(3):
        n, s = filters * 2 ** stack, 1 if stack == 0 else 2
        y = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(conv(x, n, s=s)))
        y = keras.layers.BatchNormalization()(conv(y, n))
        if s != 1:
            x = conv(x, n, k=1, s=s)
        x = keras.layers.Activation("relu")(keras.layers.Add()([x, y]))
    x = keras.layers.AveragePooling2D(pool_size=x.shape[1])(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(classes, activation="softmax")(x), name="resnet8")


def mobilenet_v1(keras, input_shape=(96, 96, 3), classes: int = 2, alpha: float = 0.25):
    """MLPerf Tiny's visual-wake-words MobileNetV1: a stride-2 3x3 convolution, 13 depthwise-separable blocks
    (strides 2 at blocks 2, 4, 6 and 12), average pooling, a softmax; widths `alpha` x 32..1024."""
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

    def bn_relu(x):
        return keras.layers.Activation("relu")(keras.layers.BatchNormalization()(x))

    inp = keras.Input(input_shape)
    x = bn_relu(keras.layers.Conv2D(int(32 * alpha), 3, strides=2, padding="same", use_bias=False)(inp))
    for n, s in plan:
        x = bn_relu(keras.layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(x))
        x = bn_relu(keras.layers.Conv2D(int(n * alpha), 1, padding="same", use_bias=False)(x))
    x = keras.layers.AveragePooling2D(pool_size=x.shape[1])(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(classes, activation="softmax")(x), name="mobilenet_v1_025")


def dense_autoencoder(keras, dims: int = 640, hidden: int = 128, bottleneck: int = 8):
    """MLPerf Tiny's anomaly-detection model: Dense(128)-BN-ReLU x4, Dense(8)-BN-ReLU, Dense(128)-BN-ReLU x4,
    Dense(640), linear."""
    inp = keras.Input((dims,))
    x = inp
    for units in (hidden,) * 4 + (bottleneck,) + (hidden,) * 4:
        x = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(keras.layers.Dense(units)(x)))
    return keras.Model(inp, keras.layers.Dense(dims)(x), name="ad_autoencoder")


# ---------------------------------------------------------------- keyword spotting: espeak-ng words to MFCCs

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "seven", "learn")
KWS_CLASSES = ("silence", "unknown") + WORDS
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "croak")
SAMPLE_RATE = 16_000


def speak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """`word` spoken by `espeak-ng` in `voice` at `speed` words per minute and `pitch` (0..99), resampled to
    16 kHz, as float32 in [-1, 1]."""
    try:
        out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                             check=True, capture_output=True).stdout
    except FileNotFoundError as e:
        raise EdgeCompressError("espeak-ng is not installed; the keyword-spotting stand-in speaks its words with "
                                "it. Install it with `apt-get install espeak-ng` (scripts/install-system-deps.sh "
                                "does).") from e
    rate = int.from_bytes(out[24:28], "little")
    pcm = np.frombuffer(out[44:], np.int16).astype(np.float32) / 32768.0
    t = np.arange(int(len(pcm) * SAMPLE_RATE / rate)) * rate / SAMPLE_RATE
    return np.interp(t, np.arange(len(pcm)), pcm).astype(np.float32)


def _clip(wave, rng, snr_db, shift_ms=100) -> np.ndarray:
    """One second: `wave` placed at a random offset (within +-`shift_ms` of the centre), noise at `snr_db`."""
    out = np.zeros(SAMPLE_RATE, np.float32)
    wave = wave[:SAMPLE_RATE]
    start = (SAMPLE_RATE - len(wave)) // 2 + int(rng.integers(-shift_ms, shift_ms + 1) * SAMPLE_RATE / 1000)
    start = int(np.clip(start, 0, SAMPLE_RATE - len(wave)))
    out[start:start + len(wave)] = wave
    noise = _noise(rng)
    power = max(float((out ** 2).mean()), 1e-8)
    return out + noise * np.sqrt(power / 10 ** (snr_db / 10) / max(float((noise ** 2).mean()), 1e-12))


def _noise(rng, n=SAMPLE_RATE) -> np.ndarray:
    """Background noise: white noise coloured by a random one-pole filter (from hiss to rumble)."""
    white = rng.normal(0, 1, n).astype(np.float32)
    a = float(rng.uniform(0, 0.97))
    spec = np.fft.rfft(white) / np.abs(1 - a * np.exp(-2j * np.pi * np.fft.rfftfreq(n)))
    return np.fft.irfft(spec, n).astype(np.float32)


def mfcc(clips: np.ndarray) -> np.ndarray:
    """MLPerf Tiny's MFCCs of 1 s clips at 16 kHz (its `get_dataset.py`, feature_type "mfcc"): (N, 49, 10, 1)."""
    from edgecompress.models.backend import tf

    stfts = tf.signal.stft(np.asarray(clips, np.float32), frame_length=480, frame_step=320, fft_length=None, window_fn=tf.signal.hann_window)
    spectrograms = tf.abs(stfts)
    mel = tf.signal.linear_to_mel_weight_matrix(40, stfts.shape[-1], SAMPLE_RATE, 20.0, 4000.0)
    log_mel = tf.math.log(tf.tensordot(spectrograms, mel, 1) + 1e-6)
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :10].numpy()[..., None].astype(np.float32)


@dataclasses.dataclass(frozen=True)
class KwsConfig:
    """How much of the keyword-spotting stand-in to make: voices for training and for testing (never the same
    voice in both), takes per word and voice (`test_takes` for the test voices), and the SNR range of the noise.
    32 takes per test voice (8,064 test clips, half of them judged): on 8 (2,016) a 0.5-wide per-tensor student
    0.69 points below the model's file had a paired standard error of 0.41, and the margin kept it out."""

    train_voices: int = 84  # of the 105 accent + variant pairs (`ACCENTS` x `VARIANTS`)
    test_voices: int = 21
    takes: int = 8
    test_takes: int = 32
    unknown_share: float = 1.0  # "unknown" examples per voice, as a share of one word's
    snr_db: tuple[float, float] = (5.0, 30.0)
    seed: int = 0


def voices(n: int, rng) -> list[str]:
    """`n` distinct espeak-ng voices (accent + variant), in a seeded order."""
    pairs = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    return [pairs[i] for i in rng.permutation(len(pairs))[:n]]


def make_kws_data(config: KwsConfig = KwsConfig()) -> dict:
    """The keyword-spotting stand-in as arrays: x_train, y_train, x_test, y_test (MFCCs), class_names, and
    groups_train, groups_test: each clip's voice, so a build splits and counts by voice."""
    rng = np.random.default_rng(config.seed)
    speakers = voices(config.train_voices + config.test_voices, rng)
    split = {"train": speakers[:config.train_voices], "test": speakers[config.train_voices:]}
    arrays = {}
    for name, group in split.items():
        clips, labels, said_by = [], [], []
        takes = config.takes if name == "train" else config.test_takes
        for voice in group:
            for label, word in enumerate(KWS_CLASSES):
                for _ in range(int(round(takes * (config.unknown_share if label == 1 else 1)))):
                    snr = rng.uniform(*config.snr_db)
                    if label == 0:
                        clips.append(_noise(rng) * float(rng.uniform(0.001, 0.05)))
                    else:
                        said = str(rng.choice(UNKNOWN)) if label == 1 else word
                        wave = speak(said, voice, int(rng.integers(120, 220)), int(rng.integers(20, 80)))
                        clips.append(_clip(wave * float(rng.uniform(0.3, 1.0)), rng, snr))
                    labels.append(label)
                    said_by.append(voice)
        x = mfcc(np.stack(clips))
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x, np.asarray(labels, np.int64)
        arrays[f"voices_{name}"] = np.asarray(group)
        arrays[f"groups_{name}"] = np.asarray(said_by)  # each clip's voice: a group (`data.groups`)
    arrays["class_names"] = np.asarray(KWS_CLASSES)
    return arrays


# ---------------------------------------------------------------- anomaly detection: machine sounds to log-mels

@dataclasses.dataclass(frozen=True)
class AdConfig:
    """The anomaly-detection stand-in: machine ids, clips per id (normal for training; normal and anomalous
    for testing), clip length, and how many 5-frame windows each clip gives. 100 test clips per machine
    (3,200 windows, half of them judged): on 20 (320 judged windows) a file's paired standard error of its
    ROC-AUC drop reached 3.2 points, and the margin on the limit kept every student out."""

    machines: int = 4
    train_clips: int = 60
    test_clips: int = 100
    seconds: float = 2.0
    windows: int = 8
    seed: int = 0


def machine_sound(rng, f0: float, seconds: float, anomaly: str | None = None) -> np.ndarray:
    """A machine at fundamental `f0`: harmonics with a slow amplitude modulation and broadband noise; an
    `anomaly` adds a click train ("clicks"), a second harmonic series ("whine") or a drifted fundamental
    ("drift")."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = f0 * (1 + rng.normal(0, 0.004))
    if anomaly == "drift":
        f *= 1 + rng.choice([-1, 1]) * rng.uniform(0.06, 0.12)
    am = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6.3))
    x = sum(am * np.sin(2 * np.pi * k * f * t + rng.uniform(0, 6.3)) / k for k in range(1, 9))
    x = x + _noise(rng, n) * 0.3
    if anomaly == "whine":
        fw = rng.uniform(1500, 3500)
        x = x + 0.25 * sum(np.sin(2 * np.pi * k * fw * t) / k for k in range(1, 3))
    if anomaly == "clicks":
        period = int(SAMPLE_RATE / rng.uniform(8, 30))
        clicks = np.zeros(n)
        clicks[rng.integers(0, period)::period] = 1.0
        x = x + 3.0 * np.convolve(clicks, np.exp(-np.arange(200) / 30) * rng.normal(0, 1, 200), "same")
    return (x / np.abs(x).max()).astype(np.float32)


def log_mel_windows(clip: np.ndarray, frames: int = 5, windows: int | None = None, rng=None) -> np.ndarray:
    """DCASE's (and MLPerf Tiny's) features of one clip: 128 log-mel bins (1024-point FFT, hop 512, 10 log10 of
    power), `frames` consecutive frames flattened: (windows, 128 * frames), evenly spaced or all."""
    from edgecompress.models.backend import tf

    power = tf.abs(tf.signal.stft(np.asarray(clip, np.float32), 1024, 512, window_fn=tf.signal.hann_window)) ** 2
    mel = tf.signal.linear_to_mel_weight_matrix(128, 513, SAMPLE_RATE, 0.0, SAMPLE_RATE / 2)
    logmel = (10 * np.log10(tf.tensordot(power, mel, 1).numpy() + 1e-10)).astype(np.float32)
    vectors = np.stack([logmel[i:i + frames].reshape(-1) for i in range(len(logmel) - frames + 1)])
    if windows is None or windows >= len(vectors):
        return vectors
    return vectors[np.linspace(0, len(vectors) - 1, windows).astype(int)]


def make_ad_data(config: AdConfig = AdConfig()) -> dict:
    """The anomaly-detection stand-in as arrays: x_train (normal windows), y_train (zeros), x_test, y_test
    (0 normal, 1 anomaly), class_names, and groups_train, groups_test: each window's clip (`split-machine-clip`,
    so no two clips share an id across the splits), so a build splits and counts by clip, the windows of one clip
    sharing its sound."""
    rng = np.random.default_rng(config.seed)
    f0s = rng.uniform(60, 240, config.machines)
    xtr, xte, yte, gtr, gte = [], [], [], [], []
    for m, f0 in enumerate(f0s):
        for c in range(config.train_clips):
            xtr.append(log_mel_windows(machine_sound(rng, f0, config.seconds), windows=config.windows))
            gtr += [f"train-{m}-{c}"] * len(xtr[-1])
        for i in range(config.test_clips):
            anomaly = None if i % 2 == 0 else str(rng.choice(["clicks", "whine", "drift"]))
            xte.append(log_mel_windows(machine_sound(rng, f0, config.seconds, anomaly), windows=config.windows))
            yte.append(np.full(len(xte[-1]), int(anomaly is not None)))
            gte += [f"test-{m}-{i}"] * len(xte[-1])
    xtr, xte = np.concatenate(xtr), np.concatenate(xte)
    return {"x_train": xtr, "y_train": np.zeros(len(xtr), np.int64), "x_test": xte,
            "y_test": np.concatenate(yte).astype(np.int64), "class_names": np.asarray(["normal", "anomaly"]),
            "groups_train": np.asarray(gtr), "groups_test": np.asarray(gte)}


# ---------------------------------------------------------------- images: 32x32 shapes, 96x96 wake-word scenes

def make_ic_data(train: int = 4000, test: int = 10000, seed: int = 0) -> dict:
    """32x32 colour drawings of `examples.SHAPES` (8 classes), as uint8 arrays. 10,000 test images, as CIFAR-10
    has: on 1,000 (500 confirming) a file's paired standard error was 1.84 points, so nothing smaller than the
    model's own file could be certified within 1 point unless it looked 2 points better."""
    from benchmarks.examples import SHAPES, draw_shape

    rng = np.random.default_rng(seed)
    y = np.arange(train + test) % len(SHAPES)
    x = np.stack([draw_shape(int(k), 32, rng) for k in y])
    perm = rng.permutation(len(y))
    x, y = x[perm], y[perm]
    return {"x_train": x[:train], "y_train": y[:train], "x_test": x[train:], "y_test": y[train:],
            "class_names": np.asarray(SHAPES)}


def draw_scene(has_target: bool, size: int, rng) -> np.ndarray:
    """A 96x96 scene of clutter (shapes that are not the target, at random sizes and colours), with a star (the
    target) somewhere in it when `has_target`."""
    from PIL import Image, ImageDraw

    from benchmarks.examples import colours, polygon

    bg, _ = colours(rng)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in bg))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        _, fg = colours(rng)
        cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 14, size / 6)
        n = int(rng.choice([3, 4, 6, 40]))
        d.polygon(polygon(cx, cy, r, n, rng.uniform(0, 6.3)), fill=tuple(int(v) for v in fg))
    if has_target:
        _, fg = colours(rng)
        cx, cy, r = rng.uniform(size / 6, 5 * size / 6), rng.uniform(size / 6, 5 * size / 6), rng.uniform(size / 9,
                                                                                                          size / 5)
        d.polygon(polygon(cx, cy, r, 5, rng.uniform(0, 6.3), star=True), fill=tuple(int(v) for v in fg))
    return np.asarray(img, np.uint8)


def make_vww_data(train: int = 10000, test: int = 1000, seed: int = 0) -> dict:
    """96x96 colour scenes with (1) or without (0) a star, as uint8 arrays."""
    rng = np.random.default_rng(seed)
    y = np.arange(train + test) % 2
    x = np.stack([draw_scene(bool(k), 96, rng) for k in y])
    perm = rng.permutation(len(y))
    x, y = x[perm], y[perm]
    return {"x_train": x[:train], "y_train": y[:train], "x_test": x[train:], "y_test": y[train:],
            "class_names": np.asarray(["no_target", "target"])}


# ---------------------------------------------------------------- the four, made and trained

@dataclasses.dataclass(frozen=True)
class TinyTask:
    """One MLPerf Tiny task as made here: its data maker, its architecture, how it trains, and the floor its
    Keras model must reach (a pinned check that the stand-in and the recipe still work)."""

    data: object
    build: object
    epochs: int
    learning_rate: float
    floor: float
    autoencoder: bool = False
    augment: bool = False  # random flips and shifts while it trains (not in the saved model)


MLPERF_TINY = {
    "kws": TinyTask(lambda: make_kws_data(), lambda k, a: ds_cnn(k, a["x_train"].shape[1:], len(a["class_names"])),
                    epochs=30, learning_rate=2e-3, floor=0.8),
    "ad": TinyTask(lambda: make_ad_data(), lambda k, a: dense_autoencoder(k, a["x_train"].shape[1]), epochs=40,
                   learning_rate=1e-3, floor=0.8, autoencoder=True),
    "ic": TinyTask(lambda: make_ic_data(), lambda k, a: resnet8(k, (32, 32, 3), len(a["class_names"])), epochs=20,
                   learning_rate=2e-3, floor=0.8),
    # On 3,000 scenes without augmentation MobileNetV1 reached 63.5% (train loss 0.009, val loss 1.06).
    "vww": TinyTask(lambda: make_vww_data(), lambda k, a: mobilenet_v1(k, (96, 96, 3), 2), epochs=30,
                    learning_rate=2e-3, floor=0.7, augment=True),
}


def train(name: str, arrays: dict, *, epochs: int | None = None, seed: int = 0):
    """Builds task `name`'s reference architecture in Keras 3 and trains it on `arrays`; returns (model, its
    metric on the test split). Image tasks train on pixels / 255, as their data is fed (`--scale unit`)."""
    import keras

    from edgecompress.lite import tasks

    task = MLPERF_TINY[name]
    keras.utils.set_random_seed(seed)
    model = task.build(keras, arrays)
    x, xs = arrays["x_train"], arrays["x_test"]
    if x.dtype == np.uint8:
        model = _with_rescaling(keras, model)
        x, xs = x.astype("float32"), xs.astype("float32")
    lr = keras.optimizers.schedules.CosineDecay(task.learning_rate, task.epochs * int(np.ceil(len(x) / 64)))
    trainer = model
    if task.augment:  # flips and shifts in front while it trains; the saved model is `model` alone
        inp = keras.Input(model.input_shape[1:])
        h = keras.layers.RandomFlip("horizontal", seed=seed)(inp)
        h = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed)(h)
        trainer = keras.Model(inp, model(h))
    trainer.compile(keras.optimizers.Adam(lr), "mse" if task.autoencoder else "sparse_categorical_crossentropy")
    trainer.fit(x, x if task.autoencoder else arrays["y_train"], batch_size=64, epochs=epochs or task.epochs,
                verbose=2, shuffle=True, validation_split=0.1)
    out = model.predict(xs, verbose=0)
    metric = tasks.task("anomaly" if task.autoencoder else "classification").score(xs, out, arrays["y_test"])
    return model, metric


def _with_rescaling(keras, model):
    """`model` with a `Rescaling(1/255)` in front: the file takes pixels 0..255, as a camera gives them."""
    inp = keras.Input(model.input_shape[1:])
    return keras.Model(inp, model(keras.layers.Rescaling(1 / 255)(inp)), name=model.name)


def make(name: str, out, *, epochs: int | None = None, check: bool = True) -> dict:
    """Makes task `name` under `out`: `data.npz`, `model.keras` (Keras 3) and `tiny.json` (what was made)."""
    if name not in MLPERF_TINY:
        raise EdgeCompressError(f"Received an invalid value for `task`: {name!r}. Expected one of {sorted(MLPERF_TINY)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    arrays = MLPERF_TINY[name].data()
    np.savez(out / "data.npz", **{k: v for k, v in arrays.items() if not k.startswith("voices_")})
    made = time.time() - t0
    logger.info("Made the %s stand-in: %d training and %d test examples of shape %s in %.0f s", name,
                len(arrays["y_train"]), len(arrays["y_test"]), arrays["x_train"].shape[1:], made)
    model, metric = train(name, arrays, epochs=epochs)
    if check and metric < MLPERF_TINY[name].floor:
        raise EdgeCompressError(f"The {name} reference model reached {metric:.4f} ({REFERENCE[name].metric}) on the "
                                f"stand-in's test split, below its pinned floor {MLPERF_TINY[name].floor}: the data maker "
                                "or the training recipe changed.")
    model.save(out / "model.keras")
    summary = {"task": name, "keras_metric": metric, "metric": REFERENCE[name].metric,
               "params": int(model.count_params()), "data_seconds": round(made, 1),
               "train_seconds": round(time.time() - t0 - made, 1),
               "train": int(len(arrays["y_train"])), "test": int(len(arrays["y_test"])),
               **({"voices": {k[7:]: [str(v) for v in arrays[k]] for k in arrays if k.startswith("voices_")}}
                  if name == "kws" else {})}
    (out / "tiny.json").write_text(json.dumps(summary, indent=2))
    logger.info("%s: %s %.4f, %d parameters", model.name, REFERENCE[name].metric, metric, summary["params"])
    return summary


_TASK_NAMES = {"kws": "keyword spotting", "ic": "image classification", "vww": "visual wake words",
               "ad": "anomaly detection"}
REFERENCE_RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "mlperf_tiny_reference.json"


def _reference_row(name: str) -> dict:
    """Task `name`'s reference int8 file as `scripts/mlperf_tiny_reference.py` measured it
    (`docs/results/mlperf_tiny_reference.json`), or {} where it was not measured."""
    if not REFERENCE_RESULTS.exists():
        return {}
    return json.loads(REFERENCE_RESULTS.read_text())["references"].get(_TASK_NAMES[name]) or {}


def reference_arena(name: str) -> int | None:
    """TFLM's arena of task `name`'s reference int8 file, or None where it was not measured."""
    return (_reference_row(name).get("tflm") or {}).get("arena_bytes")


def benchmark(name: str, out=None, budget_minutes: float = 30.0, target: str = "cpu") -> dict:
    """Makes task `name` once under `out` (default `build/tiny-<name>`), then runs `build_edge` on it with
    `--model` and `--data` only (the closed loop; `target="mcu"` adds `--target mcu`); returns its row beside
    MLPerf Tiny's reference file: file bytes, gzip bytes and TFLM arena of each. For `mcu` the build is held to
    the reference's arena (`--max-ram-kb`), and the row compares the file with the reference's both as shipped
    and without its names, as `--target mcu` makes its own (`lite.strip`)."""
    from edgecompress.builder.options import BuildOptions
    from edgecompress.pipeline import build_edge

    out = Path(out or f"build/tiny-{name}")
    if not (out / "model.keras").exists():
        make(name, out)
    made = json.loads((out / "tiny.json").read_text())
    ref_arena, ref_stripped = reference_arena(name), _reference_row(name).get("stripped_bytes")
    ram_kb = ref_arena / 1024 if target == "mcu" and ref_arena else None
    t0 = time.time()
    report = build_edge(BuildOptions(model=str(out / "model.keras"), data=str(out / "data.npz"),
                                     out_dir=str(out / "out"), budget_minutes=budget_minutes, target=target,
                                     max_ram_kb=ram_kb))
    seconds = time.time() - t0
    arts = {a["name"]: a for a in report["artifacts"]}
    chosen = arts.get(report.get("selected")) or {}
    base = arts.get(report.get("baseline")) or {}
    ref = REFERENCE[name]
    arena = (chosen.get("tflm") or {}).get("arena_bytes")
    size = chosen.get("size_bytes")
    return {"task": name, "target": target, "metric": ref.metric, "keras_metric": made["keras_metric"],
            "judged": chosen.get("val_accuracy"), "baseline_judged": base.get("val_accuracy"),
            "selected": report.get("selected"), "selected_metric": chosen.get("accuracy"),
            "baseline_metric": base.get("accuracy"), "bytes": chosen.get("size_bytes"),
            "gzip_bytes": chosen.get("gzip_bytes"), "arena_bytes": arena, "reference_bytes": ref.bytes,
            "reference_gzip_bytes": ref.gzip_bytes, "reference_arena_bytes": ref_arena,
            "quarter_of_reference": chosen.get("gzip_bytes") is not None and chosen["gzip_bytes"] * 4 <= ref.gzip_bytes,
            "quarter_of_reference_file": size is not None and size * 4 <= ref.bytes,
            "reference_stripped_bytes": ref_stripped, "names_stripped": bool(chosen.get("recipe", {}).get("names_stripped")),
            "quarter_of_reference_stripped": None if size is None or not ref_stripped else size * 4 <= ref_stripped,
            "max_ram_kb": ram_kb,
            "arena_within_reference": None if arena is None or ref_arena is None else arena <= ref_arena,
            "stages": [s.get("stage") for s in chosen.get("recipe", {}).get("stages", [])],
            "seconds": round(seconds, 1)}
