import pytest
import torch

from reasonrl.losses import (
    discounted_returns,
    generalized_advantage_estimation,
    group_advantages,
    rloo_advantages,
    vtrace,
)

from .conftest import rand_dones, randn


def ref_returns(r, d, boot, gamma):
    T, B = r.shape
    out = torch.zeros(T, B, dtype=torch.float64)
    for b in range(B):
        g = float(boot[b])
        for t in reversed(range(T)):
            g = float(r[t, b]) + gamma * (1 - float(d[t, b])) * g
            out[t, b] = g
    return out


def ref_gae(r, v, d, boot, gamma, lam):
    T, B = r.shape
    adv = torch.zeros(T, B, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            # A_t = Σ_k (γλ)^k δ_{t+k}, stopping after the first done
            total, weight = 0.0, 1.0
            for k in range(t, T):
                nv = float(v[k + 1, b]) if k + 1 < T else float(boot[b])
                delta = float(r[k, b]) + gamma * (1 - float(d[k, b])) * nv - float(v[k, b])
                total += weight * delta
                if d[k, b]:
                    break
                weight *= gamma * lam
            adv[t, b] = total
    return adv


def test_discounted_returns(gen):
    r, d, boot = randn(gen, 12, 3), rand_dones(gen, 12, 3), randn(gen, 3)
    torch.testing.assert_close(discounted_returns(r, d, boot, 0.97), ref_returns(r, d, boot, 0.97))


def test_discounted_returns_hand_worked():
    # r = [1, 2, 3], γ = 0.5, no done, bootstrap 4: G_2 = 3 + 2 = 5, G_1 = 2 + 2.5 = 4.5, G_0 = 1 + 2.25
    r = torch.tensor([[1.0], [2.0], [3.0]])
    out = discounted_returns(r, torch.zeros(3, 1), torch.tensor([4.0]), 0.5)
    assert out.squeeze(1).tolist() == [3.25, 4.5, 5.0]


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_against_explicit_sum(gen, lam):
    r, v, d, boot = randn(gen, 16, 4), randn(gen, 16, 4), rand_dones(gen, 16, 4), randn(gen, 4)
    adv, ret = generalized_advantage_estimation(r, v, d, boot, 0.99, lam)
    expected = ref_gae(r, v, d, boot, 0.99, lam)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + v)


def test_gae_bool_dones_and_padding_cut(gen):
    # A sequence that ends at t=2 (done) must not see the padding after it.
    r, v = randn(gen, 6, 1), randn(gen, 6, 1)
    d = torch.tensor([[0], [0], [1], [0], [0], [0]], dtype=torch.bool)
    adv, _ = generalized_advantage_estimation(r, v, d, torch.zeros(1, dtype=torch.float64), 1.0, 0.9)
    r2, v2 = r.clone(), v.clone()
    r2[3:], v2[3:] = 100.0, -100.0
    adv2, _ = generalized_advantage_estimation(r2, v2, d, torch.zeros(1, dtype=torch.float64), 1.0, 0.9)
    torch.testing.assert_close(adv[:3], adv2[:3])


def test_time_major_shape_errors(gen):
    with pytest.raises(ValueError, match="shape mismatch"):
        generalized_advantage_estimation(
            randn(gen, 5, 2), randn(gen, 5, 3), torch.zeros(5, 2), torch.zeros(2), 0.9, 0.9
        )
    with pytest.raises(ValueError, match="bootstrap_value must have shape"):
        discounted_returns(randn(gen, 5, 2), torch.zeros(5, 2), torch.zeros(3), 0.9)
    with pytest.raises(ValueError, match="time-major"):
        discounted_returns(randn(gen, 5), torch.zeros(5), torch.zeros(()), 0.9)


def ref_group(r, g, scale, eps=1e-4):
    out = []
    values = r.tolist()
    mean_all = sum(values) / len(values)
    std_all = (sum((x - mean_all) ** 2 for x in values) / (len(values) - 1)) ** 0.5
    for i in range(0, len(values), g):
        grp = values[i : i + g]
        m = sum(grp) / g
        s = (sum((x - m) ** 2 for x in grp) / (g - 1)) ** 0.5
        for x in grp:
            if scale == "none":
                out.append(x - m)
            else:
                out.append((x - m) / ((s if scale == "group" else std_all) + eps))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages(gen, scale):
    r = (torch.rand(24, generator=gen, dtype=torch.float64) > 0.5).double() + randn(gen, 24) * 0.1
    torch.testing.assert_close(group_advantages(r, 6, scale), ref_group(r, 6, scale))


def test_group_advantages_constant_group_is_zero():
    r = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    adv = group_advantages(r, 4)
    assert torch.equal(adv[:4], torch.zeros(4))
    # group 2: mean 0.5, unbiased std sqrt(1/3)=0.57735 -> ±0.5/0.57745
    torch.testing.assert_close(adv[4:], torch.tensor([-1, 1, -1, 1.0]) * 0.5 / (3**-0.5 + 1e-4))


def test_group_errors():
    with pytest.raises(ValueError, match="does not divide"):
        group_advantages(torch.zeros(10), 4)
    with pytest.raises(ValueError, match="empty batch"):
        group_advantages(torch.zeros(0), 4)
    with pytest.raises(ValueError, match="flat"):
        group_advantages(torch.zeros(2, 4), 4)
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo_advantages(torch.zeros(4), 1)
    with pytest.raises(TypeError, match="floating-point"):
        group_advantages(torch.zeros(8, dtype=torch.long), 4)


def test_rloo(gen):
    r = randn(gen, 12)
    expected = []
    for i in range(12):
        g = i // 4 * 4
        others = [float(r[j]) for j in range(g, g + 4) if j != i]
        expected.append(float(r[i]) - sum(others) / 3)
    torch.testing.assert_close(rloo_advantages(r, 4), torch.tensor(expected, dtype=torch.float64))


def test_vtrace_hand_worked_impala_eq1():
    # IMPALA eq. 1 on T=3, B=1. γ_t = 0.9, V = [0.5, 1.0, 1.5], V(x_3) = 2, r = [1, 0, 2],
    # π/μ = [2, 0.5, 1] with ρ̄ = c̄ = 1  =>  ρ = c = [1, 0.5, 1].
    # δ_0 = 1·(1 + 0.9·1.0 − 0.5) = 1.4;  δ_1 = 0.5·(0 + 0.9·1.5 − 1.0) = 0.175
    # δ_2 = 1·(2 + 0.9·2 − 1.5) = 2.3
    # v_2 = 1.5 + 2.3 = 3.8
    # v_1 = 1.0 + 0.175 + 0.9·0.5·2.3 = 2.21
    # v_0 = 0.5 + 1.4 + 0.9·1·0.175 + 0.81·1·0.5·2.3 = 2.989
    # pg_s = ρ_s (r_s + γ v_{s+1} − V_s): pg_0 = 1 + 0.9·2.21 − 0.5 = 2.489; pg_1 = 0.5·(0.9·3.8 − 1) = 1.21;
    # pg_2 = 2 + 0.9·2 − 1.5 = 2.3
    col = lambda xs: torch.tensor(xs, dtype=torch.float64).unsqueeze(1)  # noqa: E731
    behaviour = col([0.0, 0.0, 0.0])
    target = torch.log(col([2.0, 0.5, 1.0]))
    out = vtrace(
        behaviour,
        target,
        col([1.0, 0.0, 2.0]),
        col([0.9] * 3),
        col([0.5, 1.0, 1.5]),
        torch.tensor([2.0], dtype=torch.float64),
    )
    torch.testing.assert_close(out.vs.squeeze(1), torch.tensor([2.989, 2.21, 3.8], dtype=torch.float64))
    torch.testing.assert_close(
        out.pg_advantages.squeeze(1), torch.tensor([2.489, 1.21, 2.3], dtype=torch.float64)
    )


def ref_vtrace(mu, pi, r, disc, v, boot, rho_bar, c_bar):
    """Eq. 1 as a sum, not a recursion."""
    T, B = r.shape
    ratio = torch.exp(pi - mu)
    rho, c = ratio.clamp(max=rho_bar), ratio.clamp(max=c_bar)
    vs = torch.zeros(T, B, dtype=torch.float64)
    for b in range(B):
        vals = v[:, b].tolist() + [float(boot[b])]
        for s in range(T):
            total, coef = vals[s], 1.0
            for t in range(s, T):
                delta = float(rho[t, b]) * (float(r[t, b]) + float(disc[t, b]) * vals[t + 1] - vals[t])
                total += coef * delta
                coef *= float(disc[t, b]) * float(c[t, b])
            vs[s, b] = total
    return vs


def test_vtrace_against_sum_form(gen):
    T, B = 10, 3
    mu, pi = randn(gen, T, B) * 0.5, randn(gen, T, B) * 0.5
    disc = 0.95 * (1 - rand_dones(gen, T, B))
    r, v, boot = randn(gen, T, B), randn(gen, T, B), randn(gen, B)
    out = vtrace(mu, pi, r, disc, v, boot, rho_bar=1.0, c_bar=0.9)
    torch.testing.assert_close(out.vs, ref_vtrace(mu, pi, r, disc, v, boot, 1.0, 0.9))


def test_vtrace_rejects_c_above_rho(gen):
    x = randn(gen, 3, 2)
    with pytest.raises(ValueError, match="c_bar <= rho_bar"):
        vtrace(x, x, x, x, x, randn(gen, 2), rho_bar=1.0, c_bar=2.0)
