"""STORM's world model: the cached transformer equals the full causal pass, samples are
one-hot with straight-through gradients, imagination has the shapes the actor-critic
reads (open loop when given the actions), and images go through convolutions and come
back at their own size."""

import numpy as np
import pytest
import torch

from reasonrl.control.networks import ConvDecoder, ConvEncoder
from reasonrl.control.world_model import UNIMIX, WorldModel, imagine, observation_kind


def _model():
    torch.manual_seed(0)
    return WorldModel(obs_shape=4, n_actions=2, groups=4, classes=8, d_model=32, layers=2, heads=4, hidden=32)


def test_cached_steps_equal_the_full_causal_pass():
    model = _model().eval()
    z = model.sample(model.posterior(torch.randn(3, 10, 4)))
    a = torch.randint(0, 2, (3, 10))
    with torch.no_grad():
        full, _ = model.hidden(z, a)
        h, cache = model.hidden(z[:, :4], a[:, :4])
        steps = [h]
        for t in range(4, 10):
            h, cache = model.hidden(z[:, t : t + 1], a[:, t : t + 1], cache)
            steps.append(h)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    # causal: changing the last token changes no earlier output
    z2 = z.clone()
    z2[:, -1] = z2[:, -1].flip(-1)
    with torch.no_grad():
        torch.testing.assert_close(model.hidden(z2, a)[0][:, :-1], full[:, :-1])


def test_samples_are_one_hot_per_group_with_straight_through_gradients():
    model = _model()
    logits = model.posterior(torch.randn(5, 4))
    assert logits.shape == (5, 4, 8)
    assert logits.exp().min() >= UNIMIX / 8 * 0.999  # the uniform share: no class at p = 0
    z = model.sample(logits)
    assert z.shape == (5, 32)
    torch.testing.assert_close(z.detach().view(5, 4, 8).sum(-1), torch.ones(5, 4))
    assert torch.allclose(z.detach(), z.detach().round(), atol=1e-6)  # one-hot (probs − probs: rounding)
    z.sum().backward()  # the gradient reaches the encoder through the probabilities
    assert model.encoder.layers[0].weight.grad is not None


def test_imagination_shapes_and_open_loop_actions():
    model = _model()
    z = model.sample(model.posterior(torch.randn(6, 5, 4)))
    actor = torch.nn.Linear(32 + 32, 2)
    im = imagine(model, actor, z, torch.randint(0, 2, (6, 5)), horizon=7)
    assert im.states.shape == (6, 8, 64) and im.actions.shape == (6, 7)
    assert im.rewards.shape == im.continues.shape == (6, 7)
    assert ((im.continues > 0) & (im.continues < 1)).all()
    planned = torch.randint(0, 2, (6, 7))
    assert torch.equal(
        imagine(model, actor, z, torch.zeros(6, 5, dtype=torch.long), 7, planned).actions, planned
    )


@pytest.mark.parametrize("shape", [(10, 10, 4), (64, 64, 3), (13, 11, 2), (5, 5, 1)])
def test_convolutions_halve_down_to_6_and_the_decoder_restores_the_exact_size(shape):
    encoder = ConvEncoder(shape)
    assert max(encoder.out_shape[1:]) <= max(6, min(shape[:2]))  # ... and never below 6 unless it began so
    features = encoder(torch.rand(2, 3, *shape))
    assert features.shape == (2, 3, encoder.out_features)
    assert ConvDecoder(encoder, 7, shape[-1])(torch.rand(2, 3, 7)).shape == (2, 3, *shape)


def test_observation_kinds_and_what_the_model_reads():
    assert observation_kind((4,), np.float32) == "vector"
    assert observation_kind((10, 10, 4), np.bool_) == "binary"
    assert observation_kind((64, 64, 3), np.uint8) == "pixels"
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        observation_kind((3, 4), np.float32)
    torch.manual_seed(0)
    model = WorldModel((10, 10, 4), 3, groups=4, classes=8, d_model=32, hidden=32, kind="binary")
    assert model.reconstruction == "bernoulli"
    frames = torch.rand(2, 5, 10, 10, 4) > 0.5  # bool, as MinAtar returns them and the replay keeps them
    z = model.sample(model.posterior(frames))
    assert z.shape == (2, 5, 32) and model.decoder(z).shape == (2, 5, 10, 10, 4)
    pixels = WorldModel((16, 16, 3), 3, groups=4, classes=8, d_model=32, hidden=32, kind="pixels")
    image = torch.full((1, 16, 16, 3), 255, dtype=torch.uint8)
    assert pixels.prepare(image).max().item() == 1.0  # 8-bit values scaled to [0, 1]
