from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mdd_bench.errors import MddError
from mdd_bench.models import create_image_encoder, image_feature_dim, list_image_encoders

TEST_MODELS = [n for n in list_image_encoders() if n.startswith("test_")]


def test_registry_has_protocol_models():
    for name in ["nfnet_l0", "nf_resnet50", "nf_regnet_b1", "test_nfnet", "test_resnet"]:
        assert name in list_image_encoders()
    assert {"test_vit", "test_convnext"} <= set(TEST_MODELS)


@pytest.mark.parametrize("name", TEST_MODELS)
def test_pooled_features_at_32(name):
    torch.manual_seed(0)
    model = create_image_encoder(name, resolution=32)
    x = torch.randn(4, 3, 32, 32)
    feats = model(x)
    assert feats.shape == (4, model.num_features)
    assert model.num_features == image_feature_dim(name, 32)
    assert torch.isfinite(feats).all()
    # Different images must give different features (no collapsed spatial map).
    assert (feats[0] - feats[1]).abs().max() > 0
    feats.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_vit_other_resolution():
    model = create_image_encoder("test_vit", resolution=64)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 64)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    source = create_image_encoder("test_nfnet").eval()
    path = tmp_path / f"anchor{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    torch.manual_seed(1)
    loaded = create_image_encoder("test_nfnet", pretrained="anchor", weights=path).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(x), loaded(x))


def test_weights_of_another_encoder_fail(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file(create_image_encoder("test_resnet").state_dict(), str(path))
    with pytest.raises(MddError, match="do not fit"):
        create_image_encoder("test_nfnet", pretrained="anchor", weights=path)


def test_errors():
    with pytest.raises(MddError, match="Did you mean 'test_nfnet'"):
        create_image_encoder("test_nfet")
    with pytest.raises(MddError, match="evaluation engine"):
        create_image_encoder("test_nfnet", pretrained="anchor")
    with pytest.raises(MddError, match="does not exist|do not exist"):
        create_image_encoder("test_nfnet", pretrained="anchor", weights="/nonexistent.safetensors")
    with pytest.raises(MddError, match="Did you mean 'imagenet'"):
        create_image_encoder("test_nfnet", pretrained="imagnet")


def test_paper_encoders_pooled_dims():
    # Pooled penultimate features, not the 1000-class logits the references used.
    assert image_feature_dim("nfnet_l0") == 2304
    assert image_feature_dim("nf_resnet50") == 2048
    assert image_feature_dim("nf_regnet_b1") == 960
    model = create_image_encoder("nfnet_l0", pretrained="none")
    assert model.num_features == 2304
