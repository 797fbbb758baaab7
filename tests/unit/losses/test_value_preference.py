import math

import pytest
import torch

from reasonrl.losses import dpo_loss, sac_temperature_loss, soft_bellman_target, soft_value, value_loss

from .conftest import randn


def test_value_loss_plain_and_clipped(gen):
    v, old, ret = randn(gen, 20), randn(gen, 20), randn(gen, 20)
    torch.testing.assert_close(value_loss(v, ret), 0.5 * (v - ret) ** 2)
    out = value_loss(v, ret, old, clip_range=0.2)
    for i in range(20):
        vc = float(old[i]) + min(max(float(v[i] - old[i]), -0.2), 0.2)
        exp = 0.5 * max((float(v[i]) - float(ret[i])) ** 2, (vc - float(ret[i])) ** 2)
        assert math.isclose(float(out[i]), exp, rel_tol=1e-12)
    with pytest.raises(ValueError, match="needs old_values"):
        value_loss(v, ret, clip_range=0.2)


def test_soft_bellman_target(gen):
    r, q1, q2, lp = randn(gen, 8), randn(gen, 8), randn(gen, 8), randn(gen, 8)
    d = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0], dtype=torch.bool)
    y = soft_bellman_target(r, d, q1, q2, lp, alpha=0.2, gamma=0.99)
    for i in range(8):
        exp = float(r[i]) + 0.99 * (1 - int(d[i])) * (min(float(q1[i]), float(q2[i])) - 0.2 * float(lp[i]))
        assert math.isclose(float(y[i]), exp, rel_tol=1e-12)


def test_sac_temperature_loss_gradient_direction(gen):
    log_alpha = torch.zeros((), dtype=torch.float64, requires_grad=True)
    # entropy −E[log π] = 0.5 is below the target 1.0: the loss must push α up (negative gradient)
    logp = torch.full((16,), -0.5, dtype=torch.float64)
    loss = sac_temperature_loss(log_alpha, logp, target_entropy=1.0)
    # J = −e^0 (−0.5 + 1.0) = −0.5 ; dJ/dlogα = −0.5
    assert math.isclose(loss.item(), -0.5)
    loss.backward()
    assert math.isclose(float(log_alpha.grad), -0.5)
    with pytest.raises(ValueError, match="scalar"):
        sac_temperature_loss(torch.zeros(2, dtype=torch.float64), logp, 1.0)


def test_soft_value(gen):
    q = randn(gen, 4, 6)
    for i in range(4):
        exp = 0.5 * math.log(sum(math.exp(x / 0.5) for x in q[i].tolist()))
        assert math.isclose(float(soft_value(q, 0.5)[i]), exp, rel_tol=1e-12)
    torch.testing.assert_close(soft_value(q, 0.0), q.amax(-1))


def ref_dpo(pc, pr, rc, rr, beta, loss_type, ls, lc=None, lr=None):
    out = []
    logsig = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    for i in range(pc.numel()):
        cl, rl = float(pc[i] - rc[i]), float(pr[i] - rr[i])
        d = cl - rl
        if loss_type == "sigmoid":
            out.append(-(1 - ls) * logsig(beta * d) - ls * logsig(-beta * d))
        elif loss_type == "hinge":
            out.append(max(0.0, 1 - beta * d))
        elif loss_type == "ipo":
            if lc is not None:
                d = cl / float(lc[i]) - rl / float(lr[i])
            out.append((d - 1 / (2 * beta)) ** 2)
        else:
            out.append((-(1 - ls) * logsig(beta * d) + ls * logsig(-beta * d)) / (1 - 2 * ls))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    "loss_type, ls", [("sigmoid", 0.0), ("sigmoid", 0.1), ("hinge", 0.0), ("ipo", 0.0), ("robust", 0.2)]
)
def test_dpo_family(gen, loss_type, ls):
    pc, pr, rc, rr = (randn(gen, 10) * 3 - 20 for _ in range(4))
    out = dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type=loss_type, label_smoothing=ls)
    torch.testing.assert_close(out.losses, ref_dpo(pc, pr, rc, rr, 0.1, loss_type, ls))
    torch.testing.assert_close(out.chosen_rewards, 0.1 * (pc - rc))
    torch.testing.assert_close(out.margins, 0.1 * (pc - rc) - 0.1 * (pr - rr))
    assert out.accuracies.tolist() == [float(m > 0) for m in out.margins]


def test_ipo_length_normalised(gen):
    pc, pr, rc, rr = (randn(gen, 6) - 10 for _ in range(4))
    lc, lr = torch.randint(1, 20, (6,), generator=gen), torch.randint(1, 20, (6,), generator=gen)
    out = dpo_loss(pc, pr, rc, rr, 0.5, "ipo", chosen_lengths=lc, rejected_lengths=lr)
    torch.testing.assert_close(out.losses, ref_dpo(pc, pr, rc, rr, 0.5, "ipo", 0, lc, lr))


def test_dpo_errors(gen):
    x = randn(gen, 4)
    with pytest.raises(ValueError, match="loss_type must be"):
        dpo_loss(x, x, x, x, loss_type="kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(x, x, x, x, label_smoothing=0.5)
    with pytest.raises(ValueError, match="shape mismatch"):
        dpo_loss(x, randn(gen, 5), x, x)
    with pytest.raises(ValueError, match="one value per pair"):
        y = randn(gen, 2, 2)
        dpo_loss(y, y, y, y)
