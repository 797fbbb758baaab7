"""Batched Monte-Carlo tree search in the shape of DeepMind's mctx, in torch.

The trees of a whole batch of environments are one struct of tensors indexed
``[batch, node]`` (``Tree``); a search is ``num_simulations`` rounds of

    select     every tree walks down from its root by pUCT until it reaches an action
               not expanded yet (all trees step together; finished walks wait)
    expand     one call of ``recurrent_fn`` on the batch: (embedding, action) ->
               reward, discount, prior logits, value, next embedding
    backup     every tree adds the new leaf's value along its path to the root

so the network sees one batch per simulation and no Python object exists per node. The
selection rule and value normalisation are MuZero's (Schrittwieser et al. 2020,
Appendix B):

    a* = argmax_a  Q̄(s, a) + P(s, a) · √N(s) / (1 + N(s, a)) · (c₁ + log((N(s) + c₂ + 1) / c₂))

with Q̄ the child's r + γ v min-max normalised over the values seen in that tree (0 for
an unvisited child), and Dirichlet noise mixed into the root's priors. ``reference_search``
is the same search written one tree at a time with nodes as objects, as in the paper's
pseudocode; it exists for the tests (same visit counts on the same network and noise)
and the benchmark, never for training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

UNVISITED = -1


@dataclass
class RootOutput:
    """The prediction at each root: ``prior_logits`` [B, A], ``value`` [B], ``embedding`` [B, ...]."""

    prior_logits: torch.Tensor
    value: torch.Tensor
    embedding: torch.Tensor


@dataclass
class RecurrentOutput:
    """One step of the learned model from (embedding, action), each [B] or [B, A]."""

    reward: torch.Tensor
    discount: torch.Tensor
    prior_logits: torch.Tensor
    value: torch.Tensor
    embedding: torch.Tensor


RecurrentFn = Callable[[torch.Tensor, torch.Tensor], RecurrentOutput]  # (embedding [B, ...], action [B])


@dataclass
class SearchConfig:
    num_simulations: int = 50
    pb_c_init: float = 1.25  # c₁
    pb_c_base: float = 19652.0  # c₂
    dirichlet_alpha: float = 0.25
    exploration_fraction: float = 0.25  # weight of the noise in the root priors (0: none)


@dataclass
class Tree:
    """B trees of up to N = num_simulations + 1 nodes; node 0 is the root."""

    visits: torch.Tensor  # [B, N] N(s)
    value_sum: torch.Tensor  # [B, N] sum of backed-up values
    prior: torch.Tensor  # [B, N, A] P(s, ·) (the root's with noise)
    children: torch.Tensor  # [B, N, A] node index of each child, UNVISITED if not expanded
    reward: torch.Tensor  # [B, N] reward of the transition into the node
    discount: torch.Tensor  # [B, N] discount of the transition out of the node's parent into it
    parent: torch.Tensor  # [B, N]
    action: torch.Tensor  # [B, N] the action from the parent
    embedding: torch.Tensor  # [B, N, ...]
    q_min: torch.Tensor  # [B] MuZero's MinMaxStats, per tree
    q_max: torch.Tensor  # [B]

    def node_value(self) -> torch.Tensor:
        return torch.where(self.visits > 0, self.value_sum / self.visits.clamp(min=1), 0.0)

    def root_visit_counts(self) -> torch.Tensor:
        """N(root, a) for every action, [B, A]."""
        child = self.children[:, 0]
        counts = self.visits.gather(1, child.clamp(min=0))
        return torch.where(child >= 0, counts, 0)

    def root_value(self) -> torch.Tensor:
        return self.node_value()[:, 0]


def _normalise(tree: Tree, q: torch.Tensor) -> torch.Tensor:
    """Q̄ = (q − min) / (max − min) per tree once max > min, else q as it is."""
    lo, hi = tree.q_min[:, None], tree.q_max[:, None]
    spread = hi > lo
    return torch.where(spread, (q - lo) / torch.where(spread, hi - lo, 1.0), q)


def puct_scores(tree: Tree, node: torch.Tensor, config: SearchConfig) -> torch.Tensor:
    """MuZero's pUCT score of every action at ``node`` [B] of each tree, [B, A]."""
    b = torch.arange(len(node))
    children = tree.children[b, node]  # [B, A]
    seen = children >= 0
    idx = children.clamp(min=0)
    child_visits = torch.where(seen, tree.visits.gather(1, idx), 0).to(tree.value_sum.dtype)
    parent_visits = tree.visits[b, node].to(tree.value_sum.dtype)[:, None]
    pb_c = torch.log((parent_visits + config.pb_c_base + 1) / config.pb_c_base) + config.pb_c_init
    prior_score = pb_c * parent_visits.sqrt() / (child_visits + 1) * tree.prior[b, node]
    child_q = tree.reward.gather(1, idx) + tree.discount.gather(1, idx) * tree.node_value().gather(1, idx)
    value_score = torch.where(seen, _normalise(tree, child_q), 0.0)
    return prior_score + value_score


def _new_tree(root: RootOutput, config: SearchConfig, noise: torch.Tensor | None) -> Tree:
    B, A = root.prior_logits.shape
    N = config.num_simulations + 1
    dtype = root.value.dtype
    prior = torch.zeros(B, N, A, dtype=dtype)
    p = torch.softmax(root.prior_logits.to(dtype), -1)
    if noise is not None and config.exploration_fraction > 0:
        p = (1 - config.exploration_fraction) * p + config.exploration_fraction * noise.to(dtype)
    prior[:, 0] = p
    embedding = root.embedding.new_zeros((B, N, *root.embedding.shape[1:]))
    embedding[:, 0] = root.embedding
    visits = torch.zeros(B, N, dtype=torch.long)
    value_sum = torch.zeros(B, N, dtype=dtype)
    visits[:, 0], value_sum[:, 0] = 1, root.value.to(dtype)  # the root is expanded and evaluated
    return Tree(
        visits=visits,
        value_sum=value_sum,
        prior=prior,
        children=torch.full((B, N, A), UNVISITED, dtype=torch.long),
        reward=torch.zeros(B, N, dtype=dtype),
        discount=torch.ones(B, N, dtype=dtype),
        parent=torch.full((B, N), UNVISITED, dtype=torch.long),
        action=torch.full((B, N), UNVISITED, dtype=torch.long),
        embedding=embedding,
        q_min=torch.full((B,), math.inf, dtype=dtype),
        q_max=torch.full((B,), -math.inf, dtype=dtype),
    )


def search(
    root: RootOutput, recurrent_fn: RecurrentFn, config: SearchConfig, noise: torch.Tensor | None = None
) -> Tree:
    """Run ``config.num_simulations`` simulations on B trees at once; returns the trees.

    Args:
      root: the network's prediction at each root (prior logits [B, A], value [B],
        embedding [B, ...]).
      recurrent_fn: the learned model, called once per simulation on all B trees.
      noise: [B, A] Dirichlet samples mixed into the root priors (None: no noise).
    """
    tree = _new_tree(root, config, noise)
    B = root.value.shape[0]
    b = torch.arange(B)
    for sim in range(1, config.num_simulations + 1):
        # select: walk down until the chosen action has no child yet
        node = torch.zeros(B, dtype=torch.long)
        action = puct_scores(tree, node, config).argmax(-1)
        nxt = tree.children[b, node, action]
        while bool((nxt >= 0).any()):
            going = nxt >= 0
            node = torch.where(going, nxt, node)
            chosen = puct_scores(tree, node, config).argmax(-1)
            action = torch.where(going, chosen, action)
            nxt = torch.where(going, tree.children[b, node, action], UNVISITED)
        # expand: one batched step of the model from every leaf's parent
        out = recurrent_fn(tree.embedding[b, node], action)
        tree.children[b, node, action] = sim
        tree.parent[:, sim], tree.action[:, sim] = node, action
        tree.reward[:, sim] = out.reward.to(tree.reward.dtype)
        tree.discount[:, sim] = out.discount.to(tree.discount.dtype)
        tree.prior[:, sim] = torch.softmax(out.prior_logits.to(tree.prior.dtype), -1)
        tree.embedding[:, sim] = out.embedding
        _backup(tree, sim, out.value.to(tree.value_sum.dtype))
    return tree


def _backup(tree: Tree, leaf: int, value: torch.Tensor) -> None:
    """Add the leaf's value to every node on its path (MuZero's backpropagate): G ← r + γ G."""
    B = len(value)
    b = torch.arange(B)
    node = torch.full((B,), leaf, dtype=torch.long)
    g = value
    while True:
        live = node >= 0
        if not bool(live.any()):
            break
        at = node.clamp(min=0)
        tree.value_sum[b, at] += torch.where(live, g, 0.0)
        tree.visits[b, at] += live.long()
        reward, discount = tree.reward[b, at], tree.discount[b, at]
        q = reward + discount * tree.node_value()[b, at]
        is_root = at == 0
        track = live & ~is_root  # the root's own value takes no part in normalising its children
        tree.q_min = torch.where(track, torch.minimum(tree.q_min, q), tree.q_min)
        tree.q_max = torch.where(track, torch.maximum(tree.q_max, q), tree.q_max)
        g = reward + discount * g
        node = torch.where(live & ~is_root, tree.parent[b, at], UNVISITED)


def visit_policy(counts: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """π(a) ∝ N(root, a)^(1/T), the search's improved policy (T → 0: one-hot argmax)."""
    counts = counts.to(torch.float64)
    if temperature == 0:
        return torch.nn.functional.one_hot(counts.argmax(-1), counts.shape[-1]).to(torch.float64)
    powered = counts ** (1.0 / temperature)
    return powered / powered.sum(-1, keepdim=True)


# -- the reference: one tree at a time, nodes as objects (tests and benchmark only) ----------


class _Node:
    def __init__(self, prior: float):
        self.prior = prior
        self.visits = 0
        self.value_sum = 0.0
        self.reward = 0.0
        self.discount = 1.0
        self.children: dict[int, _Node] = {}
        self.priors: list[float] = []
        self.embedding = None

    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


def reference_search(
    root: RootOutput, recurrent_fn: RecurrentFn, config: SearchConfig, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """MuZero's pseudocode, one tree after another, the model called on one node at a time;
    returns the root visit counts [B, A]. Same rules (and tie-breaking: the first best
    action) as ``search``."""
    counts = []
    for i in range(root.value.shape[0]):
        prior = torch.softmax(root.prior_logits[i].double(), -1)
        if noise is not None and config.exploration_fraction > 0:
            prior = (1 - config.exploration_fraction) * prior + config.exploration_fraction * noise[i].double()
        top = _Node(1.0)
        top.priors, top.embedding = prior.tolist(), root.embedding[i : i + 1]
        top.visits, top.value_sum = 1, float(root.value[i])
        stats = [math.inf, -math.inf]
        for _ in range(config.num_simulations):
            node, path = top, [top]
            while True:
                action = _reference_select(node, stats, config)
                if action not in node.children:
                    break
                node = node.children[action]
                path.append(node)
            out = recurrent_fn(node.embedding, torch.tensor([action]))
            child = _Node(node.priors[action])
            child.reward, child.discount = float(out.reward[0]), float(out.discount[0])
            child.priors = torch.softmax(out.prior_logits[0].double(), -1).tolist()
            child.embedding = out.embedding
            node.children[action] = child
            path.append(child)
            g = float(out.value[0])
            for n in reversed(path):
                n.value_sum += g
                n.visits += 1
                if n is not top:
                    q = n.reward + n.discount * n.value()
                    stats = [min(stats[0], q), max(stats[1], q)]
                g = n.reward + n.discount * g
        A = len(top.priors)
        counts.append([top.children[a].visits if a in top.children else 0 for a in range(A)])
    return torch.tensor(counts)


def _reference_select(node: _Node, stats: list[float], config: SearchConfig) -> int:
    best, best_score = 0, -math.inf
    for a, p in enumerate(node.priors):
        child = node.children.get(a)
        n = child.visits if child else 0
        pb_c = math.log((node.visits + config.pb_c_base + 1) / config.pb_c_base) + config.pb_c_init
        score = pb_c * math.sqrt(node.visits) / (n + 1) * p
        if child is not None:
            q = child.reward + child.discount * child.value()
            score += (q - stats[0]) / (stats[1] - stats[0]) if stats[1] > stats[0] else q
        if score > best_score:
            best, best_score = a, score
    return best
