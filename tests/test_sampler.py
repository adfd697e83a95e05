"""DDIM sampler and classifier-free guidance on a randomly initialised denoiser."""

import pytest
import torch

from idream.core.diffusion import Diffusion, DiffusionConfig
from idream.core.model import Denoiser, ModelConfig
from idream.core.sampler import DDIMSampler, initial_noise, sample

D, L, B = 16, 5, 4


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(dim=D, width=32, depth=2, heads=4, history_len=L, dropout=0.0))
    torch.nn.init.normal_(model.final.linear.weight, std=0.5)  # not the zero init: outputs differ
    model.eval()
    diffusion = Diffusion(DiffusionConfig(T=100))
    hist = torch.randn(B, L, D)
    valid = torch.ones(B, L, dtype=torch.bool)
    valid[0, :3] = False  # a short history
    cond = {"history": hist, "history_valid": valid, "intention": torch.randn(B, D),
            "has_intention": torch.tensor([True, True, False, True])}
    return model, diffusion, cond


def test_timesteps():
    s = DDIMSampler(Diffusion(DiffusionConfig(T=100)))
    assert s.set_timesteps(1).tolist() == [99]
    ts = s.set_timesteps(5).tolist()
    assert ts[0] == 99 and ts[-1] == 0 and ts == sorted(ts, reverse=True) and len(set(ts)) == 5
    assert len(s.set_timesteps(100)) == 100
    for bad in (0, 101):
        with pytest.raises(ValueError):
            s.set_timesteps(bad)


@pytest.mark.parametrize("T", [10, 100, 1000, 2000])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_ends_in_noise(T, schedule):
    a = Diffusion(DiffusionConfig(T=T, schedule=schedule)).alphas_cumprod
    assert a[0] > 0.9 and a[-1] < 1e-2 and bool((a[1:] < a[:-1]).all())


def test_one_step_is_guided_x0_at_T_minus_1(setup):
    model, diffusion, cond = setup
    out = sample(model, diffusion, cond, steps=1, w=1.5, rho=2.0, seed=7)
    x_T = initial_noise(B, D, 7)
    t = torch.full((B,), diffusion.T - 1)
    with torch.no_grad():
        u = model(x_T, t, cond["history"], cond["history_valid"], torch.zeros(B, dtype=torch.bool),
                  cond["intention"], torch.zeros(B, dtype=torch.bool))
        c_h = model(x_T, t, cond["history"], cond["history_valid"], torch.ones(B, dtype=torch.bool),
                    cond["intention"], torch.zeros(B, dtype=torch.bool))
        c_hq = model(x_T, t, cond["history"], cond["history_valid"], torch.ones(B, dtype=torch.bool),
                     cond["intention"], torch.ones(B, dtype=torch.bool))
    c_hq[~cond["has_intention"]] = c_h[~cond["has_intention"]]
    expected = u + 2.5 * (c_h - u) + 2.0 * (c_hq - c_h)
    assert torch.allclose(out, expected, atol=1e-5)


def test_seeded(setup):
    model, diffusion, cond = setup
    a = sample(model, diffusion, cond, steps=10, w=1.0, rho=1.0, seed=3)
    b = sample(model, diffusion, cond, steps=10, w=1.0, rho=1.0, seed=3)
    c = sample(model, diffusion, cond, steps=10, w=1.0, rho=1.0, seed=4)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_rho_zero_equals_no_intention(setup):
    model, diffusion, cond = setup
    none = dict(cond, has_intention=torch.zeros(B, dtype=torch.bool))
    for steps in (1, 8):
        a = sample(model, diffusion, cond, steps=steps, w=0.7, rho=0.0, seed=1)
        b = sample(model, diffusion, none, steps=steps, w=0.7, rho=3.0, seed=1)
        assert torch.allclose(a, b, atol=1e-5)
    # and a non-zero ρ does change the rows that have an intention
    c = sample(model, diffusion, cond, steps=1, w=0.7, rho=1.0, seed=1)
    assert not torch.allclose(a[1], c[1])


def test_w0_rho0_is_history_conditional(setup):
    model, diffusion, cond = setup
    out = sample(model, diffusion, cond, steps=1, w=0.0, rho=0.0, seed=5)
    x_T = initial_noise(B, D, 5)
    with torch.no_grad():
        c_h = model(x_T, torch.full((B,), diffusion.T - 1), cond["history"], cond["history_valid"],
                    torch.ones(B, dtype=torch.bool), cond["intention"], torch.zeros(B, dtype=torch.bool))
    assert torch.allclose(out, c_h, atol=1e-5)


def test_path_ends_at_oracle(setup):
    model, diffusion, cond = setup
    x, path = sample(model, diffusion, cond, steps=6, w=1.0, rho=1.0, seed=2, return_path=True)
    assert len(path) == 6 and torch.allclose(path[-1], x, atol=1e-5)


def test_sweep_with_shared_noise_matches_single_calls(setup):
    model, diffusion, cond = setup
    rep = {k: v[1:2].expand(3, *v.shape[1:]) for k, v in cond.items()}
    rhos = torch.tensor([0.0, 1.0, 4.0])
    batched = sample(model, diffusion, rep, steps=4, w=0.5, rho=rhos, seed=9, shared_noise=True)
    for i, r in enumerate(rhos.tolist()):
        single = sample(model, diffusion, {k: v[:1] for k, v in rep.items()}, steps=4, w=0.5,
                        rho=r, seed=9)
        assert torch.allclose(batched[i], single[0], atol=1e-5)
    assert not torch.allclose(batched[0], batched[2])
