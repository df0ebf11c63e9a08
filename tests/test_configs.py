import json

import pytest

from edgecompress.quantize import schemes
from edgecompress.configs import ModelSpec, Preprocessing, TrainConfig
from edgecompress.quantize.schemes import ConversionConfig, Quantization
from edgecompress.errors import EdgeCompressError


@pytest.mark.parametrize("cfg", [
    Preprocessing(),
    Preprocessing(96, 128, 3, "symmetric"),
    TrainConfig(epochs=3, batch_size=32, learning_rate=0.01, validation_fraction=0.0, seed=7),
    schemes.int8_full(),
    schemes.int8_float_io(),
    schemes.float16(),
    ModelSpec(Preprocessing(), ("a", "b")),
])
def test_round_trip_through_json(cfg):
    again = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert type(cfg).from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("cls, kwargs, needle", [
    (Preprocessing, {"height": 0}, "height=0"),
    (Preprocessing, {"width": -3}, "width=-3"),
    (Preprocessing, {"channels": 2}, "channels=2"),
    (Preprocessing, {"scale": "zscore"}, "scale='zscore'"),
    (TrainConfig, {"epochs": 0}, "epochs=0"),
    (TrainConfig, {"batch_size": 0}, "batch_size=0"),
    (TrainConfig, {"learning_rate": 0}, "learning_rate=0"),
    (TrainConfig, {"validation_fraction": 1.0}, "validation_fraction=1.0"),
    (ConversionConfig, {"name": "x", "quantization": "int3"}, "quantization='int3'"),
    (ConversionConfig, {"name": "bad name;"}, "name='bad name;'"),
    (ConversionConfig, {"name": "x", "io_dtype": "uint8"}, "io_dtype='uint8'"),
])
def test_invalid_values_name_the_argument_and_value(cls, kwargs, needle):
    with pytest.raises(EdgeCompressError) as e:
        cls(**kwargs)
    assert needle in str(e.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(EdgeCompressError, match=r"Unknown parameter\(s\) \['hieght'\].*Valid parameters: \['height'"):
        Preprocessing.from_dict({"hieght": 3})


def test_frozen():
    with pytest.raises(Exception):
        Preprocessing().height = 3


def test_quantization_accepts_strings():
    assert ConversionConfig("x", "int8").quantization is Quantization.INT8


def test_model_spec_needs_two_classes():
    with pytest.raises(EdgeCompressError, match="at least 2 classes"):
        ModelSpec(Preprocessing(), ("only",))
