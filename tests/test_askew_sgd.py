"""AskewSGD (diffgates.optim): plain steps where feasible, the skewed step where not, clipping, annealing, resume."""
from __future__ import annotations

import copy

import pytest
import torch

from diffgates.optim import AskewSGD

D = torch.float64


def _one_step(w, g, **kwargs):
    p = torch.nn.Parameter(torch.tensor(w, dtype=D))
    opt = AskewSGD([p], **kwargs)
    p.grad = torch.tensor(g, dtype=D)
    opt.step()
    return p.detach()


def test_feasible_weights_take_plain_clipped_sgd_steps():
    torch.manual_seed(0)
    w = torch.rand(1000, dtype=D) * 2 - 1
    g = torch.randn(1000, dtype=D)
    out = _one_step(w.tolist(), g.tolist(), lr=0.05)  # eps = 1: all of [-1, 1] is feasible (warm-up)
    assert torch.allclose(out, (w - 0.05 * g).clamp(-1, 1), atol=1e-15)
    # eps = 0.25: |w| = 0.9 is feasible ((0.81 - 1)^2 = 0.0361 <= 0.25): plain step in either direction.
    assert _one_step([0.9, -0.9], [0.5, 0.5], lr=0.1, eps=0.25).tolist() == pytest.approx([0.85, -0.95])


def test_infeasible_weight_skewed_step_hand_computed():
    # w = 0.3, eps = 0.25: w^2 - 1 = -0.91, psi = 0.25 - 0.8281 = -0.5781 < 0, psi' = -4 w (w^2 - 1) = 1.092 > 0.
    # g = 0.5: -g psi' < 0 (points outward) -> K = alpha psi / (4 w (w^2 - 1)) = 2 * -0.5781 / -1.092.
    k = 2 * 0.5781 / 1.092
    out = _one_step([0.3, -0.3], [0.5, -0.5], lr=0.1, alpha=2.0, eps=0.25)
    assert out.tolist() == pytest.approx([0.3 + 0.1 * k, -0.3 - 0.1 * k], abs=1e-12)
    assert out[0].item() == pytest.approx(0.40587912087912, abs=1e-12)
    # -g pointing inward but slower than the bound: -g psi' = 0.5 * 1.092 = 0.546 < -alpha psi = 1.1562,
    # so 'velocity' still takes K; 'inward' keeps the plain step.
    assert _one_step([0.3, -0.3], [-0.5, 0.5], lr=0.1, alpha=2.0, eps=0.25).tolist() == pytest.approx(
        [0.3 + 0.1 * k, -0.3 - 0.1 * k], abs=1e-12)
    assert _one_step([0.3, -0.3], [-0.5, 0.5], lr=0.1, alpha=2.0, eps=0.25, condition="inward").tolist() == \
        pytest.approx([0.35, -0.35])
    # Fast enough inward (-g psi' = 2 * 1.092 = 2.184 >= 1.1562): the plain step under both conditions.
    for condition in ("velocity", "inward"):
        assert _one_step([0.3, -0.3], [-2.0, 2.0], lr=0.1, alpha=2.0, eps=0.25, condition=condition).tolist() == \
            pytest.approx([0.5, -0.5])
    # Outward: K under both conditions.
    assert _one_step([0.3], [0.5], lr=0.1, alpha=2.0, eps=0.25, condition="inward").item() == pytest.approx(
        0.3 + 0.1 * k, abs=1e-12)
    # A zero gradient at an infeasible point does not point inward: the skewed step pulls it in.
    assert _one_step([0.3], [0.0], lr=0.1, alpha=2.0, eps=0.25).item() == pytest.approx(0.3 + 0.1 * k)
    # The skewed step raises psi (first order: by lr * alpha * |psi|).
    psi = lambda w: 0.25 - (w * w - 1) ** 2
    assert psi(0.3 + 0.1 * k) > psi(0.3)


def test_guards_at_zero_and_plus_minus_one():
    # w = 0: psi' = 0, no constraint direction -> plain step; nothing becomes NaN.
    assert _one_step([0.0, 0.0], [0.1, 0.0], lr=0.1, eps=0.25).tolist() == pytest.approx([-0.01, 0.0])
    # w = +-1: psi = eps >= 0, feasible even at eps = 0 -> plain step (then clip).
    out = _one_step([1.0, -1.0, 1.0], [0.5, 0.5, -0.5], lr=0.1, eps=0.0)
    assert out.tolist() == pytest.approx([0.95, -1.0, 1.0])
    assert torch.isfinite(_one_step([1e-300, 1 - 1e-16], [1.0, -1.0], lr=0.1, eps=1e-12)).all()


def test_weights_stay_in_unit_interval():
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(500, dtype=D) * 3)  # starts outside too
    opt = AskewSGD([p], lr=0.5, alpha=1.0, eps=0.05, momentum=0.9)
    for _ in range(50):
        p.grad = torch.randn(500, dtype=D) * 5
        opt.step()
        assert p.abs().max() <= 1.0
        assert torch.isfinite(p).all()


def test_momentum_buffer_accumulates_raw_gradients():
    p = torch.nn.Parameter(torch.tensor([0.0], dtype=D))
    opt = AskewSGD([p], lr=0.1, momentum=0.5)  # eps = 1: feasible, plain steps
    for g in (1.0, 2.0):
        p.grad = torch.tensor([g], dtype=D)
        opt.step()
    # buf = 1, then 0.5 * 1 + 2 = 2.5; w = -0.1 - 0.25.
    assert p.item() == pytest.approx(-0.35)
    assert opt.state[p]["momentum_buffer"].item() == pytest.approx(2.5)


def test_unconstrained_group_is_plain_sgd():
    a = torch.nn.Parameter(torch.tensor([0.3, 0.95], dtype=D))
    b = torch.nn.Parameter(torch.tensor([0.3, 0.95], dtype=D))
    opt = AskewSGD([{"params": [a]}, {"params": [b], "constrained": False}], lr=0.1, eps=0.25)
    a.grad = torch.tensor([0.5, -1.0], dtype=D)
    b.grad = torch.tensor([0.5, -1.0], dtype=D)
    opt.step()
    assert b.tolist() == pytest.approx([0.25, 1.05])  # no skew, no clip
    assert a[1].item() == 1.0 and a[0].item() > 0.3  # clipped, and the infeasible 0.3 skewed upward


def test_anneal_and_state_dict_round_trip_resumes_exactly():
    torch.manual_seed(2)
    p = torch.nn.Parameter(torch.rand(64, dtype=D) * 2 - 1)
    opt = AskewSGD([p], lr=0.05, alpha=1.5, momentum=0.9, eps_decay=0.5)
    grads = [torch.randn(64, dtype=D) for _ in range(12)]
    for i in range(6):
        p.grad = grads[i]
        opt.step()
        opt.anneal()
    assert opt.param_groups[0]["eps"] == pytest.approx(0.5 ** 6)
    saved = copy.deepcopy(opt.state_dict())
    assert saved["param_groups"][0]["eps"] == pytest.approx(0.5 ** 6)
    q = torch.nn.Parameter(p.detach().clone())
    resumed = AskewSGD([q], lr=0.05, alpha=1.5, momentum=0.9, eps_decay=0.5)  # eps = 1 until loaded
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["eps"] == opt.param_groups[0]["eps"]
    for i in range(6, 12):
        p.grad, q.grad = grads[i], grads[i].clone()
        opt.step()
        resumed.step()
        opt.anneal()
        resumed.anneal()
    assert torch.equal(p, q)
    assert opt.infeasible_fraction() == resumed.infeasible_fraction()


def test_annealing_drives_weights_to_plus_minus_one():
    torch.manual_seed(3)
    target = torch.rand(200, dtype=D) * 0.8 - 0.4  # interior optimum: plain SGD stays inside
    start = torch.rand(200, dtype=D) * 2 - 1
    w = torch.nn.Parameter(start.clone())
    plain = torch.nn.Parameter(start.clone())
    opt = AskewSGD([w], lr=0.05, alpha=5.0)
    sgd = torch.optim.SGD([plain], lr=0.05)
    for epoch in range(160):
        for _ in range(10):
            for param, o in ((w, opt), (plain, sgd)):
                o.zero_grad()
                (0.5 * ((param - target) ** 2).sum()).backward()
                o.step()
        if epoch >= 5:  # warm-up at eps = 1
            opt.anneal()
    assert opt.param_groups[0]["eps"] < 1e-2
    assert plain.abs().max() < 0.45  # the unconstrained optimum
    assert w.abs().min() > 0.95  # AskewSGD: every weight near +-1
    # The literal 'inward' reading leaves weights that approach their interior optimum from inside there.
    loose = torch.nn.Parameter(start.clone())
    opt2 = AskewSGD([loose], lr=0.05, alpha=5.0, condition="inward")
    for epoch in range(160):
        for _ in range(10):
            opt2.zero_grad()
            (0.5 * ((loose - target) ** 2).sum()).backward()
            opt2.step()
        if epoch >= 5:
            opt2.anneal()
    assert loose.abs().min() < 0.5


def test_infeasible_fraction():
    p = torch.nn.Parameter(torch.tensor([0.3, 0.99, -0.2, -1.0]))
    free = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    opt = AskewSGD([{"params": [p]}, {"params": [free], "constrained": False}], lr=0.1, eps=0.25)
    assert opt.infeasible_fraction() == 0.5  # 0.3 and -0.2 (the unconstrained group is not counted)
    opt.param_groups[0]["eps"] = 1.0
    assert opt.infeasible_fraction() == 0.0


def test_validation():
    p = [torch.nn.Parameter(torch.zeros(2))]
    for kwargs, name in [({"lr": 0}, "lr"), ({"lr": 0.1, "alpha": 0}, "alpha"), ({"lr": 0.1, "eps": -1}, "eps"),
                         ({"lr": 0.1, "eps_decay": 0}, "eps_decay"), ({"lr": 0.1, "eps_decay": 1.5}, "eps_decay"),
                         ({"lr": 0.1, "momentum": 1.0}, "momentum"), ({"lr": float("nan")}, "lr"),
                         ({"lr": 0.1, "constrained": 1}, "constrained"), ({"lr": 0.1, "condition": "x"}, "condition")]:
        with pytest.raises(ValueError, match=name):
            AskewSGD(p, **kwargs)
    with pytest.raises(ValueError, match="alpha"):
        AskewSGD([{"params": p, "alpha": -2.0}], lr=0.1)
