"""The regularized update, checked against plain Adam and against the formula by hand."""

import torch

from learning.update import AnchoredAdam, anchor_distance, pull_mask_for


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))


def loss_of(model: torch.nn.Module, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(8, 4, generator=generator)
    y = torch.randn(8, 2, generator=generator)
    return torch.nn.functional.mse_loss(model(x), y)


def train(model, optimizer, steps: int) -> None:
    for step in range(steps):
        optimizer.zero_grad()
        loss_of(model, step).backward()
        optimizer.step()


def anchors_of(model):
    return [p.detach().clone() for p in model.parameters()]


def test_it_equals_plain_adam_when_lambda_is_zero():
    ours, plain = tiny_model(), tiny_model()
    ours[0].weight.data.add_(0.5)  # start away from θ₀ so a pull would show
    plain[0].weight.data.add_(0.5)
    anchors = anchors_of(tiny_model())
    train(ours, AnchoredAdam(list(ours.parameters()), anchors, lr=0.01, anchor_strength=0.0), 20)
    train(plain, torch.optim.Adam(plain.parameters(), lr=0.01), 20)
    for a, b in zip(ours.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_it_keeps_the_weights_at_the_anchor_when_lambda_is_huge():
    model = tiny_model()
    anchors = anchors_of(model)
    lr = 0.01
    train(model, AnchoredAdam(list(model.parameters()), anchors, lr=lr, anchor_strength=1e9), 50)
    free = tiny_model()
    train(free, torch.optim.Adam(free.parameters(), lr=lr), 50)
    # Each step lands on θ₀ before Adam moves it by at most about α.
    assert (
        max((p - a).abs().max().item() for p, a in zip(model.parameters(), anchors, strict=True))
        <= lr * 1.01
    )
    assert anchor_distance(list(free.parameters()), anchors) > 10 * anchor_distance(
        list(model.parameters()), anchors
    )


def test_one_step_matches_the_formula_by_hand():
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    theta0 = torch.tensor([0.0, -1.0, 0.5])
    grad = torch.tensor([0.3, -0.1, 2.0])
    alpha, lam = 0.1, 2.0
    optimizer = AnchoredAdam([theta], [theta0], lr=alpha, anchor_strength=lam)
    theta.grad = grad.clone()
    before = theta.detach().clone()
    optimizer.step()
    # Adam's first step: m̂ = g, v̂ = g², so step = g / (|g| + ε).
    adam_step = grad / (grad.abs() + 1e-8)
    expected = before - alpha * adam_step - alpha * lam * (before - theta0)
    torch.testing.assert_close(theta.detach(), expected)


def test_ewc_weights_the_pull_by_the_fisher_estimate():
    theta = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0]))
    theta0 = torch.zeros(3)
    fisher = torch.tensor([0.0, 1.0, 4.0])
    optimizer = AnchoredAdam([theta], [theta0], lr=0.1, anchor_strength=1.0, weights=[fisher])
    theta.grad = torch.zeros(3)  # no task step: only the pull moves θ
    optimizer.step()
    # Pull = α·λ·wᵢ·(θᵢ − θ₀ᵢ): none where the Fisher is 0, four times as much where it is 4.
    torch.testing.assert_close(theta.detach(), torch.tensor([1.0, 0.9, 0.6]))


def test_it_leaves_one_dimensional_parameters_alone_when_told():
    model = tiny_model()
    anchors = [torch.zeros_like(p) for p in model.parameters()]
    mask = pull_mask_for(model.named_parameters(), pull_1d=False)
    assert mask == [True, False, True, False]
    bias_before = model[0].bias.detach().clone()
    weight_before = model[0].weight.detach().clone()
    optimizer = AnchoredAdam(
        list(model.parameters()), anchors, lr=0.1, anchor_strength=1.0, pull_mask=mask
    )
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.testing.assert_close(model[0].bias.detach(), bias_before)
    torch.testing.assert_close(model[0].weight.detach(), weight_before * 0.9)
