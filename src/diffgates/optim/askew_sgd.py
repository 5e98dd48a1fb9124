"""AskewSGD (Leconte, Schechtman and Moulines, AISTATS 2023), binary version: SGD that anneals weights to +-1.

Training a binary network is posed as a sequence of interval-constrained problems: weight w must
satisfy psi(w) = eps - (w^2 - 1)^2 >= 0, i.e. w^2 in [1 - sqrt(eps), 1 + sqrt(eps)], and eps shrinks
towards 0 so the feasible set closes in on {-1, +1}. Per coordinate, with d the (momentum) gradient:

* feasible (psi(w) >= 0), or infeasible but -d already moves back fast enough,
  -d * psi'(w) >= -alpha * psi(w) (``condition='velocity'``, the default):
  the plain SGD step w <- w - lr * d;
* otherwise the skewed step w <- w + lr * K, K = alpha * psi(w) / (4 w (w^2 - 1)) = -alpha psi / psi'.
  K is the velocity along which psi rises at rate alpha * |psi| (to first order psi grows by
  lr * alpha * |psi| per step, so keep lr * alpha <= 1): it points back into the feasible set. (As a
  "gradient" in w <- w - lr * G it is G = -K; read with the opposite sign it would push outward.)

then w is clipped to [-1, 1]. Where psi'(w) = 0 with psi < 0 (only w = 0: at w = +-1, psi = eps >= 0)
the constraint gives no direction and the plain step is taken.

The velocity condition makes the step the projection of -d onto {v : psi'(w) v >= -alpha psi(w)}
(in one dimension: -d if it satisfies the bound, else the bound's edge K), which is what the K
formula is the edge of. ``condition='inward'`` is the looser literal reading "the skewed step only
where -d does not point into the feasible set" (-d * psi'(w) <= 0): there a weight that the loss
pulls inward, however weakly, keeps its plain step, so an interior optimum approached from the
inside stays infeasible for ever (the toy test shows it); use it only to compare.

With eps = 1 every w in [-1, 1] is feasible, so the optimizer is plain clipped SGD: that is the
warm-up, as long as the caller keeps eps = 1 (does not call ``anneal``). After it, call ``anneal()``
once per epoch: eps <- eps * eps_decay (0.96 by default).

Written from the paper's definitions as summarised in the module docstring; the paper's
full text was not at hand to check the defaults (alpha in particular is this package's choice).

Example::

    from diffgates.nn.binary import BINARY_LAYERS
    from diffgates.optim import AskewSGD
    binary = [m.weight for m in model.modules() if isinstance(m, BINARY_LAYERS)]
    opt = AskewSGD([{"params": binary}, {"params": others, "constrained": False}], lr=0.01, alpha=1.0)
    for epoch in range(epochs):
        ...  # loss.backward(); opt.step(); opt.zero_grad()
        if epoch >= warmup_epochs:
            opt.anneal()

``eps`` lives in each param group, so ``state_dict()`` / ``load_state_dict()`` resume it exactly
(with the momentum buffers).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

CONDITIONS = ("velocity", "inward")


def _number(name: str, value, ok: Callable[[float], bool], expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"AskewSGD {name} must be {expected}, got {name}={value!r}")
    return float(value)


class AskewSGD(torch.optim.Optimizer):
    """Annealed skewed SGD for binary (+-1) weights.

    Args:
        params: parameters or param groups. A group may set any argument below; ``constrained=False``
            makes it plain SGD (no constraint, no clipping: for biases, BN and other real parameters).
        lr: learning rate (> 0).
        alpha: rate of the skewed step (> 0): an infeasible weight recovers about lr * alpha of its
            constraint violation per step.
        eps: initial constraint slack (>= 0); 1 makes all of [-1, 1] feasible (the warm-up).
        eps_decay: factor applied by ``anneal()`` (in (0, 1]).
        momentum: heavy-ball momentum in [0, 1); the buffer accumulates raw gradients,
            buf = momentum * buf + grad, and the constraint test and step use buf.
        constrained: apply the constraint and the [-1, 1] clip (default True).
        condition: when an infeasible weight keeps its plain step: 'velocity' (-d psi' >= -alpha psi,
            default) or 'inward' (-d psi' > 0). See the module docstring.
    """

    def __init__(self, params: Iterable, lr: float, alpha: float = 1.0, eps: float = 1.0,
                 eps_decay: float = 0.96, momentum: float = 0.0, constrained: bool = True,
                 condition: str = "velocity"):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, eps_decay=eps_decay, momentum=momentum,
                        constrained=constrained, condition=condition)
        self._check(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._check(group)

    @staticmethod
    def _check(group: dict) -> None:
        _number("lr", group["lr"], lambda v: v > 0, "a finite number > 0")
        _number("alpha", group["alpha"], lambda v: v > 0, "a finite number > 0")
        _number("eps", group["eps"], lambda v: v >= 0, "a finite number >= 0")
        _number("eps_decay", group["eps_decay"], lambda v: 0 < v <= 1, "in (0, 1]")
        _number("momentum", group["momentum"], lambda v: 0 <= v < 1, "in [0, 1)")
        if not isinstance(group["constrained"], bool):
            raise ValueError(f"AskewSGD constrained must be True or False, got constrained={group['constrained']!r}")
        if group["condition"] not in CONDITIONS:
            raise ValueError(f"AskewSGD condition={group['condition']!r} is not known; expected one of {CONDITIONS}")

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._check(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """One step (see the module docstring). Returns the closure's loss, if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha, eps, mu = group["lr"], group["alpha"], group["eps"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError("AskewSGD does not support sparse gradients")
                d = p.grad
                if mu:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.detach().clone()
                    else:
                        buf.mul_(mu).add_(d)
                    d = buf
                if not group["constrained"]:
                    p.add_(d, alpha=-lr)
                    continue
                s = p * p - 1
                psi = eps - s * s
                dpsi = -4 * p * s  # psi'(w)
                rate = -d * dpsi  # how fast the plain step raises psi
                keep = rate >= -alpha * psi if group["condition"] == "velocity" else rate > 0
                skew = (psi < 0) & ~keep & (dpsi != 0)
                # The guarded denominator only matters where skew is False (the where discards it).
                denom = torch.where(skew, 4 * p * s, torch.ones_like(p))
                velocity = torch.where(skew, alpha * psi / denom, -d)
                p.add_(velocity, alpha=lr).clamp_(-1.0, 1.0)
        return loss

    def anneal(self) -> None:
        """eps <- eps * eps_decay in every group (call once per epoch after the warm-up)."""
        for group in self.param_groups:
            group["eps"] = group["eps"] * group["eps_decay"]

    @torch.no_grad()
    def infeasible_fraction(self) -> float:
        """The fraction of constrained weights with psi(w) < 0 (a diagnostic of how far annealing got)."""
        bad, total = 0, 0
        for group in self.param_groups:
            if not group["constrained"]:
                continue
            for p in group["params"]:
                psi = group["eps"] - (p * p - 1) ** 2
                bad += int((psi < 0).sum())
                total += p.numel()
        return bad / total if total else 0.0
