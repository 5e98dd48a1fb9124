"""How a logic neuron's learnable parameters become a gate: the parametrizations, inits and samplings.

Every relaxation here is a mixture over a fixed basis of functions of (a, b), each affine in
{1, a, b, ab}; ``basis_weights`` returns the mixture's weights and ``BASIS`` the basis as rows of
coefficients, so ``basis_weights @ BASIS`` is the (rows, 4) coefficient form the fused kernels run.

Parametrizations (``weights`` has ``width(p)`` columns):

``'softmax16'`` (Petersen et al. 2022; the original package): 16 logits, one per gate of
    ``diffgates.gates``; relaxed output = sum over gates of softmax(w)_g times gate g's product-logic
    relaxation. Discrete gate: argmax.
``'iwp'`` (input-wise, Light DLGN): 4 logits, one per truth-table entry in the order
    (a, b) = (0,0), (0,1), (1,0), (1,1); relaxed output = sum over entries of sigmoid(w_e) times the
    probability of that entry, e.g. P(0,1) = (1 - a) b. Discrete gate: entry e is true iff w_e > 0,
    gate id ``8 e00 + 4 e01 + 2 e10 + e11``.
``'walsh'`` (WARP): 4 Walsh coefficients (w_1, w_a, w_b, w_ab) over the inputs written as signs
    s = 2 bit - 1. The logit of entry (a, b) is the Walsh expansion at that corner,
    ``w_1 + w_a s_a + w_b s_b + w_ab s_a s_b``; the relaxed output is the expectation, over
    independent input bits with P(bit = 1) = the input, of sigmoid(logit) - the multilinear
    extension of the four sigmoid corner values, so it is ``iwp`` on Walsh-transformed logits.
    Discrete gate: entry true iff its logit > 0 (the sign of the inverse transform).

Inits: ``'gaussian'`` (standard-normal parameters, the original's) and ``'residual'`` (Petersen et
al. 2024: start every gate as the pass-through gate A). softmax16: z_A = ``residual_logit``, the
others 0, so P(A) = e^z / (e^z + 15). iwp: entry logits (-z, -z, +z, +z), i.e. sigmoid(z) for the
entries where a = 1; walsh: (0, z, 0, 0), the same corner logits. Defaults: ``DEFAULT_INIT`` and
``DEFAULT_RESIDUAL_LOGIT`` (the measurements behind them are in the README's training table).

Samplings (training mode only; eval mode is always the discrete gate):
``'soft'``: the relaxation. ``'hard'``: forward with the discrete gate, backward with the
relaxation's gradient (straight-through). ``'gumbel_soft'``: noise on the logits, then the relaxation
at temperature ``gumbel_tau`` - Gumbel noise on softmax16's logits, logistic noise (the difference of
two Gumbels: the binary Gumbel-softmax) on the entry logits of iwp/walsh. ``'gumbel_hard'``: the
discrete gate of the noisy logits forward, the noisy relaxation's gradient backward. Noise comes from
torch's global RNG on the weights' device, so a seeded run is reproducible and the trainer's
checkpoints (which save that RNG) resume it exactly.

Not runnable; ``tests/test_parametrizations.py`` checks every combination against the kernels.
"""
from __future__ import annotations

import functools
import math

import torch

from .. import gates

PARAMETRIZATIONS = ("softmax16", "iwp", "walsh")
INITS = ("gaussian", "residual")
SAMPLINGS = ("soft", "hard", "gumbel_soft", "gumbel_hard")
# why: softmax16 keeps the original's init so the difflogic-compatible API trains as the original does;
# iwp/walsh start from A because with Gaussian entry logits a deep net's signal averages out to 0.5.
DEFAULT_INIT = {"softmax16": "gaussian", "iwp": "residual", "walsh": "residual"}
# softmax16: the conv paper's z_A = 5 (P(A) = 90.8%); iwp/walsh: sigmoid(3) = 95.3% for each a = 1 entry.
DEFAULT_RESIDUAL_LOGIT = {"softmax16": 5.0, "iwp": 3.0, "walsh": 3.0}

_WIDTH = {"softmax16": gates.NUM_GATES, "iwp": 4, "walsh": 4}
# Signs (1, s_a, s_b, s_a s_b) at the entries (0,0), (0,1), (1,0), (1,1): entry logits = w @ _WALSH.T.
_WALSH = ((1, -1, -1, 1), (1, -1, 1, -1), (1, 1, -1, -1), (1, 1, 1, 1))
_EPS = 1e-10  # keeps the uniform draws off 0 and 1, where Gumbel/logistic noise is infinite


def check_parametrization(name: str) -> str:
    if name not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization={name!r} is not known; expected one of {PARAMETRIZATIONS}")
    return name


def check_sampling(sampling: str, gumbel_tau: float = 1.0) -> None:
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r} is not known; expected one of {SAMPLINGS}")
    if isinstance(gumbel_tau, bool) or not isinstance(gumbel_tau, (int, float)) or not (
            math.isfinite(gumbel_tau) and gumbel_tau > 0):
        raise ValueError(f"gumbel_tau must be a finite number > 0, got gumbel_tau={gumbel_tau!r}")


def width(parametrization: str) -> int:
    """Parameters per gate: 16 for softmax16, 4 for iwp and walsh."""
    return _WIDTH[check_parametrization(parametrization)]


def initial_weights(parametrization: str, rows: int, init: str | None = None, residual_logit: float | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(rows, width) starting parameters (``init`` None: ``DEFAULT_INIT``); Gaussian draws use torch's RNG."""
    check_parametrization(parametrization)
    init = DEFAULT_INIT[parametrization] if init is None else init
    if init not in INITS:
        raise ValueError(f"init={init!r} is not known; expected one of {INITS}")
    z = DEFAULT_RESIDUAL_LOGIT[parametrization] if residual_logit is None else residual_logit
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z):
        raise ValueError(f"residual_logit must be a finite number, got residual_logit={residual_logit!r}")
    if init == "gaussian":
        return torch.randn(rows, width(parametrization), device=device, dtype=dtype)
    w = torch.zeros(rows, width(parametrization), device=device, dtype=dtype)
    if parametrization == "softmax16":
        w[:, gates.A] = z
    elif parametrization == "iwp":
        w[:] = torch.tensor((-z, -z, z, z), dtype=dtype)
    else:
        w[:, 1] = z
    return w


@functools.lru_cache(maxsize=None)
def _constant(kind: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # Cached per (dtype, device): a fresh host-to-device copy every step would sync a GPU.
    table = {"coeffs": gates.COEFFS, "entries": gates.ENTRY_COEFFS, "walsh": _WALSH}[kind]
    return torch.as_tensor(table, dtype=dtype, device=device)


def basis(parametrization: str, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """(width-of-basis, 4) coefficients of the mixed functions: the 16 gates, or the 4 entry indicators."""
    kind = "coeffs" if check_parametrization(parametrization) == "softmax16" else "entries"
    return _constant(kind, dtype, torch.device(device))


def logit_transform(parametrization: str, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """(4, 4) T with entry logits = weights @ T.T: the identity for iwp, the Walsh signs for walsh."""
    if check_parametrization(parametrization) == "softmax16":
        raise ValueError("softmax16 has gate logits, not entry logits")
    if parametrization == "walsh":
        return _constant("walsh", dtype, torch.device(device))
    return torch.eye(4, dtype=dtype, device=device)


def entry_logits(parametrization: str, weights: torch.Tensor) -> torch.Tensor:
    """(rows, 4) truth-table-entry logits of iwp or walsh weights."""
    if parametrization == "walsh":
        return weights @ _constant("walsh", weights.dtype, weights.device).t()
    return weights


def _check_weights(parametrization: str, weights: torch.Tensor) -> None:
    if weights.dim() != 2 or weights.shape[1] != width(parametrization):
        raise ValueError(f"{parametrization} weights must have shape (rows, {width(parametrization)}), got "
                         f"{tuple(weights.shape)}")
    if not weights.is_floating_point():
        raise ValueError(f"weights must be floating point, got dtype {weights.dtype}")


def gate_ids(parametrization: str, weights: torch.Tensor) -> torch.Tensor:
    """(rows,) int64: the discrete gate of every row (what eval mode and circuits use)."""
    _check_weights(parametrization, weights)
    w = weights.detach()
    if parametrization == "softmax16":
        return w.argmax(-1)
    true = (entry_logits(parametrization, w) > 0).to(torch.int64)  # the sign of each entry's logit
    return true @ torch.tensor(gates.ENTRY_GATES, dtype=torch.int64, device=w.device)


def is_hard(sampling: str) -> bool:
    """Whether ``sampling`` runs the discrete gate forward (straight-through)."""
    return sampling in ("hard", "gumbel_hard")


def training_logits(parametrization: str, weights: torch.Tensor, sampling: str = "soft",
                    gumbel_tau: float = 1.0) -> torch.Tensor:
    """The logits the training-mode relaxation squashes: 16 gate logits or 4 entry logits, with the
    sampling's noise and temperature applied (one draw of torch's RNG for the Gumbel samplings)."""
    _check_weights(parametrization, weights)
    check_sampling(sampling, gumbel_tau)
    logits = entry_logits(parametrization, weights)
    if sampling.startswith("gumbel"):
        logits = (logits + _noise(parametrization, logits)) / gumbel_tau
    return logits


def basis_weights(parametrization: str, weights: torch.Tensor, training: bool, sampling: str = "soft",
                  gumbel_tau: float = 1.0) -> torch.Tensor:
    """(rows, 16) gate probabilities or (rows, 4) entry probabilities of each neuron; differentiable.

    ``basis_weights(...) @ basis(...)`` is the (rows, 4) coefficient form of the same relaxation.
    """
    if not training:
        _check_weights(parametrization, weights)
        return hard_basis_weights(parametrization, entry_logits(parametrization, weights))
    logits = training_logits(parametrization, weights, sampling, gumbel_tau)
    soft = _soft_weights(parametrization, logits)
    if is_hard(sampling):
        return straight_through(hard_basis_weights(parametrization, logits.detach()), soft)
    return soft


def hard_basis_weights(parametrization: str, logits: torch.Tensor) -> torch.Tensor:
    """The discrete gate of (entry) logits as basis weights: one-hot over 16 gates, or 0/1 entries."""
    if parametrization == "softmax16":
        return torch.nn.functional.one_hot(logits.argmax(-1), gates.NUM_GATES).to(logits.dtype)
    return (logits > 0).to(logits.dtype)


def _soft_weights(parametrization: str, logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1) if parametrization == "softmax16" else torch.sigmoid(logits)


def _noise(parametrization: str, like: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(like).clamp_(_EPS, 1 - _EPS)
    if parametrization == "softmax16":
        return -torch.log(-torch.log(u))  # Gumbel(0, 1)
    return torch.log(u) - torch.log1p(-u)  # logistic: the difference of two Gumbels


def straight_through(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """``forward``'s values with ``backward``'s gradient."""
    return backward + (forward - backward).detach()


def coefficients(parametrization: str, weights: torch.Tensor, training: bool, sampling: str = "soft",
                 gumbel_tau: float = 1.0) -> torch.Tensor:
    """(rows, 4) coefficients (c0, c1, c2, c3) of every neuron's relaxation, in plain torch; differentiable."""
    w = basis_weights(parametrization, weights, training, sampling, gumbel_tau)
    return w @ basis(parametrization, w.dtype, w.device)
