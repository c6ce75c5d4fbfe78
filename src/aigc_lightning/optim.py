"""``BoxLBFGS``: L-BFGS that keeps its parameters inside a box (pixels in [0, 1]) and never diverges.

Neural style transfer optimises pixels that must stay in [0, 1]. ``torch.optim.LBFGS`` knows no bounds: clamping
inside its closure (the PyTorch tutorial) or after its step hides the bound from the curvature pairs, and with a
fixed step (no line search) a bad curvature estimate sends the image off to a loss 1000× its best. This is the
two-metric projected L-BFGS (Bertsekas 1982, "Projected Newton methods for optimization problems with simple
constraints"; the L-BFGS direction of Nocedal 1980):

- the direction is L-BFGS's two-loop recursion on the *free* coordinates (a pixel at a bound whose gradient
  pushes it outwards is held fixed), the step is projected back into the box;
- a step is accepted by a projected Armijo test against the largest of the last ``nonmonotone`` losses
  (Grippo, Lampariello & Lucidi 1986): 1 is a strictly decreasing run, a few more lets L-BFGS cross a ridge the
  way the tutorial's unguarded steps do, but bounded, so it can never run away;
- a rejected step, including one whose loss is NaN or infinite, is retried shorter (backtracking), so a
  non-finite value costs one evaluation instead of the run.

Each ``step(closure)`` spends at most ``max_iter`` loss evaluations, like ``torch.optim.LBFGS``; the history
survives between steps. The parameters are only ever set to points inside the box, so every value the closure
returns is the loss of a valid image: a caller can keep the best one it has seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from jsonargparse.typing import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import Tensor

from aigc_lightning import compat


class BoxLBFGS(torch.optim.Optimizer):
    """Projected L-BFGS inside ``[lower, upper]`` with a non-monotone projected Armijo line search.

    Args:
        params: the tensors to optimise (the output image); projected into the box at the first step.
        lr: length of the first trial step along the L-BFGS direction (1 = the quasi-Newton step).
        max_iter: loss evaluations per ``step`` call.
        history_size: curvature pairs kept (L-BFGS memory).
        lower: lower bound of every parameter.
        upper: upper bound of every parameter.
        nonmonotone: a step is accepted when its loss is below the largest of the last ``nonmonotone``
            accepted losses (plus the Armijo decrease); 1 = monotone.
        tolerance_grad: stop when the largest free gradient component is below this.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: PositiveFloat = 1.0,
        max_iter: PositiveInt = 20,
        history_size: PositiveInt = 100,
        lower: float = 0.0,
        upper: float = 1.0,
        nonmonotone: PositiveInt = 1,
        tolerance_grad: NonNegativeFloat = 0.0,
    ) -> None:
        if lr <= 0 or max_iter < 1 or history_size < 1 or nonmonotone < 1 or not lower < upper:
            raise ValueError(
                f"BoxLBFGS needs lr > 0, max_iter ≥ 1, history_size ≥ 1, nonmonotone ≥ 1 and lower < upper; "
                f"got lr={lr}, max_iter={max_iter}, history_size={history_size}, nonmonotone={nonmonotone}, "
                f"[{lower}, {upper}]"
            )
        defaults = {"lr": lr, "max_iter": max_iter, "history_size": history_size, "lower": lower,
                    "upper": upper, "nonmonotone": nonmonotone, "tolerance_grad": tolerance_grad}  # fmt: skip
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("BoxLBFGS takes one parameter group")
        self._params: list[Tensor] = self.param_groups[0]["params"]

    # Flat views of all parameters (one image here, but any list works).
    def _flat_params(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self._params])

    def _flat_grad(self) -> Tensor:
        return torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1)
                for p in self._params
            ]
        )

    def _set_params(self, x: Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self._params:
                n = p.numel()
                p.copy_(x[offset : offset + n].view_as(p))
                offset += n

    def _evaluate(self, closure: Callable[[], Tensor], x: Tensor) -> tuple[float, Tensor]:
        self._set_params(x)
        with torch.enable_grad():
            loss = closure()
        return float(loss), self._flat_grad()

    @staticmethod
    def _direction(g: Tensor, s_hist: list[Tensor], y_hist: list[Tensor], rho: list[float]) -> Tensor:
        """−H·g by L-BFGS's two-loop recursion (Nocedal & Wright, Algorithm 7.4)."""
        q, alpha = g.neg(), []
        for s, y, r in zip(reversed(s_hist), reversed(y_hist), reversed(rho)):
            a = r * float(s @ q)
            alpha.append(a)
            q.add_(y, alpha=-a)
        if s_hist:
            q.mul_(float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1]))
        for s, y, r, a in zip(s_hist, y_hist, rho, reversed(alpha)):
            q.add_(s, alpha=a - r * float(y @ q))
        return q

    def refresh(self, keep_history: bool = True) -> None:
        """Tell the optimizer that the closure now computes a slightly different function (float32 after
        bfloat16 evaluations): the next ``step`` re-evaluates the loss and gradient at the current point (one
        evaluation) and compares later losses with that value only. The curvature pairs, made from the old
        function's gradients, are kept unless ``keep_history`` is False."""
        state = self.state[self._params[0]]
        for key in ("f", "g", "recent"):
            state.pop(key, None)
        if not keep_history and "x" in state:
            state["s"], state["y"], state["rho"] = [], [], []

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """Up to ``max_iter`` evaluations of ``closure`` (which zeroes grads, computes the loss, backwards).

        Returns the loss at the parameters the step started from.
        """
        group, state = self.param_groups[0], self.state[self._params[0]]
        lo, hi, budget = group["lower"], group["upper"], group["max_iter"]
        if "x" in state and not torch.equal(state["x"], self._flat_params()):
            state.clear()  # the parameters were changed from outside (restored, resized): start afresh
        if "x" not in state:
            x = self._flat_params().clamp(lo, hi)
            f, g = self._evaluate(closure, x)
            budget -= 1
            state.update(x=x, f=f, g=g, s=[], y=[], rho=[], recent=[f])
        elif "f" not in state:  # after ``refresh``: the closure's function changed, re-evaluate where we are
            f, g = self._evaluate(closure, state["x"])
            budget -= 1
            state.update(f=f, g=g, recent=[f])
        x, f, g = state["x"], state["f"], state["g"]
        first = f
        while budget > 0:
            if not math.isfinite(f):
                raise FloatingPointError(
                    f"the loss at the start of BoxLBFGS is {f}: start from a finite point"
                )
            # A coordinate at a bound whose gradient points outwards cannot move: leave it out of the model.
            free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
            g_free = g * free
            if float(g_free.abs().max()) <= group["tolerance_grad"]:
                break
            d = self._direction(g_free, state["s"], state["y"], state["rho"]) * free
            if float(g_free @ d) >= 0:  # not a descent direction (stale curvature): restart from −g
                state["s"], state["y"], state["rho"] = [], [], []
                d = g_free.neg()
            if state["s"]:
                t = group["lr"]
            else:
                # No curvature pair yet (or only negative curvature, common at the content image): the scale is
                # unknown. Try a step that moves the steepest coordinate by a quarter of the box (measured: faster
                # than torch's lr·min(1, 1/|g|₁), which barely moves a 128² image), grow 10× per accepted step.
                first_t = 0.25 * (hi - lo) / float(g_free.abs().max())
                t = state.setdefault("t_sd", group["lr"] * first_t)
            reference = max(state["recent"])
            while True:
                x_new = (x + t * d).clamp_(lo, hi)
                f_new, g_new = self._evaluate(closure, x_new)
                budget -= 1
                decrease = float(g @ (x_new - x))
                if math.isfinite(f_new) and f_new <= reference + 1e-4 * decrease:
                    break
                if budget <= 0:  # out of evaluations before an acceptable point: stay where we were
                    self._set_params(x)
                    return torch.tensor(first)
                # Minimiser of the quadratic through f, the slope and f_new, kept within [0.1 t, 0.5 t].
                if math.isfinite(f_new) and f_new > f + decrease:
                    t *= min(0.5, max(0.1, -decrease / (2 * (f_new - f - decrease))))
                else:
                    t *= 0.1 if not math.isfinite(f_new) else 0.5
            if not state["s"]:
                state["t_sd"] = 10 * t
            s, y = x_new - x, (g_new - g) * free  # curvature of the free coordinates only
            sy = float(s @ y)
            if sy > 1e-10 * float(
                y @ y
            ):  # keep only pairs with positive curvature (H stays positive definite)
                state["s"].append(s)
                state["y"].append(y)
                state["rho"].append(1.0 / sy)
                if len(state["s"]) > group["history_size"]:
                    del state["s"][0], state["y"][0], state["rho"][0]
            x, f, g = x_new, f_new, g_new
            state.update(x=x, f=f, g=g)
            state["recent"] = (state["recent"] + [f])[-group["nonmonotone"] :]
        return torch.tensor(first)


@dataclass
class BestImage:
    """The lowest-loss image an optimisation has evaluated so far, with its named losses (floats)."""

    loss: float = math.inf
    image: Tensor | None = None
    losses: dict[str, float] = field(default_factory=dict)

    def offer(self, losses: dict[str, Tensor], image: Tensor) -> None:
        value = float(losses["loss"].detach())
        if value < self.loss:  # NaN compares False: never kept
            self.loss, self.image = value, image.detach().clamp(0, 1).clone()
            self.losses = {k: float(v.detach()) for k, v in losses.items()}


def restart(optimizer, restarts: int) -> None:
    """Make ``optimizer`` (torch's, or Lightning's wrapper) as new over its (possibly resized) image: no state, the
    step size halved once per rejected step so far. In place, so Lightning keeps the same optimizer object."""
    opt = getattr(optimizer, "optimizer", optimizer)
    opt.state.clear()
    for group in opt.param_groups:
        group["lr"] = group.setdefault("base_lr", group["lr"]) * 0.5**restarts
    compat.forget_parameter_count(opt)  # torch's LBFGS caches it; a new scale changes it
