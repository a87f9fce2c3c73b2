"""Contract tests run on every registered family, plus each family's own promises."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from icbench.cost import count_macs, count_params
from icbench.errors import CheckpointError, ConfigError, UnknownNameError
from icbench.families import FAMILIES, ModelSpec, build_model, family_sizes, get_family, tiny_size
from icbench.placement import sites

FAMILY_NAMES = FAMILIES.keys()


def test_registry_holds_the_families():
    assert set(FAMILY_NAMES) >= {"resnet_cifar", "resnet", "vgg", "mobilenet_v2", "torchvision", "user"}
    for name in FAMILY_NAMES:
        assert tiny_size(name) in family_sizes(name)


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize(("in_chans", "image_size", "num_classes"), [(3, 32, 10), (1, 28, 7)])
def test_tiny_forward_backward(family, in_chans, image_size, num_classes):
    model = build_model(
        family, tiny_size(family), num_classes=num_classes, in_chans=in_chans, image_size=image_size
    )
    x = torch.randn(2, in_chans, image_size, image_size)
    out = model(x)
    assert out.shape == (2, num_classes)
    assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.icbench_spec == ModelSpec(family, tiny_size(family), num_classes, in_chans, image_size, 1.0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_site_order_is_module_order(family):
    """Forward order (how sites are listed) equals module order for the built-in families."""
    model = build_model(family, tiny_size(family))
    module_order = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert [s.name for s in sites(model)] == module_order


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_stem_excluded_by_default(family):
    site_list = sites(build_model(family, tiny_size(family)))
    assert not site_list[0].eligible
    assert any(s.eligible for s in site_list)


def test_unknown_family_and_size_list_the_choices():
    with pytest.raises(UnknownNameError, match="resnet_cifar") as info:
        build_model("resnet_cifa")
    assert "did you mean 'resnet_cifar'" in str(info.value)
    with pytest.raises(UnknownNameError, match="resnet20") as info:
        build_model("resnet_cifar", "resnet21")
    assert "resnet110" in str(info.value)
    with pytest.raises(UnknownNameError, match="resnet50"):
        build_model("resnet", "resnet152")
    with pytest.raises(UnknownNameError, match="vgg16"):
        build_model("vgg", "vgg19")


@pytest.mark.parametrize("bad", [{"num_classes": 0}, {"in_chans": -1}, {"image_size": 2.5}, {"width": 0}])
def test_bad_arguments(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        build_model("resnet_cifar", "resnet8", **bad)


def test_unknown_builder_keyword_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such_option"):
        build_model("resnet_cifar", "resnet8", no_such_option=1)


# --- resnet_cifar -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "mmac", "mparams"), [("resnet20", 40.55, 0.270), ("resnet56", 125.49, 0.853)]
)
def test_cifar_resnet_matches_he_et_al(size, mmac, mparams):
    model = build_model("resnet_cifar", size, num_classes=10, in_chans=3, image_size=32)
    assert count_macs(model, (3, 32, 32)) / 1e6 == pytest.approx(mmac, rel=0.01)
    assert count_params(model)[1] / 1e6 == pytest.approx(mparams, rel=0.01)


def test_cifar_resnet_option_a_is_default_and_parameter_free():
    model = build_model("resnet_cifar", "resnet20")
    names = [s.name for s in sites(model)]
    assert len(names) == 19  # stem + 18 (6n convolutions, n = 3); no shortcut convolutions
    assert not any("shortcut" in n for n in names)

    option_b = build_model("resnet_cifar", "resnet20", shortcut="B")
    site_list = sites(option_b)
    shortcuts = [s for s in site_list if "shortcut" in s.name]
    assert [s.name for s in shortcuts] == ["layer2.0.shortcut.0", "layer3.0.shortcut.0"]
    assert not any(s.eligible for s in shortcuts)
    assert count_params(option_b)[1] > count_params(model)[1]
    with pytest.raises(UnknownNameError, match="shortcut"):
        build_model("resnet_cifar", "resnet20", shortcut="C")


def test_cifar_resnet_width_and_stages():
    model = build_model("resnet_cifar", "resnet20", width=0.5)
    site_list = sites(model)
    assert [s.out_channels for s in site_list if s.name.endswith("conv2")][::3] == [8, 16, 32]
    assert {s.stage for s in site_list} == {0, 1, 2, 3}
    layer2 = [s for s in site_list if s.name.startswith("layer2.1.")]
    assert {s.stage for s in layer2} == {2} and len({s.block for s in layer2}) == 1


# --- resnet (torchvision) ---------------------------------------------------------------------------
def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_resnet18_is_torchvisions_at_224():
    ours = build_model("resnet", "resnet18", num_classes=1000, image_size=224)
    theirs = torchvision.models.resnet18(weights=None)
    assert _shapes(ours) == _shapes(theirs)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_resnet_small_image_stem():
    small = build_model("resnet", "resnet18", image_size=32)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    big = build_model("resnet", "resnet18", image_size=224, small_input=False)
    assert big.conv1.kernel_size == (7, 7)
    # Same module paths either way: placements and checkpoints carry over.
    assert [s.name for s in sites(small)] == [s.name for s in sites(big, (3, 64, 64))]
    stages = {s.name: s.stage for s in sites(small)}
    assert stages["conv1"] == 0 and stages["layer2.1.conv1"] == 2 and stages["layer4.0.downsample.0"] == 4


# --- vgg ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image_size", [28, 32])
def test_vgg_small_head(image_size):
    model = build_model("vgg", "vgg16", in_chans=1, image_size=image_size)
    assert model(torch.randn(2, 1, image_size, image_size)).shape == (2, 10)
    assert count_params(model)[1] < 20e6  # no 4096-wide head
    site_list = sites(model)
    assert len(site_list) == 13
    assert [s.stage for s in site_list] == [1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]
    assert len({s.block for s in site_list}) == 13


# --- mobilenet_v2 -----------------------------------------------------------------------------------
def test_mobilenet_v2_sites_and_stages():
    model = build_model("mobilenet_v2", "mobilenet_v2", image_size=32)
    site_list = sites(model)
    assert len(site_list) == 52  # stem + 2 + 16 × 3 + last 1×1
    assert sum(s.groups > 1 for s in site_list) == 17  # one depthwise conv per bottleneck
    assert all(s.eligible for s in site_list[1:])
    stage_of_block = {s.block: s.stage for s in site_list}
    # Table 2 of Sandler et al.: rows of n = 1, 2, 3, 4, 3, 3, 1 bottlenecks, then the last conv.
    assert list(stage_of_block.values()) == [0, 1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 8]
    # Small images: stem and first stride-2 row keep the resolution.
    assert site_list[0].stride == (1, 1)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# --- torchvision / user models ------------------------------------------------------------------------
def test_torchvision_model_by_name():
    model = build_model("torchvision", "squeezenet1_1", num_classes=5, in_chans=1, image_size=64)
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 5)
    assert "resnet18" in family_sizes("torchvision")
    with pytest.raises(UnknownNameError, match="squeezenet1_1"):
        build_model("torchvision", "squeezenet2")
    with pytest.raises(ConfigError, match="width"):
        build_model("torchvision", "resnet18", width=0.5)


def test_user_model_import_path():
    model = build_model("user", "icbench.families.user:example_cnn", num_classes=3, in_chans=1, image_size=28)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_such_package_xyz.models:net", "cannot import module 'no_such_package_xyz.models'"),
        ("icbench.families.user:no_such_function", "has no attribute 'no_such_function'"),
        ("icbench.families._base:SMALL_IMAGE_MAX", "not a function"),
        ("torchvision.models:list_models", "returned a list, not an nn.Module"),
        ("icbench.families._base:block_key", "calling 'icbench.families._base:block_key' failed"),
        ("not a path", "package.module:function"),
    ],
)
def test_user_model_bad_import_path(path, message):
    with pytest.raises(ConfigError, match=message):
        build_model("user", path)


def test_user_family_needs_a_size():
    with pytest.raises(ConfigError, match="no default size"):
        build_model("user")


# --- local weights ----------------------------------------------------------------------------------
def test_weights_path_loads_local_state_dict(tmp_path):
    source = build_model("resnet_cifar", "resnet8")
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    loaded = build_model("resnet_cifar", "resnet8", weights_path=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    build_model("resnet_cifar", "resnet8", weights_path=tmp_path / "ckpt.pt")


def test_weights_path_errors(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt does not exist"):
        build_model("resnet_cifar", "resnet8", weights_path=tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_model("resnet_cifar", "resnet8", weights_path=tmp_path / "junk.pt")
    other = build_model("resnet_cifar", "resnet8", num_classes=7)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"fc\.weight"):
        build_model("resnet_cifar", "resnet8", weights_path=tmp_path / "other.pt")


def test_get_family_exposes_rules():
    assert get_family("resnet").default_size == "resnet18"
    with pytest.raises(UnknownNameError):
        get_family("resnet9000")


def test_listing_families_and_building_a_cifar_resnet_do_not_import_torchvision():
    # torchvision costs about 2 s to import (it imports torch._dynamo): the dry run, and trials of the
    # CIFAR ResNets, must not pay for it.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from icbench.families import FAMILIES, build_model, family_sizes\n"
        "[family_sizes(n) for n in FAMILIES if n not in ('torchvision', 'user')]\n"
        "build_model('resnet_cifar', 'resnet8', num_classes=10, in_chans=1, image_size=28, width=0.5)\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_vgg_layer_configurations_are_torchvisions():
    from torchvision.models import vgg as tv_vgg

    from icbench.families.vgg import SIZES

    assert [SIZES["vgg11"], SIZES["vgg13"], SIZES["vgg16"]] == [tv_vgg.cfgs[k] for k in "ABD"]


def test_the_resnet_class_pickles_by_its_module_name():
    import pickle

    model = build_model("resnet", "resnet_tiny", num_classes=3, in_chans=1, image_size=28, width=1.0)
    assert type(pickle.loads(pickle.dumps(model))).__qualname__ == "ResNet"
