"""The standard model set's architectures, built with Keras from their definitions.

Nothing is downloaded: image classifiers get seeded random weights (their latency, memory
and size are the architecture's; their outputs are reproducible, so fidelity after
conversion and quantization is measurable). The digits CNN is trained here, on
scikit-learn's bundled digits data, so its accuracy after quantization means something.

TensorFlow is imported only inside these functions (the ``modelzoo`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

IMAGENET_CLASSES = 1000
REFERENCE_SAMPLES = 8  # seeded inputs whose fp32 outputs are stored with each model
CALIBRATION_SAMPLES = 16  # seeded inputs int8 quantization calibrates on
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class Preprocessing:
    """How 0..255 RGB pixels become the model's input tensor (recorded on the model card)."""

    description: str
    transform: Callable[[np.ndarray], np.ndarray]


MINUS_ONE_TO_ONE = Preprocessing(
    "RGB pixels 0..255 scaled to [-1, 1]: x / 127.5 - 1", lambda x: x / 127.5 - 1.0
)
RAW_PIXELS = Preprocessing("RGB pixels 0..255, unscaled (the model normalizes inside)", lambda x: x)
CAFFE = Preprocessing(
    "BGR pixels 0..255 minus the ImageNet channel means (103.939, 116.779, 123.68)",
    lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68]),
)


@dataclass(frozen=True)
class Architecture:
    family: str
    keras_name: str  # keras.applications constructor
    sizes: tuple[int, ...]
    preprocessing: Preprocessing
    options: dict[str, Any] = field(default_factory=dict)
    license: str = "Apache-2.0 (Keras architecture definition)"

    def variant(self, size: int) -> str:
        return f"{self.family}_{size}"


ARCHITECTURES = {
    a.family: a
    for a in (
        Architecture("mobilenet_v2", "MobileNetV2", (96, 128, 160, 224), MINUS_ONE_TO_ONE),
        Architecture(
            "mobilenet_v3_small",
            "MobileNetV3Small",
            (96, 128, 160, 224),
            MINUS_ONE_TO_ONE,
            {"include_preprocessing": False},
        ),
        Architecture("efficientnet_b0", "EfficientNetB0", (96, 128, 160, 224), RAW_PIXELS),
        Architecture("resnet50", "ResNet50", (128, 224), CAFFE),
    )
}
DIGITS = "digits_cnn"


def quiet_tensorflow() -> Any:
    """Import TensorFlow without its start-up chatter; a clear error when it is missing."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError:
        raise RuntimeError(
            "building the standard model set needs TensorFlow: pip install 'edgebench[modelzoo]'"
        ) from None
    tf.get_logger().setLevel("ERROR")
    return tf


def seeded_images(count: int, size: int, seed: int) -> np.ndarray:
    """Seeded 0..255 RGB 'images' (uniform noise), NHWC float32."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(count, size, size, 3)).astype(np.float32)


def build_classifier(arch: Architecture, size: int, seed: int) -> Any:
    """The Keras model with seeded weights and batch-norm statistics from seeded inputs.

    Random weights with untouched batch-norm statistics (mean 0, variance 1) let
    activations vanish or explode through 50 layers; one training-mode pass with momentum
    0 sets every batch-norm layer's statistics to what it sees, as a real network's are.
    """
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    constructor = getattr(keras.applications, arch.keras_name)
    model = constructor(
        input_shape=(size, size, 3),
        weights=None,
        classes=IMAGENET_CLASSES,
        classifier_activation=None,
        **arch.options,
    )
    batch = arch.preprocessing.transform(seeded_images(CALIBRATION_SAMPLES, size, seed + 1))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    kept = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(batch.astype(np.float32), training=True)
    for layer, momentum in zip(norms, kept):
        layer.momentum = momentum
    return model


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (train_x, train_y, test_x, test_y), NHWC in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    train_x, test_x, train_y, test_y = train_test_split(
        images,
        digits.target,
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=digits.target,
    )
    return train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64)


def train_digits_cnn(seed: int, epochs: int = 40) -> tuple[Any, dict[str, Any]]:
    """A small CNN trained on the digits training split; returns (model, training facts)."""
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    train_x, train_y, test_x, test_y = digits_split()
    # Functional, not Sequential: tf2onnx's Keras converter takes functional models.
    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x), name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_x, train_y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    logits = model.predict(test_x, verbose=0)
    facts = {
        "data": "sklearn.datasets.load_digits (1797 images, 8x8, 10 classes)",
        "split": {
            "test_fraction": DIGITS_TEST_FRACTION,
            "seed": DIGITS_SPLIT_SEED,
            "stratified": True,
        },
        "train_samples": int(len(train_x)),
        "test_samples": int(len(test_x)),
        "epochs": epochs,
        "optimizer": "adam 1e-3, batch 32",
        "fp32_test_accuracy": float(np.mean(np.argmax(logits, axis=1) == test_y)),
    }
    return model, facts
