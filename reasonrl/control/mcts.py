"""Batched Monte-Carlo tree search in the shape of DeepMind's mctx.

The trees of a whole batch of environments are one struct of arrays indexed
``[batch, node]`` (``Tree``); a search is ``num_simulations`` rounds of

    select     every tree walks down from its root by pUCT until it reaches an action
               not expanded yet (all trees step together; finished walks wait)
    expand     one call of ``recurrent_fn`` on the batch: (embedding, action) ->
               reward, discount, prior logits, value, next embedding
    backup     every tree adds the new leaf's value along its path to the root

so the model sees one batch per simulation and no Python object exists per node. The
selection rule and value normalisation are MuZero's (Schrittwieser et al. 2020,
Appendix B):

    a* = argmax_a  Q̄(s, a) + P(s, a) · √N(s) / (1 + N(s, a)) · (c₁ + log((N(s) + c₂ + 1) / c₂))

with Q̄ the child's r + γ v min-max normalised over the values seen in that tree (0 for
an unvisited child), and Dirichlet noise mixed into the root's priors.

Where things live. The model (``recurrent_fn``) is torch, and so are the embeddings.
The tree's statistics are numpy arrays on the host: at 16 trees of 51 nodes every tree
operation is a dispatch, not arithmetic, and numpy dispatches a small op in about a
fifth of torch's time on this CPU (the reason the PPO agent acts in numpy). A
torch-on-device tree, as mctx keeps in JAX, is the same code with the array module
swapped; it pays on an accelerator, where the model's batch is the cost.

``reference_search`` is the same search written one tree at a time with nodes as
objects, as in the paper's pseudocode; it exists for the tests (same visit counts on the
same network and noise) and the benchmark, never for training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
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
    """B trees of up to N = num_simulations + 1 nodes; node 0 is the root, column N a
    scratch node that padded paths write to. Statistics in float64.

    Node arrays are [B, N + 1]; edge arrays [B, N + 1, A] hold, for each action of a
    node, what selection reads: the child's visit count and its r + γ v.
    """

    visits: np.ndarray  # [B, N+1] N(s)
    value_sum: np.ndarray  # [B, N+1] sum of backed-up values
    reward: np.ndarray  # [B, N+1] reward of the transition into the node
    discount: np.ndarray  # [B, N+1] discount of the transition into the node
    parent: np.ndarray  # [B, N+1]
    action: np.ndarray  # [B, N+1] the action from the parent
    prior: np.ndarray  # [B, N+1, A] P(s, ·) (the root's with noise)
    children: np.ndarray  # [B, N+1, A] node index of each child, UNVISITED if not expanded
    edge_visits: np.ndarray  # [B, N+1, A] N(s, a)
    edge_q: np.ndarray  # [B, N+1, A] r(s, a) + γ v(child), once visited
    embedding: torch.Tensor  # [B, N, ...] the model's state at each node
    q_min: np.ndarray  # [B] MuZero's MinMaxStats, per tree
    q_max: np.ndarray  # [B]

    def node_value(self) -> np.ndarray:
        return self.value_sum / np.maximum(self.visits, 1)

    def root_visit_counts(self) -> torch.Tensor:
        """N(root, a) for every action, [B, A]."""
        return torch.from_numpy(self.edge_visits[:, 0].copy())

    def root_value(self) -> torch.Tensor:
        return torch.from_numpy(self.node_value()[:, 0].copy())


def puct_scores(tree: Tree, node: np.ndarray, config: SearchConfig) -> np.ndarray:
    """MuZero's pUCT score of every action at ``node`` [B] of each tree, [B, A]."""
    B, width, A = tree.prior.shape
    flat = np.arange(B) * width + node  # one index into [B * (N+1)] rows: cheaper than two
    child_visits = tree.edge_visits.reshape(-1, A)[flat]
    parent_visits = tree.visits.reshape(-1)[flat][:, None].astype(np.float64)
    pb_c = np.log((parent_visits + config.pb_c_base + 1) / config.pb_c_base) + config.pb_c_init
    prior_score = pb_c * np.sqrt(parent_visits) / (child_visits + 1) * tree.prior.reshape(-1, A)[flat]
    lo, hi = tree.q_min[:, None], tree.q_max[:, None]
    q = tree.edge_q.reshape(-1, A)[flat]
    normalised = np.where(hi > lo, (q - lo) / np.maximum(hi - lo, 1e-300), q)
    return prior_score + np.where(child_visits > 0, normalised, 0.0)


def _new_tree(root: RootOutput, config: SearchConfig, noise: torch.Tensor | None) -> Tree:
    B, A = root.prior_logits.shape
    N = config.num_simulations + 1
    prior = np.zeros((B, N + 1, A))
    p = torch.softmax(root.prior_logits.double(), -1).numpy()
    if noise is not None and config.exploration_fraction > 0:
        p = (1 - config.exploration_fraction) * p + config.exploration_fraction * noise.double().numpy()
    prior[:, 0] = p
    embedding = root.embedding.new_zeros((B, N, *root.embedding.shape[1:]))
    embedding[:, 0] = root.embedding
    visits, value_sum = np.zeros((B, N + 1), np.int64), np.zeros((B, N + 1))
    visits[:, 0], value_sum[:, 0] = 1, root.value.double().numpy()  # the root is expanded and evaluated
    return Tree(
        visits=visits,
        value_sum=value_sum,
        reward=np.zeros((B, N + 1)),
        discount=np.ones((B, N + 1)),
        parent=np.full((B, N + 1), UNVISITED, np.int64),
        action=np.zeros((B, N + 1), np.int64),
        prior=prior,
        children=np.full((B, N + 1, A), UNVISITED, np.int64),
        edge_visits=np.zeros((B, N + 1, A), np.int64),
        edge_q=np.zeros((B, N + 1, A)),
        embedding=embedding,
        q_min=np.full(B, math.inf),
        q_max=np.full(B, -math.inf),
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
    B, scratch = root.value.shape[0], config.num_simulations + 1
    b, b_t = np.arange(B), torch.arange(B)
    for sim in range(1, config.num_simulations + 1):
        # select: walk down until the chosen action has no child yet; the path is kept
        node = np.zeros(B, np.int64)
        path = [node]
        action = puct_scores(tree, node, config).argmax(-1)
        nxt = tree.children[b, node, action]
        while (going := nxt >= 0).any():
            node = np.where(going, nxt, node)
            path.append(np.where(going, nxt, scratch))
            action = np.where(going, puct_scores(tree, node, config).argmax(-1), action)
            nxt = np.where(going, tree.children[b, node, action], UNVISITED)
        # expand: one batched step of the model from every leaf's parent
        out = recurrent_fn(tree.embedding[b_t, torch.from_numpy(node)], torch.from_numpy(action))
        tree.children[b, node, action] = sim
        tree.parent[:, sim], tree.action[:, sim] = node, action
        tree.reward[:, sim] = out.reward.double().numpy()
        tree.discount[:, sim] = out.discount.double().numpy()
        tree.prior[:, sim] = torch.softmax(out.prior_logits.double(), -1).numpy()
        tree.embedding[:, sim] = out.embedding
        _backup(tree, np.stack(path + [np.full(B, sim)], 1), out.value.double().numpy(), scratch)
    return tree


def _backup(tree: Tree, path: np.ndarray, value: np.ndarray, scratch: int) -> None:
    """Add the leaf's value to every node of ``path`` [B, D] (root first, the new leaf last,
    ``scratch`` where a tree's path is shorter): MuZero's backpropagate, G ← r + γ G,
    written for the whole path at once."""
    B, D = path.shape
    rows = np.arange(B)[:, None]
    # the leaf is not at column D - 1 for short paths: move it to the end of the real path
    real = path != scratch
    real[:, -1] = True
    g = np.zeros((B, D))
    acc = value
    for k in range(D - 1, -1, -1):  # G_k = r_{k+1} + γ_{k+1} G_{k+1}, skipping scratch columns
        g[:, k] = acc
        step = real[:, k]
        at = path[:, k]
        acc = np.where(step, tree.reward[rows[:, 0], at] + tree.discount[rows[:, 0], at] * acc, acc)
    tree.value_sum[rows, path] += np.where(real, g, 0.0)
    tree.visits[rows, path] += real
    q = tree.reward[rows, path] + tree.discount[rows, path] * tree.node_value()[rows, path]
    counted = real.copy()
    counted[:, 0] = False  # the root's own value takes no part in normalising its children
    tree.q_min = np.minimum(tree.q_min, np.where(counted, q, math.inf).min(1))
    tree.q_max = np.maximum(tree.q_max, np.where(counted, q, -math.inf).max(1))
    parents, actions = tree.parent[rows, path], tree.action[rows, path]
    parents = np.where(counted, parents, scratch)
    tree.edge_q[rows, parents, actions] = q
    tree.edge_visits[rows, parents, actions] = tree.visits[rows, path]


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
            prior = (1 - config.exploration_fraction) * prior + config.exploration_fraction * noise[
                i
            ].double()
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
