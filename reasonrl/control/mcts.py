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

Where things live. The model (``recurrent_fn``) is torch, and so are the embeddings; its
one call per simulation is where batching pays (16 trees cost about what one does). The
tree's statistics are numpy arrays, and selection and backup are loops over the batch
compiled with numba (as vmap compiles mctx's): at 16 trees of 51 nodes each step of
them is a handful of scalar operations, which numpy or torch would spend in dispatch (a
vectorised numpy version ran 5.2x the per-tree reference; compiled, see
docs/control.md). On an accelerator the tree would move to device tensors.

``reference_search`` is the same search written one tree at a time with nodes as
objects, as in the paper's pseudocode; it exists for the tests (same visit counts on the
same network and noise) and the benchmark, never for training.
"""

from __future__ import annotations

import functools
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
    """B trees of up to N = num_simulations + 1 nodes; node 0 is the root. Statistics in
    float64. Node arrays are [B, N]; edge arrays [B, N, A] hold, for each action of a
    node, what selection reads: the child's visit count and its r + γ v."""

    visits: np.ndarray  # [B, N] N(s)
    value_sum: np.ndarray  # [B, N] sum of backed-up values
    reward: np.ndarray  # [B, N] reward of the transition into the node
    discount: np.ndarray  # [B, N] discount of the transition into the node
    parent: np.ndarray  # [B, N]
    action: np.ndarray  # [B, N] the action from the parent
    prior: np.ndarray  # [B, N, A] P(s, ·) (the root's with noise)
    children: np.ndarray  # [B, N, A] node index of each child, UNVISITED if not expanded
    edge_visits: np.ndarray  # [B, N, A] N(s, a)
    edge_q: np.ndarray  # [B, N, A] r(s, a) + γ v(child), once visited
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


def _select(tree_arrays, pb_c_init, pb_c_base):
    """Walk every tree down from its root by pUCT until the chosen action has no child:
    (the node to expand from [B], the action [B]). Ties go to the first action."""
    visits, children, edge_visits, edge_q, prior, q_min, q_max = tree_arrays
    B, A = visits.shape[0], prior.shape[2]
    nodes, actions = np.zeros(B, np.int64), np.zeros(B, np.int64)
    for b in range(B):
        node = 0
        spread = q_max[b] > q_min[b]
        while True:
            parent_visits = visits[b, node]
            pb_c = math.log((parent_visits + pb_c_base + 1) / pb_c_base) + pb_c_init
            best, best_score = 0, -math.inf
            for a in range(A):
                n = edge_visits[b, node, a]
                score = pb_c * math.sqrt(parent_visits) / (n + 1) * prior[b, node, a]
                if n > 0:
                    q = edge_q[b, node, a]
                    score += (q - q_min[b]) / (q_max[b] - q_min[b]) if spread else q
                if score > best_score:
                    best, best_score = a, score
            child = children[b, node, best]
            if child < 0:
                break
            node = child
        nodes[b], actions[b] = node, best
    return nodes, actions


def _backup(tree_arrays, leaf, value):
    """Add each tree's leaf value along its path to the root (MuZero's backpropagate):
    G ← r + γ G; every non-root node's r + γ v feeds its tree's min-max and its edge."""
    value_sum, visits, reward, discount, parent, action, edge_visits, edge_q, q_min, q_max = tree_arrays
    for b in range(value_sum.shape[0]):
        node, g = leaf, value[b]
        while True:
            value_sum[b, node] += g
            visits[b, node] += 1
            if node == 0:
                break
            q = reward[b, node] + discount[b, node] * (value_sum[b, node] / visits[b, node])
            q_min[b] = min(q_min[b], q)
            q_max[b] = max(q_max[b], q)
            up = parent[b, node]
            edge_q[b, up, action[b, node]] = q
            edge_visits[b, up, action[b, node]] = visits[b, node]
            g = reward[b, node] + discount[b, node] * g
            node = up


@functools.cache
def _kernels():
    """``_select`` and ``_backup`` compiled by numba, on first use. Not at import: once
    numba's llvmlite is loaded, vLLM's compiled (non-eager) engine fails to start in that
    process (its kernel registry scans every loaded module and trips on llvmlite's function
    wrappers), so a process that never searches must never load it."""
    from numba import njit

    return njit(cache=True)(_select), njit(cache=True)(_backup)


def _new_tree(root: RootOutput, config: SearchConfig, noise: torch.Tensor | None) -> Tree:
    B, A = root.prior_logits.shape
    N = config.num_simulations + 1
    prior = np.zeros((B, N, A))
    p = torch.softmax(root.prior_logits.double(), -1).numpy()
    if noise is not None and config.exploration_fraction > 0:
        p = (1 - config.exploration_fraction) * p + config.exploration_fraction * noise.double().numpy()
    prior[:, 0] = p
    embedding = root.embedding.new_zeros((B, N, *root.embedding.shape[1:]))
    embedding[:, 0] = root.embedding
    visits, value_sum = np.zeros((B, N), np.int64), np.zeros((B, N))
    visits[:, 0], value_sum[:, 0] = 1, root.value.double().numpy()  # the root is expanded and evaluated
    return Tree(
        visits=visits,
        value_sum=value_sum,
        reward=np.zeros((B, N)),
        discount=np.ones((B, N)),
        parent=np.full((B, N), UNVISITED, np.int64),
        action=np.zeros((B, N), np.int64),
        prior=prior,
        children=np.full((B, N, A), UNVISITED, np.int64),
        edge_visits=np.zeros((B, N, A), np.int64),
        edge_q=np.zeros((B, N, A)),
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
    t = _new_tree(root, config, noise)
    b = np.arange(root.value.shape[0])
    select, backup = _kernels()
    for sim in range(1, config.num_simulations + 1):
        node, action = select(
            (t.visits, t.children, t.edge_visits, t.edge_q, t.prior, t.q_min, t.q_max),
            config.pb_c_init,
            config.pb_c_base,
        )
        out = recurrent_fn(t.embedding[torch.from_numpy(b), torch.from_numpy(node)], torch.from_numpy(action))
        t.children[b, node, action] = sim
        t.parent[:, sim], t.action[:, sim] = node, action
        t.reward[:, sim] = out.reward.double().numpy()
        t.discount[:, sim] = out.discount.double().numpy()
        t.prior[:, sim] = torch.softmax(out.prior_logits.double(), -1).numpy()
        t.embedding[:, sim] = out.embedding
        arrays = (t.value_sum, t.visits, t.reward, t.discount, t.parent, t.action, t.edge_visits, t.edge_q)
        backup((*arrays, t.q_min, t.q_max), sim, out.value.double().numpy())
    return t


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
