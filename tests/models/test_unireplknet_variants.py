"""Every official variant, training and deploy form: state_dict key names, shapes, key counts and parameter counts.

The expected keys are built here from the spec's description of the official layout (spec unireplknet.md §2-§4), the
counts are the spec's table (§1.2). Models are built on the meta device: no memory, no time.
"""

from __future__ import annotations

import pytest
import torch

from unilk.models import create_model
from unilk.models.registry import get_pretrained_cfg

# variant: (depths, dims, train params, deploy params, train keys, deploy keys)   -- spec §1.2
VARIANTS = {
    "unireplknet_a": ((2, 2, 6, 2), (40, 80, 160, 320), 4_649_060, 4_437_300, 626, 156),
    "unireplknet_f": ((2, 2, 6, 2), (48, 96, 192, 384), 6_489_328, 6_235_216, 626, 156),
    "unireplknet_p": ((2, 2, 6, 2), (64, 128, 256, 512), 11_080_520, 10_741_704, 626, 156),
    "unireplknet_n": ((2, 2, 8, 2), (80, 160, 320, 640), 18_818_880, 18_318_560, 738, 178),
    "unireplknet_t": ((3, 3, 18, 3), (80, 160, 320, 640), 31_693_420, 31_037_980, 1116, 321),
    "unireplknet_s": ((3, 3, 27, 3), (96, 192, 384, 768), 56_456_704, 55_645_984, 1305, 420),
    "unireplknet_b": ((3, 3, 27, 3), (128, 256, 512, 1024), 99_089_416, 98_008_456, 1305, 420),
    "unireplknet_l": ((3, 3, 27, 3), (192, 384, 768, 1536), 220_076_056, 218_454_616, 1305, 420),
    "unireplknet_xl": ((3, 3, 27, 3), (256, 512, 1024, 2048), 388_690_984, 386_529_064, 1305, 420),
}
DRB = {13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5))}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _kernels(depths: tuple[int, ...]) -> list[list[int]]:
    stage3 = {6: [13] * 6, 8: [13] * 8, 18: [13, 3] * 9, 27: [13, 3, 3] * 9}[depths[2]]
    return [[3] * depths[0], [13] * depths[1], stage3, [13] * depths[3]]


def _official_shapes(depths: tuple[int, ...], dims: tuple[int, ...], deploy: bool) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the official UniRepLKNet (num_classes 1000, in_chans 3), from the spec's description."""
    shapes: dict[str, tuple[int, ...]] = {}
    half = dims[0] // 2
    shapes.update(
        {
            "downsample_layers.0.0.weight": (half, 3, 3, 3),
            "downsample_layers.0.0.bias": (half,),
            "downsample_layers.0.1.weight": (half,),
            "downsample_layers.0.1.bias": (half,),
            "downsample_layers.0.3.weight": (dims[0], half, 3, 3),
            "downsample_layers.0.3.bias": (dims[0],),
            "downsample_layers.0.4.weight": (dims[0],),
            "downsample_layers.0.4.bias": (dims[0],),
        }
    )
    for i in range(1, 4):
        shapes.update(
            {
                f"downsample_layers.{i}.0.weight": (dims[i], dims[i - 1], 3, 3),
                f"downsample_layers.{i}.0.bias": (dims[i],),
                f"downsample_layers.{i}.1.weight": (dims[i],),
                f"downsample_layers.{i}.1.bias": (dims[i],),
            }
        )
    for s, kernels in enumerate(_kernels(depths)):
        c = dims[s]
        for b, k in enumerate(kernels):
            p = f"stages.{s}.{b}."
            if not deploy:
                shapes[p + "gamma"] = (c,)
            if k == 13 and deploy:
                shapes.update({p + "dwconv.lk_origin.weight": (c, 1, 13, 13), p + "dwconv.lk_origin.bias": (c,)})
            elif k == 13:
                shapes[p + "dwconv.lk_origin.weight"] = (c, 1, 13, 13)
                shapes.update({f"{p}dwconv.origin_bn.{n}": (c,) if n != "num_batches_tracked" else () for n in BN})
                for kk, r in DRB[13]:
                    shapes[f"{p}dwconv.dil_conv_k{kk}_{r}.weight"] = (c, 1, kk, kk)
                    shapes.update(
                        {f"{p}dwconv.dil_bn_k{kk}_{r}.{n}": (c,) if n != "num_batches_tracked" else () for n in BN}
                    )
            else:
                shapes[p + "dwconv.weight"] = (c, 1, 3, 3)
                if deploy:
                    shapes[p + "dwconv.bias"] = (c,)
            if not deploy:
                shapes.update({f"{p}norm.{n}": (c,) if n != "num_batches_tracked" else () for n in BN})
            shapes.update(
                {
                    p + "se.down.weight": (c // 4, c, 1, 1),
                    p + "se.down.bias": (c // 4,),
                    p + "se.up.weight": (c, c // 4, 1, 1),
                    p + "se.up.bias": (c,),
                    p + "pwconv1.1.weight": (4 * c, c),
                    p + "pwconv1.1.bias": (4 * c,),
                    p + "act.1.gamma": (1, 1, 1, 4 * c),
                    p + "pwconv2.0.weight": (c, 4 * c),
                }
            )
            if deploy:
                shapes[p + "pwconv2.0.bias"] = (c,)
            else:
                shapes[p + "act.1.beta"] = (1, 1, 1, 4 * c)
                shapes.update({f"{p}pwconv2.2.{n}": (c,) if n != "num_batches_tracked" else () for n in BN})
    shapes.update(
        {"norm.weight": (dims[3],), "norm.bias": (dims[3],), "head.weight": (1000, dims[3]), "head.bias": (1000,)}
    )
    return shapes


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_keys_shapes_and_param_counts(variant: str) -> None:
    depths, dims, train_params, deploy_params, train_keys, deploy_keys = VARIANTS[variant]
    with torch.device("meta"):
        model = create_model(variant)
        deploy = create_model(variant, deploy=True)
    for form, expected_keys, expected_params in (
        (model, train_keys, train_params),
        (deploy, deploy_keys, deploy_params),
    ):
        state = form.state_dict()
        assert len(state) == expected_keys
        assert {k: tuple(v.shape) for k, v in state.items()} == _official_shapes(depths, dims, form is deploy)
        assert sum(p.numel() for p in form.parameters()) == expected_params
    assert get_pretrained_cfg(variant).num_params == train_params
    model.reparameterize()  # the re-parameterized model has the deploy build's keys, shapes and order
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in deploy.state_dict().items()
    ]


@pytest.mark.parametrize("name", ["unireplknet_s.in22k", "unireplknet_xl.in22k"])
def test_in22k_cfg_builds_a_21841_class_model_with_its_num_params(name: str) -> None:
    cfg = get_pretrained_cfg(name)
    with torch.device("meta"):
        model = create_model(name)
    assert model.head.out_features == cfg.num_classes == 21841
    assert sum(p.numel() for p in model.parameters()) == cfg.num_params
