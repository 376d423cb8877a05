import torch

from cinecube.diffusion import flow_interpolate, flow_timesteps
from cinecube.sampling import classifier_free_guidance, euler, heun


def exact_velocity_for_point(target):
    """The exact flow velocity when the data is the single point `target`."""
    return lambda z, t: (z - target) / t.clamp(min=1e-6)


def test_euler_reaches_a_point_mass_exactly():
    torch.manual_seed(0)
    target = torch.randn(5, 3)
    out = euler(exact_velocity_for_point(target), torch.randn(5, 3), flow_timesteps(8, 2.0))
    torch.testing.assert_close(out, target, atol=1e-5, rtol=1e-5)


def test_heun_is_more_accurate_than_euler_on_a_gaussian():
    """Data N(0, s^2): the exact velocity is linear in z; compare with the exact ODE solution."""
    s = 0.3
    noise = torch.linspace(-2, 2, 11)[:, None]

    def velocity(z, t):
        var = (1 - t) ** 2 * s**2 + t**2
        return z * (t - (1 - t) * s**2) / var

    exact = noise * s  # the flow ODE maps noise n to s * n
    grid = flow_timesteps(6)
    err_euler = (euler(velocity, noise, grid) - exact).abs().max()
    err_heun = (heun(velocity, noise, grid) - exact).abs().max()
    assert err_heun < 0.6 * err_euler  # the last step to t = 0 is Euler in both


def test_samplers_are_stateless_and_deterministic():
    target = torch.randn(4, 2)
    noise = torch.randn(4, 2)
    grid = flow_timesteps(5)
    a = heun(exact_velocity_for_point(target), noise, grid)
    b = heun(exact_velocity_for_point(target), noise.clone(), grid)
    assert torch.equal(a, b)


def test_conditioning_mask_keeps_clean_tokens_and_gives_them_t0():
    target = torch.randn(6, 2)
    clean = torch.randn(6, 2)
    mask = torch.tensor([True, True, False, False, False, False])
    seen_t = []

    def velocity(z, t):
        seen_t.append(t.clone())
        torch.testing.assert_close(z[mask], clean[mask])
        return (z - target) / t.clamp(min=1e-6)

    out = euler(velocity, torch.randn(6, 2), flow_timesteps(4), cond_mask=mask, cond_value=clean)
    torch.testing.assert_close(out[mask], clean[mask])
    torch.testing.assert_close(out[~mask], target[~mask], atol=1e-5, rtol=1e-5)
    assert all((t[mask] == 0).all() and (t[~mask] > 0).all() for t in seen_t)


def test_classifier_free_guidance():
    c, u = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    assert torch.equal(classifier_free_guidance(c, u, 1.0), c)
    assert torch.equal(classifier_free_guidance(c, u, 0.0), u)
    assert torch.equal(classifier_free_guidance(c, u, 3.0), torch.tensor([3.0, 4.0]))
    x0, n = torch.zeros(2), torch.ones(2)
    assert torch.equal(flow_interpolate(x0, n, torch.tensor(0.25)), torch.full((2,), 0.25))


def test_x0_prediction_model_samples_all_the_noise_away():
    """With a perfect x0 predictor, sampling must end exactly on the data (no clamp left-overs)."""
    from cinecube.config import DiffusionConfig
    from cinecube.diffusion import Objective

    torch.manual_seed(1)
    target = torch.randn(8, 3)
    objective = Objective(DiffusionConfig(path="flow", prediction="x0"))
    velocity = lambda z, t: objective.velocity(lambda x, tt: target, z, t)  # noqa: E731
    out = euler(velocity, torch.randn(8, 3), flow_timesteps(10, 2.0))
    torch.testing.assert_close(out, target, atol=1e-5, rtol=1e-5)
