"""zennit's LRP rules without their per-call waste, for a model explained many times (`Explainer`).

zennit's `BasicHook.backward` recomputes each rule's modified parameters (clamped weights, zeroed
biases, ones for the flat rule) on every call, as fresh `nn.Parameter`s that require a gradient,
and runs every branch of a rule even when its input is all zeros: z+ (and Gamma) feed
`input.clamp(max=0)` through the negative weights, which is exactly zero after a ReLU, the common
case. Its `Hook.register` puts three hooks on each layer, and each forward adds an identity node,
a clone of the layer's input and two per-tensor hooks; autograd then still runs the layer's own
backward, whose result the hook discards. The `Lean` mixin overrides `register` (zennit's
extension point for how a rule attaches) so that

- one forward hook joins the layer's output to its input by an autograd node whose backward is the
  rule (`Lean.relevance`); the layer's own backward never runs, and nothing is kept on the hook;
- the modified parameters are computed once per layer and reused while the layer's own parameters
  are unchanged (same tensors, same version counters), frozen;
- a branch fed `input.clamp(max=0)` is skipped when the input has no negative entry: its output and
  gradient are exact zeros, given to the rule's gradient mapper and reducer as a zero scalar;
- plain `nn.Conv2d` / `nn.Linear` layers run their functional form with the cached tensors, without
  recording a graph, and get their input gradients in closed form (`convolution_backward`, a matrix
  product); a branch fed `torch.ones_like` (the flat rule) is computed once per image shape;
- denominators without `torch.where` (slow on the CPU), with zennit's values.

`LeanPass` does the same for zennit's Pass (activations, unmerged batch norms). The arithmetic is
zennit's (its modifiers, gradient mappers and reducers), so maps equal the per-call path's (tests:
six architectures, both composites). `lean_layer_maps` puts these rules in front of zennit's
composites (`melasma.explain.lrp.COMPOSITES[name](..., lean=True)`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from zennit.canonizers import MergeBatchNorm
from zennit.core import BasicHook, Composite, ParamMod, RemovableHandle, RemovableHandleList
from zennit.layer import Sum
from zennit.rules import Epsilon, Flat, Gamma, Norm, Pass, ZBox, ZPlus
from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

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


def _plain_layer(module: nn.Module, args: Sequence) -> bool:
    """Whether `module` is an `nn.Conv2d` (zero padding) or `nn.Linear` with its class's own forward,
    called with its input alone: its input gradient then has a closed form (`Lean._input_gradient`)."""
    if args:
        return False
    if isinstance(module, nn.Conv2d):
        return type(module).forward is nn.Conv2d.forward and module.padding_mode == "zeros"
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


class _RuleOutput(torch.autograd.Function):
    """A hooked layer's output whose backward is the layer's rule. The layer's own backward (whose
    result zennit's hook would discard) is never run, and nothing outlives the call: the input is
    saved on the autograd graph (an in-place change to it fails loudly), not on the hook."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, box: list[torch.Tensor], rule: Lean, module: nn.Module, extra: tuple):
        ctx.save_for_backward(x)
        ctx.rule, ctx.module, ctx.extra = rule, module, extra
        return box.pop()  # not an input, so later in-place operations on it stay allowed

    @staticmethod
    def backward(ctx, relevance: torch.Tensor) -> tuple:
        (x,) = ctx.saved_tensors
        return ctx.rule.relevance(ctx.module, x, ctx.extra, relevance), None, None, None, None


class _PassOutput(torch.autograd.Function):
    """A layer's output whose backward passes the relevance through unchanged (zennit's `Pass`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, box: list[torch.Tensor]) -> torch.Tensor:
        return box.pop()

    @staticmethod
    def backward(ctx, relevance: torch.Tensor) -> tuple[torch.Tensor, None]:
        return relevance, None


def _relevance_output(args: tuple, output: object) -> torch.Tensor | None:
    """A layer call's output, where relevance flows to its input (a tensor that requires a gradient)."""
    if args and isinstance(args[0], torch.Tensor) and args[0].requires_grad and isinstance(output, torch.Tensor):
        return output
    return None


class Lean(BasicHook):
    """Mixin for a zennit `BasicHook` rule: cached modified parameters, zero branches skipped, and
    one forward hook per layer instead of zennit's three hooks, identity node, clone and per-tensor
    hooks (`register`). `negative_branches` and `positive_branches` list the branches whose input
    modifier is `input.clamp(max=0)` and `input.clamp(min=0)`: for an input without a negative entry
    the first are skipped and the second get the input itself instead of a clamped copy.
    """

    negative_branches: tuple[int, ...] = ()
    positive_branches: tuple[int, ...] = ()

    def register(self, module: nn.Module) -> RemovableHandleList:
        """Route the relevance of `module`'s output through `relevance` (zennit's `Hook.register`)."""
        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(self._attach)])

    def _attach(self, module: nn.Module, args: tuple, output: object) -> torch.Tensor | None:
        tensor = _relevance_output(args, output)
        return None if tensor is None else _RuleOutput.apply(args[0], [tensor.detach()], self, module, args[1:])

    def _parameters(self, module: nn.Module, branch: int, stamp: tuple) -> ParamSet:
        """The branch's modified parameters, recomputed when `stamp` (`_stamp(module)`) changed."""
        cache = self.__dict__.setdefault("_lean_cache", {})
        entry = cache.get(branch)
        if entry is None or entry[0] != stamp:
            entry = cache[branch] = (stamp, _modified_parameters(module, self.param_modifiers[branch]))
        return entry[1]

    def _closed_form(self, module: nn.Module, args: Sequence, relevance_out: torch.Tensor) -> bool:
        """Whether this call's input gradients can skip autograd: a plain convolution or dense layer,
        output modifiers that return their input (zennit's rules here all do), no graph to build."""
        if relevance_out.requires_grad or not _plain_layer(module, args):
            return False
        if "_identity_outputs" not in self.__dict__:
            probe = torch.zeros(())
            self.__dict__["_identity_outputs"] = all(modify(probe) is probe for modify in self.output_modifiers)
        return bool(self.__dict__["_identity_outputs"])

    def _constant_branch(self, module: nn.Module, branch: int, original: torch.Tensor, params: ParamSet, stamp: tuple,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ones, layer(ones)) for a branch fed `torch.ones_like` (the flat rule's): it depends only on
        the shape of one image, so it is computed once per image shape, for one image, and expanded
        (no memory per image in the batch)."""
        cache = self.__dict__.setdefault("_lean_constants", {})
        key = (tuple(original.shape[1:]), original.dtype, original.device, stamp)
        entry = cache.get(branch)
        if entry is None or entry[0] != key:
            with torch.no_grad():
                output = _run(module, params, original.new_ones((1, *key[0])), (), {})
            entry = cache[branch] = (key, output)
        count = original.shape[0]
        return original.new_ones(()).expand_as(original), entry[1].expand(count, *entry[1].shape[1:])

    @staticmethod
    def _input_gradient(module: nn.Module, weight: torch.Tensor, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The gradient at x of `<grad, layer(x)>` with `weight`, for a `_plain_layer`:
        the kernel autograd runs, in its order of summation (a map dominated by cancellation, as a
        random-init ConvNeXt's is, changes with the order: summing the flat rule's all-ones weights
        over channels first was tried and moved such a map by 84 % of its largest value)."""
        if isinstance(module, nn.Linear):
            return grad.matmul(weight)
        assert isinstance(module, nn.Conv2d)
        return torch.ops.aten.convolution_backward(
            grad, x, weight, None, module.stride, module.padding, module.dilation, False,
            [0] * len(module.stride), module.groups, [True, False, False],
        )[0]

    def relevance(self, module: nn.Module, original: torch.Tensor, args: Sequence, relevance_out: torch.Tensor,
                  ) -> torch.Tensor:
        """The relevance of `module`'s input `original` (with further positional `args`), given its
        output's: zennit's `BasicHook.backward`, with the cached parameters, without all-zero
        branches, and for plain convolutions and dense layers with their input gradients in closed
        form instead of through autograd."""
        original = original.detach()
        signs_matter = self.negative_branches or self.positive_branches
        nonnegative = bool(signs_matter) and not bool(torch.amin(original) < 0)
        skipped = set(self.negative_branches) if nonnegative else set()
        unclamped = set(self.positive_branches) if nonnegative else set()
        closed_form = self._closed_form(module, args, relevance_out)
        stamp = _stamp(module)
        params = {b: self._parameters(module, b, stamp) for b in range(len(self.param_modifiers)) if b not in skipped}
        zero = original.new_zeros(())
        inputs: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        with torch.set_grad_enabled(not closed_form):
            for branch, (in_mod, out_mod) in enumerate(zip(self.input_modifiers, self.output_modifiers)):
                if branch in skipped:
                    inputs.append(zero)
                    outputs.append(zero)
                    continue
                if closed_form and in_mod is torch.ones_like:
                    ones, output = self._constant_branch(module, branch, original, params[branch], stamp)
                    inputs.append(ones)
                    outputs.append(output)
                    continue
                x = original if branch in unclamped else in_mod(original)
                if not closed_form:
                    x = (x.detach() if x is original else x).requires_grad_()
                inputs.append(x)
                outputs.append(out_mod(_run(module, params[branch], x, args, {})))
        grad_outputs = self.gradient_mapper(relevance_out, outputs)
        if isinstance(grad_outputs, torch.Tensor):  # single-branch rules return one tensor
            grad_outputs = [grad_outputs]
        live = [b for b in range(len(inputs)) if b not in skipped]
        if closed_form:
            computed = [self._input_gradient(module, params[b]["weight"], inputs[b], grad_outputs[b]) for b in live]
        else:
            computed = list(torch.autograd.grad(
                [outputs[b] for b in live], [inputs[b] for b in live],
                grad_outputs=[grad_outputs[b] for b in live], create_graph=relevance_out.requires_grad,
            ))
        gradients: list[torch.Tensor] = [zero] * len(inputs)
        for branch, gradient in zip(live, computed):
            gradients[branch] = gradient
        return self.reducer(inputs, gradients)


class LeanPass(Pass):
    """zennit's Pass (activations, unmerged batch norms) as one forward hook and a backward that
    returns its input. For a dedicated copy: `register` turns off the layer's `inplace` (zennit
    clones the input instead), so that the hook sees the input the layer was given."""

    def register(self, module: nn.Module) -> RemovableHandleList:
        """Pass the relevance of `module`'s output to its input unchanged."""
        if getattr(module, "inplace", False):
            setattr(module, "inplace", False)  # noqa: B010 (nn.Module's attribute typing)
        return RemovableHandleList([RemovableHandle(self), module.register_forward_hook(self._attach)])

    @staticmethod
    def _attach(module: nn.Module, args: tuple, output: object) -> torch.Tensor | None:
        tensor = _relevance_output(args, output)
        return None if tensor is None else _PassOutput.apply(args[0], [tensor.detach()])


class SignStabilizer:
    """zennit's default stabiliser, `z + eps * sign(z)` with sign(0) = +1, in three arithmetic
    operations instead of six, without a comparison or `torch.where` (on the CPU a `where` over
    1.2 M floats costs 3-4 divisions, a comparison 2): sign(sign(z) + 0.5) is -1 below zero, +1
    elsewhere (-0.0 included), and NaN stays NaN. Same values as zennit's (tested)."""

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = epsilon

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return torch.add(z, torch.sign(torch.sign(z) + 0.5), alpha=self.epsilon)


class LeanZPlus(Lean, ZPlus):
    """zennit's ZPlus, lean. Its denominator W+ x+ + W- x- (+ b+) sums non-negative terms, where
    zennit's stabiliser adds exactly +eps (-0.0 included), so it is `z + eps`; with the negative
    branch skipped, its gradient mapper and reducer add no zero branch. Values as zennit's."""

    negative_branches, positive_branches = (1,), (0,)

    def __init__(self, stabilizer: float = 1e-6, zero_params: str | list[str] | None = None) -> None:
        super().__init__(stabilizer=stabilizer, zero_params=zero_params)

        def gradient_mapper(out_grad: torch.Tensor, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
            z = outputs[0] if outputs[1].ndim == 0 else outputs[0] + outputs[1]
            return [out_grad / (z + stabilizer)] * 2

        def reducer(inputs: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
            positive = inputs[0] * gradients[0]
            return positive if inputs[1].ndim == 0 else torch.addcmul(positive, inputs[1], gradients[1])

        self.gradient_mapper, self.reducer = gradient_mapper, reducer


class LeanGamma(Lean, Gamma):
    """zennit's Gamma, lean."""

    negative_branches, positive_branches = (1, 3), (0, 2)


class LeanEpsilon(Lean, Epsilon):
    """zennit's Epsilon, lean."""


class LeanFlat(Lean, Flat):
    """zennit's Flat, lean (its forward of ones through ones computed once per image shape:
    `Lean._constant_branch`)."""


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
        (Activation, LeanPass()),
        (BatchNorm, LeanPass()),
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


def drop_merged_batch_norms(model: nn.Module, composite: Composite) -> int:
    """Replace each batch norm that `composite`'s canonizers merged into the layer before it by what
    is left of it: `nn.Identity` for a plain norm, the dropout and activation of a timm
    `BatchNormAct2d` (MobileNetV2 has 52: the norm then computes the identity, yet costs a pass over
    its activation and a hook). Returns how many. Only for a dedicated copy: they are not put back
    on `remove()`."""
    from timm.layers import BatchNormAct2d

    merged = {id(handle.batch_norm) for handle in composite.handles if isinstance(handle, MergeBatchNorm)}
    dropped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) not in merged:
                continue
            if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
            elif type(child) is BatchNormAct2d:
                setattr(parent, name, nn.Sequential(child.drop, child.act))
            else:
                continue
            dropped += 1
    return dropped
