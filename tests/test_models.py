import pytest
import torch

from digits.models import DigitCNN, ExampleNet, ModelArgumentError, count_parameters


@pytest.mark.parametrize("channels", [(16, 32, 64), (8, 16), (4,), (8, 8, 8, 8)])
@pytest.mark.parametrize("hidden", [0, 32])
@pytest.mark.parametrize("downsample", ["pool", "pool_first", "stride"])
def test_cnn_maps_images_to_ten_logits(channels, hidden, downsample):
    model = DigitCNN(channels=channels, hidden=hidden, dropout=0.2, downsample=downsample)
    logits = model(torch.randn(5, 1, 28, 28))
    assert logits.shape == (5, 10)
    assert logits.dtype == torch.float32


def test_widths_set_the_parameter_count():
    # conv weights (no bias before BatchNorm) + BN affine + linear head
    model = DigitCNN(channels=(16, 32, 64), hidden=0)
    expected = (1 * 16 * 9 + 16 * 32 * 9 + 32 * 64 * 9) + 2 * (16 + 32 + 64) + (64 * 3 * 3 * 10 + 10)
    assert count_parameters(model) == expected
    assert count_parameters(ExampleNet()) == 1_199_882  # pytorch/examples' network
    assert ExampleNet()(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_stride_halves_each_block_in_its_conv_rounding_up():
    # 28 -> 14 -> 7 -> 4: no block works at 28 pixels, and the head sees 4x4 maps (pooling gives 3x3)
    model = DigitCNN(channels=(16, 32, 48), downsample="stride")
    assert not any(isinstance(layer, torch.nn.MaxPool2d) for layer in model.modules())
    assert model.features(torch.randn(2, 1, 28, 28)).shape == (2, 48, 4, 4)
    assert DigitCNN(channels=(16, 32, 48)).features(torch.randn(2, 1, 28, 28)).shape == (2, 48, 3, 3)
    assert DigitCNN(channels=(4,) * 5, downsample="stride")(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # one per block: 28 -stride-> 14 -pool-> 7 -pool-> 3
    mixed = DigitCNN(channels=(16, 32, 48), downsample=["stride", "pool", "pool"])
    assert mixed.features(torch.randn(2, 1, 28, 28)).shape == (2, 48, 3, 3)


def test_pool_first_normalises_pooled_maps_and_is_pool_reordered():
    # BatchNorm sees 14x14 maps in the first block, not 28x28: a quarter of the pixels to normalise and activate
    seen = []
    model = DigitCNN(channels=(16, 32, 48), downsample="pool_first")
    model.features[2].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    assert isinstance(model.features[2], torch.nn.BatchNorm2d)
    assert model.features(torch.randn(2, 1, 28, 28)).shape == (2, 48, 3, 3)
    assert seen == [(2, 16, 14, 14)]
    assert count_parameters(model) == count_parameters(DigitCNN(channels=(16, 32, 48)))
    # without BatchNorm the two orders are the same function (ReLU commutes with max-pooling): same weights,
    # same logits
    late = DigitCNN(channels=(8, 16), batch_norm=False, downsample="pool").eval()
    early = DigitCNN(channels=(8, 16), batch_norm=False, downsample="pool_first").eval()
    early.load_state_dict(late.state_dict())
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(early(x), late(x))
    assert [type(layer) for layer in early.features[:3]] == [torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.ReLU]


def test_the_block_orders_by_default_and_in_a_list():
    # the class's own default stays pool: checkpoints saved before model.downsample existed rebuild with it
    assert [type(layer) for layer in DigitCNN(channels=(16, 32, 48)).features[:4]] == [
        torch.nn.Conv2d,
        torch.nn.BatchNorm2d,
        torch.nn.ReLU,
        torch.nn.MaxPool2d,
    ]
    # experiment=fast's network: 28 -stride-> 14 -pool-> 7 -pool-> 3
    fast = DigitCNN(channels=(16, 32, 48), downsample=["stride", "pool_first", "pool_first"])
    assert fast.features(torch.randn(2, 1, 28, 28)).shape == (2, 48, 3, 3)
    assert fast(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_channels_last_gives_the_same_logits():
    model = DigitCNN().eval()
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(channels=()), "model.channels=.* a non-empty list of integers >= 1"),
        (dict(channels=(16, 0)), "model.channels=.* a non-empty list of integers >= 1"),
        (dict(dropout=1.0), r"model.dropout=1.0 is not allowed: a number in \[0, 1\)"),
        (dict(channels=(4, 4, 4, 4, 4)), "5 blocks are too many"),
        (dict(downsample="avg"), "model.downsample='avg' is not allowed: pool, pool_first, stride, or one of them"),
        (dict(channels=(8, 8), downsample=["stride"]), r"one of them per block \(2 blocks\)"),
        (dict(downsample=None), "model.downsample=None is not allowed: pool, pool_first, stride"),
        (dict(downsample=2), "model.downsample=2 is not allowed: pool, pool_first, stride"),
    ],
)
def test_bad_model_arguments_are_refused(kwargs, match):
    with pytest.raises(ModelArgumentError, match=match):
        DigitCNN(**kwargs)
