"""zennit's LRP rules without their per-call waste, for a model explained many times (`Explainer`).

zennit's `BasicHook.backward` recomputes each rule's modified parameters (clamped weights, zeroed
biases, ones for the flat rule) on every call, as fresh `nn.Parameter`s that require a gradient,
and runs every branch of a rule even when its input is all zeros: z+ (and Gamma) feed
`input.clamp(max=0)` through the negative weights, which is exactly zero after a ReLU, the common
case. `Lean` overrides only `backward` (zennit's documented extension point) so that

- the modified parameters are computed once per layer and reused while the layer's own parameters
  are unchanged (same tensors, same version counters), frozen;
- a branch fed `input.clamp(max=0)` is skipped when the input has no negative entry: its output and
  gradient are exact zeros, given to the rule's gradient mapper and reducer as a zero scalar;
- plain `nn.Conv2d` / `nn.Linear` layers run their functional form with the cached tensors instead
  of swapping parameters in and out of the module.

The arithmetic is zennit's (its modifiers, gradient mappers and reducers), so maps equal the
per-call path's (tests: six architectures, both composites). `lean_composite` builds the composites
of `melasma.explain.lrp` with these rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle
from zennit.canonizers import MergeBatchNorm
from zennit.core import BasicHook, Composite, Hook, ParamMod
from zennit.layer import Sum
from zennit.rules import Epsilon, Flat, Gamma, Norm, ZBox, ZPlus
from zennit.types import AvgPool, Convolution, Linear

ParamSet = dict[str, torch.Tensor]


def _stamp(module: nn.Module) -> tuple:
    """Identity and version of a layer's own parameters: a cached modification is valid while equal."""
    return tuple((name, id(p), p._version) for name, p in module.named_parameters(recurse=False))


def _modified_parameters(module: nn.Module, param_mod: ParamMod | Callable) -> ParamSet:
    """The parameters zennit's `param_mod` puts on `module`, captured once and frozen."""
    names = [name for name, _ in module.named_parameters(recurse=False)]
    with ParamMod.ensure(param_mod)(module) as modified:
        captured = {name: getattr(modified, name) for name in names}
    return {name: value.detach() for name, value in captured.items() if value is not None}


def _run(module: nn.Module, params: ParamSet, x: torch.Tensor, args: Sequence, kwargs: dict) -> torch.Tensor:
    """`module.forward(x)` with `params` in place of its own (no hooks run, as in zennit)."""
    plain = not args and not kwargs
    if plain and isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward:
        return module._conv_forward(x, params["weight"], params.get("bias"))
    if plain and isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
        return F.linear(x, params["weight"], params.get("bias"))
    originals = {name: getattr(module, name) for name in params}
    try:
        for name, value in params.items():
            setattr(module, name, nn.Parameter(value, requires_grad=False))
        return module.forward(x, *args, **kwargs)
    finally:
        for name, value in originals.items():
            setattr(module, name, value)


class Lean(BasicHook):
    """Mixin for a zennit `BasicHook` rule: cached modified parameters, zero branches skipped.

    `negative_branches` lists the branches whose input modifier is `input.clamp(max=0)`.
    """

    negative_branches: tuple[int, ...] = ()

    def _parameters(self, module: nn.Module, branch: int) -> ParamSet:
        cache = self.__dict__.setdefault("_lean_cache", {})
        stamp = _stamp(module)
        entry = cache.get(branch)
        if entry is None or entry[0] != stamp:
            entry = cache[branch] = (stamp, _modified_parameters(module, self.param_modifiers[branch]))
        return entry[1]

    def backward(self, module: nn.Module, grad_input, grad_output):
        """zennit's `BasicHook.backward`, with the cached parameters and without all-zero branches."""
        original, *args = self.stored_tensors["input"]
        kwargs = self.stored_tensors.get("kwargs") or {}
        original = original.detach()
        skipped = set(self.negative_branches) if self.negative_branches and not bool(torch.amin(original) < 0) else set()
        zero = original.new_zeros(())
        inputs: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        with torch.enable_grad():
            for branch, (in_mod, out_mod) in enumerate(zip(self.input_modifiers, self.output_modifiers)):
                if branch in skipped:
                    inputs.append(zero)
                    outputs.append(zero)
                    continue
                x = in_mod(original)
                x = (x.detach() if x is original else x).requires_grad_()
                inputs.append(x)
                outputs.append(out_mod(_run(module, self._parameters(module, branch), x, args, kwargs)))
        grad_outputs = self.gradient_mapper(grad_output[0], outputs)
        if isinstance(grad_outputs, torch.Tensor):  # single-branch rules return one tensor
            grad_outputs = [grad_outputs]
        live = [b for b in range(len(inputs)) if b not in skipped]
        computed = torch.autograd.grad(
            [outputs[b] for b in live], [inputs[b] for b in live],
            grad_outputs=[grad_outputs[b] for b in live], create_graph=grad_output[0].requires_grad,
        )
        gradients: list[torch.Tensor] = [zero] * len(inputs)
        for branch, gradient in zip(live, computed):
            gradients[branch] = gradient
        relevance = self.reducer(inputs, gradients)
        return tuple(relevance if g is not None and g.shape == relevance.shape else None for g in grad_input)


class SignStabilizer:
    """zennit's default stabiliser, `z + eps * sign(z)` with sign(0) = +1, in four tensor operations
    instead of six (same values: NaN stays NaN, -0.0 counts as 0)."""

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = epsilon

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return torch.where(z >= 0, z + self.epsilon, z - self.epsilon)


class LeanZPlus(Lean, ZPlus):
    """zennit's ZPlus, lean. With the negative branch skipped, its gradient mapper and reducer add no
    zero branch, and the stabiliser reduces to `z + eps` (z >= 0 there); values as zennit's, up to
    the sign of zero, which the stabiliser treats alike."""

    negative_branches = (1,)

    def __init__(self, stabilizer: float = 1e-6, zero_params: str | list[str] | None = None) -> None:
        super().__init__(stabilizer=stabilizer, zero_params=zero_params)
        stabilize = SignStabilizer(stabilizer)

        def gradient_mapper(out_grad: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
            if outputs[1].ndim == 0:  # non-negative input: z = W+ x + b+ >= 0, so the stabiliser adds eps
                return [out_grad / (outputs[0] + stabilize.epsilon)] * 2
            return [out_grad / stabilize(outputs[0] + outputs[1])] * 2

        def reducer(inputs: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
            positive = inputs[0] * gradients[0]
            return positive if inputs[1].ndim == 0 else positive + inputs[1] * gradients[1]

        self.gradient_mapper, self.reducer = gradient_mapper, reducer


class LeanGamma(Lean, Gamma):
    """zennit's Gamma, lean."""

    negative_branches = (1, 3)


class LeanEpsilon(Lean, Epsilon):
    """zennit's Epsilon, lean."""


class LeanFlat(Lean, Flat):
    """zennit's Flat, lean."""


class LeanNorm(Lean, Norm):
    """zennit's Norm, lean."""


class LeanZBox(Lean, ZBox):
    """zennit's ZBox, lean."""


def lean_layer_maps(
    composite: str, zero_params: str | None, *, low: torch.Tensor | None = None, high: torch.Tensor | None = None,
    epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6,
) -> tuple[list, list]:
    """(layer_map, first_map) to prepend to zennit's EpsilonPlusFlat ("epsilon_plus_flat") or
    EpsilonGammaBox (otherwise; `low`/`high` bound its first layer): its own rules, lean, with
    zennit's default settings."""
    stable, epsilon_rule = SignStabilizer(stabilizer), SignStabilizer(epsilon)
    layer_map: list = [
        (Sum, LeanNorm(stabilizer=stable)),
        (AvgPool, LeanNorm(stabilizer=stable)),
        (torch.nn.Linear, LeanEpsilon(epsilon=epsilon_rule, zero_params=zero_params)),
    ]
    if composite == "epsilon_plus_flat":
        layer_map.append((Convolution, LeanZPlus(stabilizer=stabilizer, zero_params=zero_params)))
        first_map = [(Linear, LeanFlat(stabilizer=stable, zero_params=zero_params))]
    else:
        layer_map.append((Convolution, LeanGamma(gamma=gamma, stabilizer=stable, zero_params=zero_params)))
        first_map = [(Convolution, LeanZBox(low=low, high=high, stabilizer=stable, zero_params=zero_params))]
    return layer_map, first_map



class _Detour(torch.autograd.Function):
    """A layer's output joined to its input by a backward that returns zeros: the layer's own
    backward (whose result zennit's hook replaces with relevance) is never run."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, box: list[torch.Tensor]) -> torch.Tensor:
        ctx.shape = x.shape
        return box.pop()  # not an input, so later in-place operations on it stay allowed

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.new_zeros(()).expand(ctx.shape), None


def _detour(module: nn.Module, args: tuple, output: object) -> torch.Tensor | None:
    if (len(args) != 1 or not isinstance(args[0], torch.Tensor) or not args[0].requires_grad
            or not isinstance(output, torch.Tensor) or output.grad_fn is None):
        return None
    return _Detour.apply(args[0], [output.detach()])


def skip_replaced_backward(model: nn.Module, composite: Composite) -> list[RemovableHandle]:
    """On every layer of `model` that carries one of `composite`'s rules, skip the layer's own
    backward: zennit's hook discards its result (the gradient) and returns the rule's relevance, so
    a zero placeholder gives the same map and saves a convolution backward per layer (and batch
    norm's). Call after `composite.register(model)`; remove the returned handles to undo."""
    handles = []
    for module in model.modules():
        owners = (getattr(hook, "__self__", None) for hook in module._forward_hooks.values())
        if any(isinstance(owner, Hook) and owner in composite.hook_refs for owner in owners):
            handles.append(module.register_forward_hook(_detour, prepend=True))
    return handles


def drop_merged_batch_norms(model: nn.Module, composite: Composite) -> int:
    """Replace each plain batch norm that `composite`'s canonizers merged into the layer before it by
    `nn.Identity`; returns how many. A merged norm computes the identity, yet costs a pass over its
    activation and a Pass hook (a clone, a tensor hook and Python work) in forward and backward:
    MobileNetV2 has 52. Only for a dedicated copy: the norms are not put back on `remove()`."""
    merged = {
        id(handle.batch_norm) for handle in composite.handles
        if isinstance(handle, MergeBatchNorm) and type(handle.batch_norm) in (nn.BatchNorm1d, nn.BatchNorm2d)
    }
    dropped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in merged:
                setattr(parent, name, nn.Identity())
                dropped += 1
    return dropped
