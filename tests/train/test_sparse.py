"""Dynamic sparse training: masks hold their density, stay exact zeros, resume exactly and agree across ranks."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from unilk.errors import ConfigError
from unilk.train.sparse import (
    DynamicSparsity,
    SparsityConfig,
    _erk_densities,
    masked_ema_update,
    nonzero_param_count,
    prune_rate_at,
)


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 7, padding=3, groups=16),
        nn.BatchNorm2d(16),
        nn.Conv2d(16, 32, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 12, 12, generator=g), torch.randint(0, 4, (8,), generator=g)


def _train(
    model: nn.Module,
    sparsity: DynamicSparsity,
    optimizer: torch.optim.Optimizer,
    steps: range,
    autocast: bool = False,
    check=None,
) -> None:
    for step in steps:
        x, y = _batch(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        sparsity.after_optimizer_step(optimizer)
        optimizer.zero_grad()
        if check is not None:
            check()


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_density_holds_and_pruned_weights_are_exact_zeros(autocast: bool) -> None:
    model = _tiny_net()
    cfg = SparsityConfig(sparsity=0.4, init="snip", prune_rate=0.5, update_frequency=3)
    sparsity = DynamicSparsity(model, cfg, total_steps=60)
    x, y = _batch(999)
    sparsity.init_masks(snip_loss=lambda m: F.cross_entropy(m(x), y))
    targets = {row["name"]: row["density"] for row in sparsity.density_report()}
    assert targets, "some layer must be masked"
    params = dict(model.named_parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    initial_masks = {n: m.clone() for n, m in sparsity.masks.items()}

    def check() -> None:
        for name, mask in sparsity.masks.items():
            assert torch.all(params[name][~mask] == 0), f"{name}: a pruned weight is not exactly zero"
            assert abs(float(mask.float().mean()) - targets[name]) <= 0.01

    _train(model, sparsity, optimizer, range(60), autocast=autocast, check=check)
    assert sparsity.step_count == 60
    changed = [not torch.equal(initial_masks[n], m) for n, m in sparsity.masks.items()]
    assert any(changed), "20 updates must have moved some mask"


def test_snip_and_dense_threshold() -> None:
    model = _tiny_net()
    sparsity = DynamicSparsity(model, SparsityConfig(sparsity=0.4, init="snip"), total_steps=10)
    x, y = _batch(1)
    sparsity.init_masks(snip_loss=lambda m: F.cross_entropy(m(x), y))
    masked = sum(m.numel() for m in sparsity.masks.values())
    active = sum(int(m.sum()) for m in sparsity.masks.values())
    candidates = [n for n, p in model.named_parameters() if p.dim() in (2, 4)]
    dense_numel = sum(p.numel() for n, p in model.named_parameters() if n in candidates and n not in sparsity.masks)
    # SNIP keeps 60 % of all candidate weights; layers above 0.99 are kept whole.
    total = masked + dense_numel
    assert (active + dense_numel) / total == pytest.approx(0.6, abs=0.02)
    with pytest.raises(ConfigError, match="snip_loss"):
        DynamicSparsity(model, SparsityConfig(init="snip"), total_steps=10).init_masks()


def test_erk_meets_the_overall_density_and_caps_at_one() -> None:
    shapes = {"a": torch.Size([8, 3, 3, 3]), "b": torch.Size([64, 64, 3, 3]), "c": torch.Size([10, 64])}
    densities = _erk_densities(shapes, 0.6)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(densities[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(0.6 * total)
    assert all(0 < d <= 1.0 for d in densities.values())
    assert densities["a"] == 1.0  # the smallest layer saturates first


def test_uniform_only_large_kernels() -> None:
    class WithLargeKernel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.large_kernel = nn.Conv2d(4, 4, 5, padding=2, groups=4, bias=False)
            self.proj = nn.Linear(4, 4)

    model = WithLargeKernel()
    cfg = SparsityConfig(sparsity=0.5, init="uniform", only_large_kernels=True)
    sparsity = DynamicSparsity(model, cfg, total_steps=10)
    sparsity.init_masks()
    assert list(sparsity.masks) == ["large_kernel.weight"]
    assert sparsity.overall_density() == 0.5


def test_prune_rate_schedule_is_cosine() -> None:
    assert prune_rate_at(0, 100, 0.5, 0.005) == pytest.approx(0.5)
    assert prune_rate_at(50, 100, 0.5, 0.005) == pytest.approx((0.5 + 0.005) / 2)
    assert prune_rate_at(100, 100, 0.5, 0.005) == pytest.approx(0.005)
    assert prune_rate_at(500, 100, 0.5, 0.005) == pytest.approx(0.005)


def test_resume_reproduces_masks_and_weights_exactly() -> None:
    cfg = SparsityConfig(sparsity=0.4, init="uniform", prune_rate=0.5, update_frequency=3, growth="random")

    def fresh() -> tuple[nn.Module, DynamicSparsity, torch.optim.Optimizer]:
        model = _tiny_net()
        sparsity = DynamicSparsity(model, cfg, total_steps=30)
        return model, sparsity, torch.optim.AdamW(model.parameters(), lr=1e-2)

    model_a, sparsity_a, opt_a = fresh()
    sparsity_a.init_masks()
    _train(model_a, sparsity_a, opt_a, range(30))

    model_b, sparsity_b, opt_b = fresh()
    sparsity_b.init_masks()
    _train(model_b, sparsity_b, opt_b, range(14))
    saved = copy.deepcopy(
        {"model": model_b.state_dict(), "opt": opt_b.state_dict(), "sparsity": sparsity_b.state_dict()}
    )
    model_c, sparsity_c, opt_c = fresh()
    model_c.load_state_dict(saved["model"])
    opt_c.load_state_dict(saved["opt"])
    sparsity_c.load_state_dict(saved["sparsity"])
    _train(model_c, sparsity_c, opt_c, range(14, 30))

    for name in sparsity_a.masks:
        assert torch.equal(sparsity_a.masks[name], sparsity_c.masks[name])
    for (name, a), c in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        assert torch.equal(a, c), name


def test_mask_optimizer_state_option() -> None:
    model = _tiny_net()
    cfg = SparsityConfig(init="uniform", mask_optimizer_state=True, update_frequency=1000)
    sparsity = DynamicSparsity(model, cfg, total_steps=10)
    sparsity.init_masks()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _train(model, sparsity, optimizer, range(2))
    params = dict(model.named_parameters())
    for name, mask in sparsity.masks.items():
        state = optimizer.state[params[name]]
        assert torch.all(state["exp_avg"][~mask] == 0)
        assert torch.all(state["exp_avg_sq"][~mask] == 0)


def test_gradient_growth_regrows_largest_gradients() -> None:
    layer = nn.Linear(10, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 11.0).view(1, 10))
    sparsity = DynamicSparsity(layer, SparsityConfig(init="uniform", sparsity=0.5, growth="gradient"), total_steps=1)
    sparsity.masks = {"weight": torch.tensor([[False] * 5 + [True] * 5])}
    layer.weight.grad = torch.tensor([[0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    sparsity.update_masks()  # p = 0.3 of 5 active -> prune 2 (the two smallest active: 6 and 7), regrow 2
    mask = sparsity.masks["weight"][0]
    assert not mask[5] or not mask[6]  # at most one of the pruned comes back
    assert mask[2]  # largest gradient among the zeros
    assert int(mask.sum()) == 5


def test_masked_ema_update_follows_the_official_rule() -> None:
    model, ema = nn.Linear(3, 1, bias=False), nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        ema.weight.copy_(torch.tensor([[0.5, 0.0, 7.0]]))
    mask = torch.tensor([[True, True, False]])
    masked_ema_update(ema, model, {"weight": mask}, decay=0.9)
    # active and tracked: plain EMA; active and fresh (ema == 0): restart at w; pruned: zero
    expected = torch.tensor([[0.9 * 0.5 + 0.1 * 1.0, 2.0, 0.0]])
    torch.testing.assert_close(ema.weight, expected)


def test_nonzero_param_count() -> None:
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0]]))
    assert nonzero_param_count(layer) == (8, 3)


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="update_frequency"):
        SparsityConfig.from_dict({"update_freq": 10})
    with pytest.raises(ConfigError, match="growth"):
        SparsityConfig(growth="SET")
    assert SparsityConfig.from_dict(SparsityConfig().to_dict()) == SparsityConfig()


def _ddp_worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _tiny_net()
    ddp = nn.parallel.DistributedDataParallel(model)
    # Different seeds per rank: only the broadcast makes the masks agree.
    cfg = SparsityConfig(init="uniform", update_frequency=2, growth="random", seed=rank)
    sparsity = DynamicSparsity(model, cfg, total_steps=6)
    sparsity.init_masks()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(6):
        x, y = _batch(100 * rank + step)
        F.cross_entropy(ddp(x), y).backward()
        optimizer.step()
        sparsity.after_optimizer_step(optimizer)
        optimizer.zero_grad()
    out[rank] = {n: m.clone() for n, m in sparsity.masks.items()}
    dist.destroy_process_group()


def test_masks_agree_across_two_ddp_processes() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_ddp_worker, args=(2, port, out), nprocs=2, join=True)
    assert set(out.keys()) == {0, 1}
    for name in out[0]:
        assert torch.equal(out[0][name], out[1][name]), name
