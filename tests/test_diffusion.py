import math

import pytest
import torch

from cinecube.config import DiffusionConfig
from cinecube.diffusion import (
    Objective,
    flow_interpolate,
    flow_noise_from_velocity,
    flow_timesteps,
    flow_velocity_from_noise,
    flow_velocity_from_x0,
    flow_x0_from_velocity,
    resolution_shift,
    shift_time,
    vp_alpha_sigma,
    vp_time_from_flow_time,
    vp_x0_noise,
)


def test_flow_converters_agree():
    torch.manual_seed(0)
    x0, noise = torch.randn(50, 12), torch.randn(50, 12)
    t = torch.rand(50, 1) * 0.9 + 0.05
    x_t = flow_interpolate(x0, noise, t)
    v = noise - x0
    torch.testing.assert_close(flow_velocity_from_x0(x_t, x0, t), v, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(flow_velocity_from_noise(x_t, noise, t), v, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(flow_x0_from_velocity(x_t, v, t), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flow_noise_from_velocity(x_t, v, t), noise, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prediction", ["noise", "v", "x0"])
def test_vp_predictions_give_the_same_flow_velocity(prediction):
    """An exact vp network (any prediction type) yields the exact flow velocity."""
    torch.manual_seed(1)
    x0, noise = torch.randn(40, 8), torch.randn(40, 8)
    t = torch.rand(40, 1) * 0.9 + 0.05  # flow time
    z = flow_interpolate(x0, noise, t)
    objective = Objective(DiffusionConfig(path="vp", prediction=prediction))

    def exact_vp_model(x_s, s):
        alpha, sigma = vp_alpha_sigma(s)
        torch.testing.assert_close(x_s, alpha * x0 + sigma * noise, atol=1e-4, rtol=1e-4)
        return {"noise": noise, "v": alpha * noise - sigma * x0, "x0": x0}[prediction]

    v = objective.velocity(exact_vp_model, z, t)
    torch.testing.assert_close(v, noise - x0, atol=2e-3, rtol=2e-3)


def test_vp_x0_noise_round_trip():
    torch.manual_seed(2)
    x0, noise = torch.randn(10, 4), torch.randn(10, 4)
    s = torch.rand(10, 1) * 0.9 + 0.05
    alpha, sigma = vp_alpha_sigma(s)
    x_s = alpha * x0 + sigma * noise
    for prediction, out in (("noise", noise), ("v", alpha * noise - sigma * x0), ("x0", x0)):
        got_x0, got_noise = vp_x0_noise(x_s, out, s, prediction)
        torch.testing.assert_close(got_x0, x0, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got_noise, noise, atol=1e-4, rtol=1e-4)
    assert float(vp_time_from_flow_time(torch.tensor(0.5))) == pytest.approx(0.5)


@pytest.mark.parametrize("path,prediction", [("flow", "velocity"), ("flow", "x0"), ("vp", "noise"), ("vp", "v")])
def test_loss_is_zero_for_the_exact_prediction(path, prediction):
    torch.manual_seed(3)
    objective = Objective(DiffusionConfig(path=path, prediction=prediction))
    x0, noise = torch.randn(20, 6), torch.randn(20, 6)
    t = torch.rand(20, 1) * 0.8 + 0.1
    x_t = objective.noisy(x0, noise, t)
    if path == "flow":
        exact = noise - x0 if prediction == "velocity" else x0
    else:
        alpha, sigma = vp_alpha_sigma(t)
        exact = noise if prediction == "noise" else alpha * noise - sigma * x0
    assert objective.loss(exact, x0, noise, x_t, t).max() < 1e-8
    assert objective.loss(exact + 0.1, x0, noise, x_t, t).mean() > 1e-4


def test_unknown_objectives_are_refused():
    with pytest.raises(ValueError, match="allowed"):
        Objective(DiffusionConfig(path="flow", prediction="noise"))
    with pytest.raises(ValueError, match="allowed"):
        Objective(DiffusionConfig(path="edm"))


def test_timestep_shift_and_sampling():
    t = torch.linspace(0, 1, 11)
    shifted = shift_time(t, 3.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:-1] > t[1:-1]).all()  # more noise everywhere
    config = DiffusionConfig()
    assert resolution_shift(64, config) == 1.0
    assert resolution_shift(1024, config) == pytest.approx(2.0)
    assert resolution_shift(10**6, config) == config.shift_max
    objective = Objective(config)
    g = torch.Generator().manual_seed(0)
    small = objective.sample_timesteps(torch.full((4000,), 64), g)
    large = objective.sample_timesteps(torch.full((4000,), 1024), g)
    assert ((small > 0) & (small < 1)).all()
    assert large.mean() > small.mean() + 0.1
    grid = flow_timesteps(10, 2.0)
    assert grid[0] == 1 and grid[-1] == 0 and (grid[1:] < grid[:-1]).all()
    assert math.isclose(float(small.mean()), 0.5, abs_tol=0.03)  # logit-normal(0, 1) is centred


def test_x0_loss_weighting_equals_clean_video_mse():
    torch.manual_seed(4)
    x0, noise = torch.randn(30, 5), torch.randn(30, 5)
    t = torch.rand(30, 1) * 0.9 + 0.1
    objective = Objective(DiffusionConfig(path="flow", prediction="x0", loss_weighting="x0"))
    x_t = objective.noisy(x0, noise, t)
    guess = x0 + 0.3 * torch.randn(30, 5)
    torch.testing.assert_close(objective.loss(guess, x0, noise, x_t, t), (guess - x0) ** 2)
    with pytest.raises(ValueError, match="loss_weighting"):
        Objective(DiffusionConfig(loss_weighting="snr"))


def test_uniform_fraction_covers_the_noisy_end():
    g = torch.Generator().manual_seed(0)
    tokens = torch.full((20000,), 256)
    plain = Objective(DiffusionConfig()).sample_timesteps(tokens, g)
    mixed = Objective(DiffusionConfig(uniform_fraction=0.5)).sample_timesteps(tokens, g)
    assert (plain > 0.95).float().mean() < 0.01
    assert (mixed > 0.95).float().mean() > 0.02
