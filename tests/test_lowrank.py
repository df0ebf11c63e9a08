import numpy as np
import pytest

from edgecompress.errors import EdgeCompressError
from edgecompress.techniques.factorize import FactorizeConfig, choose_rank, factorize, macs
from edgecompress.data.preprocessing import to_model_input


def test_choose_rank_by_energy_and_ratio():
    s = np.array([3.0, 2.0, 1.0])  # squared: 9, 4, 1 -> cumulative 0.64, 0.93, 1.0
    assert choose_rank(s, 10, 10, FactorizeConfig(energy=0.9), "x") == 2
    assert choose_rank(s, 10, 10, FactorizeConfig(energy=0.5), "x") == 1
    assert choose_rank(s, 10, 10, FactorizeConfig(energy=1.0), "x") == 3
    assert choose_rank(s, 100, 100, FactorizeConfig(ratio=0.2), "x") == 10  # 10 * 200 = 0.2 * 100 * 100


def test_rank_larger_than_layer_allows():
    with pytest.raises(EdgeCompressError, match=r"ranks\['fc'\].*at most 8"):
        choose_rank(np.ones(8), 8, 20, FactorizeConfig(ranks={"fc": 9}), "fc")


@pytest.mark.slow
def test_full_rank_reproduces_the_model(tiny_model, tiny_dataset):
    # conv2 (3x3x8 -> 16): rank 16 is full; fc1 (784 -> 32): rank 32 is full.
    new, m = factorize(tiny_model, None, FactorizeConfig(ranks={"conv2": 16, "fc1": 32}, layers=[], finetune_epochs=0))
    x = to_model_input(tiny_dataset.x_test[:50], tiny_dataset.preprocessing)
    np.testing.assert_allclose(new.predict(x, verbose=0), tiny_model.predict(x, verbose=0), atol=1e-4)
    assert [l.name for l in new.layers if "_lr_" in l.name] == ["conv2_lr_a", "conv2_lr_b", "fc1_lr_a", "fc1_lr_b"]


@pytest.mark.slow
def test_energy_factorization_saves_params_and_macs(tiny_model, tiny_dataset):
    new, m = factorize(tiny_model, tiny_dataset, FactorizeConfig(energy=0.6, finetune_epochs=1), verbose=0)
    assert m["params"] < m["params_before"] and m["macs"] < m["macs_before"]
    assert set(m["ranks"]) <= {"conv1", "conv2", "fc1"} and m["ranks"]
    assert 0 < m["accuracy"] <= 1


@pytest.mark.slow
def test_layers_that_would_not_save_are_left_alone(tiny_model):
    new, m = factorize(tiny_model, None, FactorizeConfig(energy=1.0, min_params=0, finetune_epochs=0))
    assert m["ranks"] == {} and m["params"] == m["params_before"]


@pytest.mark.slow
def test_macs_of_the_default_teacher_by_hand(tiny_dataset):
    from edgecompress.models.keras_io import build_teacher

    t = build_teacher(tiny_dataset.preprocessing, 10)
    # conv1 28*28*3*3*1*32 + conv2 14*14*3*3*32*64 + fc1 3136*128 + logits 128*10
    assert macs(t) == 225792 + 3612672 + 401408 + 1280


@pytest.mark.slow
def test_unknown_layer_is_named(tiny_model):
    with pytest.raises(EdgeCompressError, match=r"\['nope'\].*not Dense, Conv2D or Conv1D"):
        factorize(tiny_model, None, FactorizeConfig(layers=["nope"]))


@pytest.mark.slow
def test_residual_graphs_factorize_with_full_rank_giving_the_same_function():
    """A ResNet-style block (Add of two branches): any graph shape, not only chains."""
    import keras as k3

    from edgecompress.models.translate import to_tf_keras
    from tests.support.architectures import transfer_model

    model = to_tf_keras(transfer_model(k3, "resnet", logits=True))
    convs = [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]
    full = {name: min(model.get_layer(name).get_weights()[0].reshape(-1, model.get_layer(name).filters).shape)
            for name in convs}
    new, metrics = factorize(model, None, FactorizeConfig(ranks=full, layers=convs))
    assert set(metrics["ranks"]) == set(convs)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(new.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-3, atol=1e-4)
    low, m = factorize(model, None, FactorizeConfig(energy=0.5))
    assert m["params"] < m["params_before"]


@pytest.mark.slow
def test_the_fine_tune_can_learn_from_the_teacher(tiny_model, tiny_dataset):
    """`distill`: the factorized model fine-tunes inside the distiller; the teacher changes what it learns."""
    from edgecompress.models import keras_io

    teacher = keras_io.build_teacher(tiny_dataset.preprocessing, 10, width=0.5, seed=1)
    config = FactorizeConfig(ratio=0.3, min_params=100, finetune_epochs=1)
    plain, _ = factorize(tiny_model, tiny_dataset, config, seed=0, verbose=0)
    taught, metrics = factorize(tiny_model, tiny_dataset, FactorizeConfig(**{**config.to_dict(), "distill": True}),
                                seed=0, verbose=0, build_teacher=teacher)
    assert metrics["ranks"] and metrics["accuracy"] > 0.3
    assert [w.name for w in taught.weights] == [w.name for w in plain.weights]  # the factorized model itself
    assert any(not np.allclose(a, b) for a, b in zip(taught.get_weights(), plain.get_weights()))
    with pytest.raises(EdgeCompressError, match="no teacher"):
        factorize(tiny_model, tiny_dataset, FactorizeConfig(distill=True), verbose=0)
