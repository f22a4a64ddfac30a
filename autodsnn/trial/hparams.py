"""What a trial is: the searched hyperparameters (:class:`HParams`) and the fixed task (:class:`Task`).

Each field is declared once, here: its default, its choices and its help text (field metadata).
The `autodsnn train` flags, the search-space checks and the validation all read them from here.
Metadata keys: ``help`` (a field without it is not a command-line flag), ``flags`` (option
strings; default ``--field-name``), ``choices`` (a function returning the valid values, read at
call time so registered shift modes count), ``parse`` (turns a flag's text into the value),
``action``/``nargs``/``metavar``/``pair`` (the DeepShift flags that do not map one to one).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import AutoDSNNError
from ..shift import WEIGHT_MODES, ShiftConfig, ShiftConfigError
from ..shift.kernels import DEPLOY_MODES
from ..shift.quant import ROUNDINGS
from .optim import MOMENTUM_OPTIMIZERS, OPTIMIZERS

SCHEDULES = ("constant", "cosine", "step")


class HParamsError(AutoDSNNError, ValueError):
    """A hyperparameter value that cannot be trained; the message names it and the valid values."""


def shift_types() -> tuple[str, ...]:
    """"none" (a float network) and every registered shift mode (DeepShift-Q, -PS, DenseShift, ...)."""
    return ("none", *WEIGHT_MODES)


def inference_kernels() -> tuple[str, ...]:
    """How a trial's measured inference pass runs: a deploy mode of the native kernels, or the
    training emulation."""
    return (*DEPLOY_MODES, "emulation")


def parse_depth(text: str) -> int | str:
    """'all', '1000' (DeepShift's "all layers") or a non-negative layer count."""
    if str(text).lower() in ("all", "1000"):
        return "all"
    try:
        n = int(text)
    except ValueError:
        raise HParamsError(f"shift depth must be an integer or 'all', got {text!r}") from None
    if n < 0:
        raise HParamsError(f"shift depth must be >= 0, got {n}")
    return n


def parse_shift_max(text: str) -> int | str:
    """'auto' (per layer) or an integer exponent."""
    if str(text) == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise HParamsError(f"shift_max must be an integer exponent or 'auto', got {text!r}") from None


def _hp(default: Any, help: str, **meta: Any) -> Any:  # noqa: A002 - argparse's own word
    return field(default=default, metadata={"help": help, **meta})


def _choices(values: Callable[[], tuple[str, ...]] | tuple[str, ...]) -> Callable[[], tuple[str, ...]]:
    return values if callable(values) else (lambda: values)


@dataclass(frozen=True)
class HParams:
    """The DSNN and training hyperparameters of one trial (what the optimizer searches)."""

    shift_type: str = _hp("ps", "q = DeepShift-Q (zero-free), ps = DeepShift-PS, dense = DenseShift (zero-free), "
                                "none = float",
                          flags=("--shift-type", "-st"), choices=shift_types, parse=str.lower)
    shift_depth: int | str = _hp("all", "convert the first N convertible layers counted from the input, or 'all'",
                                 flags=("--shift-depth", "-sd"), parse=parse_depth)
    weight_bits: int = _hp(5, "bits per weight code, 2..8", flags=("--weight-bits", "-wb"), parse=int)
    # per layer, least rounding error: a fixed 0 flushes most weights of 2-3 bit nets to zero
    shift_max: int | str = _hp("auto", "largest weight exponent (0: |w| <= 1; > 0 allows left shifts) or 'auto' "
                                       "per layer", parse=parse_shift_max)
    zero_level: bool | None = _hp(None, "q only: spend one weight code on 0 (DeepShift-Q's code set is zero-free; "
                                        "autodsnn <= 0.2's q had this zero level)", action="store_true")
    act_int_bits: int | None = _hp(None, "fixed-point activations: integer and fraction bits (default: float "
                                         "activations)", flags=("--activation-bits", "-ab"), nargs=2, parse=int,
                                   metavar=("INT", "FRAC"), pair="act_frac_bits")
    act_frac_bits: int | None = None   # set with act_int_bits by --activation-bits INT FRAC
    act_signed: bool = _hp(True, "fixed-point activations without a sign bit", flags=("--unsigned-activations",),
                           action="store_false")
    rounding: str = _hp("deterministic", "weight rounding in training", flags=("--rounding", "-r"),
                        choices=ROUNDINGS)
    optimizer: str = _hp("radam", "optimizer by name", flags=("--optimizer", "--opt"), choices=OPTIMIZERS,
                         parse=str.lower)
    lr: float = _hp(0.01, "learning rate", parse=float)
    momentum: float = _hp(0.0, f"momentum ({', '.join(MOMENTUM_OPTIMIZERS)} only)", parse=float)
    weight_decay: float = _hp(0.0, "weight decay of float weights (never of shift latents)",
                              flags=("--weight-decay", "--wd"), parse=float)
    batch_size: int = _hp(64, "training batch size", flags=("--batch-size", "-b"), parse=int)
    schedule: str = _hp("constant", "learning-rate schedule over the schedule horizon", choices=SCHEDULES)
    lr_step: int = _hp(0, "step schedule: decay every N epochs (0: never)", parse=int)
    lr_gamma: float = _hp(0.1, "step schedule: factor per decay", parse=float)
    # A design per layer group (search spaces with per_layer:): group name -> "ps:5", "q:3" or
    # "none"; a group is a layer, or a block/stage prefix of layer names. Replaces shift_type,
    # shift_depth and weight_bits; the other shift settings apply to every shifted group.
    layer_designs: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        set_("shift_type", str(self.shift_type).lower())
        if self.layer_designs is not None:
            set_("layer_designs", {str(g): _design(g, d) for g, d in dict(self.layer_designs).items()})
        set_("optimizer", str(self.optimizer).lower())
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in _choices(allowed)():
                raise HParamsError(f"unknown {f.name} {getattr(self, f.name)!r}: use one of "
                                   f"{', '.join(_choices(allowed)())}")
        if not self.lr > 0:
            raise HParamsError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise HParamsError(f"batch_size must be positive, got {self.batch_size}")
        if not 0.0 <= self.momentum < 1.0:  # at 1 the velocity never decays; above it grows each step
            raise HParamsError(f"momentum must be in [0, 1), got {self.momentum}: 0.9 is the usual value")
        if self.momentum and self.optimizer not in MOMENTUM_OPTIMIZERS:
            raise HParamsError(f"momentum={self.momentum} has no effect with {self.optimizer}: it applies to "
                               f"{', '.join(MOMENTUM_OPTIMIZERS)}")
        if self.shift_type != "none" or self.layer_designs:
            try:
                self.shift_config("all")  # validates bits, range, rounding, activation format
                self.layer_map()
            except ShiftConfigError as exc:
                raise HParamsError(str(exc)) from None

    @property
    def shifts(self) -> bool:
        """Whether any layer is to be shifted."""
        if self.layer_designs is not None:
            return any(d != "none" for d in self.layer_designs.values())
        return self.shift_type != "none"

    def layer_map(self) -> dict[str, ShiftConfig | None] | None:
        """The per-layer map for ``convert`` (None without layer designs): each group's name and
        its sub-layers (``group.*``) to that group's design, with this trial's other shift settings."""
        if self.layer_designs is None:
            return None
        out: dict[str, ShiftConfig | None] = {}
        for group, design in self.layer_designs.items():
            cfg = None
            if design != "none":
                mode, bits = design.split(":")
                cfg = dataclasses.replace(self.shift_config("all"), mode=mode, weight_bits=int(bits),
                                          zero_level=self.zero_level if mode == "q" else None)
            out[group] = out[f"{group}.*"] = cfg
        return out

    def shift_config(self, depth: int | str | None = None) -> ShiftConfig:
        depth = self.shift_depth if depth is None else depth
        return ShiftConfig(mode=self.shift_type, weight_bits=int(self.weight_bits), shift_max=self.shift_max,
                           zero_level=None if self.zero_level is None else bool(self.zero_level),
                           rounding=self.rounding, act_int_bits=self.act_int_bits, act_frac_bits=self.act_frac_bits,
                           act_signed=bool(self.act_signed), shift_depth=depth)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def choices(cls) -> dict[str, tuple[Any, ...]]:
        """Field -> its valid values, for the fields that have a fixed set."""
        return {f.name: _choices(f.metadata["choices"])() for f in dataclasses.fields(cls) if "choices" in f.metadata}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "HParams":
        """Build from a (SMAC) configuration: numpy scalars are cast, unknown keys rejected. A
        per-layer space's ``type:<group>`` and ``bits:<group>`` entries become ``layer_designs``."""
        values = _collect_layer_designs(values)
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise HParamsError(f"unknown hyperparameter {unknown[0]!r}: valid ones are {', '.join(cls.names())}")
        clean = {k: plain(v) for k, v in values.items()}
        if isinstance(clean.get("shift_depth"), float):
            clean["shift_depth"] = int(clean["shift_depth"])
        try:
            return cls(**clean)
        except TypeError as exc:  # a value of the wrong type deep in validation
            raise HParamsError(f"bad hyperparameter value: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.layer_designs is not None:  # the per-layer designs replace these three
            for name in ("shift_type", "shift_depth", "weight_bits"):
                d.pop(name)
        return d


LAYER_TYPE_KEY, LAYER_BITS_KEY = "type:", "bits:"  # per-layer space hyperparameters: type:<group>, bits:<group>


def _design(group: str, design: Any) -> str:
    """``design`` as "mode:bits" or "none"; raises HParamsError naming the group."""
    text = str(design).lower()
    if text == "none":
        return text
    mode, _, bits = text.partition(":")
    if mode not in shift_types() or mode == "none" or not bits.isdigit():
        raise HParamsError(f"layer group {group!r}: design {design!r} must be 'none' or '<type>:<bits>' with type in "
                           f"{', '.join(t for t in shift_types() if t != 'none')}, e.g. 'ps:5'")
    return f"{mode}:{int(bits)}"


def layer_designs_of(config: Mapping[str, Any]) -> dict[str, str] | None:
    """A stored configuration's per-layer designs (group -> "ps:5" / "none"), None for a global design."""
    if "layer_designs" in config:
        return dict(config["layer_designs"])
    if not any(str(k).startswith(LAYER_TYPE_KEY) for k in config):
        return None
    return _collect_layer_designs({k: v for k, v in config.items()
                                   if str(k).startswith((LAYER_TYPE_KEY, LAYER_BITS_KEY))})["layer_designs"]


def _collect_layer_designs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fold a per-layer configuration's type:<group> / bits:<group> entries into layer_designs."""
    types = {k[len(LAYER_TYPE_KEY):]: plain(v) for k, v in values.items() if k.startswith(LAYER_TYPE_KEY)}
    bits = {k[len(LAYER_BITS_KEY):]: plain(v) for k, v in values.items() if k.startswith(LAYER_BITS_KEY)}
    if not types and not bits:
        return dict(values)
    if set(bits) - set(types):
        group = sorted(set(bits) - set(types))[0]
        raise HParamsError(f"bits:{group} has no type:{group} beside it")
    clashes = [k for k in ("shift_type", "shift_depth", "weight_bits", "layer_designs") if k in values]
    if clashes:
        raise HParamsError(f"per-layer designs (type:<group>) replace {clashes[0]}: drop it from the space or the "
                           "fixed values")
    rest = {k: v for k, v in values.items() if not k.startswith((LAYER_TYPE_KEY, LAYER_BITS_KEY))}
    designs = {}
    for group, kind in types.items():
        kind = str(kind).lower()
        if kind == "none":
            designs[group] = "none"
        elif group not in bits:
            raise HParamsError(f"type:{group} is {kind!r} but bits:{group} is missing: give it a weight width")
        else:
            designs[group] = f"{kind}:{int(bits[group])}"
    return {**rest, "layer_designs": designs}


@dataclass(frozen=True)
class Task:
    """What a trial trains on (fixed for a whole optimization run)."""

    dataset: str = _hp("mnist", "data set by name (`autodsnn datasets`)")
    model: str = _hp("mnist-conv", "model by name (`autodsnn models`)")
    data_dir: str | None = _hp(None, "where the data set's files are (default: offline copies, then download)")
    val_fraction: float = _hp(0.1, "fraction of the training split held out for validation", parse=float)
    split_seed: int = 0
    train_subset: float | None = _hp(None, "fraction of the training part to train on (a second fidelity)",
                                     parse=float)
    weights: str | None = _hp(None, "start from this float checkpoint (ours)")
    pretrained: bool = _hp(False, "torchvision's pretrained weights (needs a network)", action="store_true")
    device: str = _hp("auto", "auto, cpu, cuda or cuda:N")
    schedule_epochs: float | None = None  # LR schedule horizon; the optimizer sets max budget
    eval_batch_size: int = 1000
    measure_inference: bool = True
    # Validate after every epoch (a learning curve in the trial's history) or only once, after the
    # last: the search reads only the final figure, and on a small training subset each
    # validation pass can cost as much as an epoch. Training is the same either way.
    validate_each_epoch: bool = True
    inference_kernels: str = _hp("float", "how the measured inference pass runs: deployed kernels in this mode, "
                                          "or the emulation", choices=inference_kernels)
    inference_window: float = _hp(0.25, "seconds per metered inference repetition (each batch size)", parse=float)
    inference_repeats: int = _hp(3, "metered inference repetitions per batch size (median and IQR)", parse=int)
    inference_batch: int = _hp(64, "the throughput batch of the inference measurement (latency is at batch 1)",
                               parse=int)
    country: str | None = _hp(None, "ISO code of the country whose carbon intensity sets emissions "
                                    "(default $AUTODSNN_COUNTRY or DEU)")

    def with_absolute_paths(self) -> "Task":
        """This task with ``data_dir`` and ``weights`` made absolute where it is called (the driver),
        so a worker in another working directory reads the same files. URLs stay as they are."""
        def absolute(p: str | None) -> str | None:
            return p if p is None or "://" in p else str(Path(p).expanduser().resolve())
        return dataclasses.replace(self, data_dir=absolute(self.data_dir), weights=absolute(self.weights))

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise HParamsError(f"val_fraction={self.val_fraction}: use a fraction in [0, 1)")
        if self.train_subset is not None and not (0 < self.train_subset <= 1 or
                                                  (float(self.train_subset).is_integer() and self.train_subset >= 1)):
            raise HParamsError(f"train_subset={self.train_subset}: use a fraction in (0, 1] or a number of images")
        if not (self.inference_window > 0 and self.inference_repeats >= 1 and self.inference_batch >= 1):
            raise HParamsError(f"inference_window ({self.inference_window}), inference_repeats "
                               f"({self.inference_repeats}) and inference_batch ({self.inference_batch}) must be "
                               "positive")
        if self.inference_kernels not in inference_kernels():
            raise HParamsError(f"inference_kernels={self.inference_kernels!r}: use one of "
                               f"{', '.join(inference_kernels())}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plain(value: Any) -> Any:
    """numpy scalars (as SMAC hands them over) -> Python scalars."""
    return value.item() if hasattr(value, "item") and not hasattr(value, "requires_grad") else value


# Task settings that do not change what is trained: a checkpoint stays valid across them.
_RUN_ONLY = ("device", "eval_batch_size", "measure_inference", "validate_each_epoch", "inference_kernels", "country",
             "inference_window", "inference_repeats", "inference_batch")


def config_key(hparams: HParams, task: Task) -> str:
    """A stable id of (hyperparameters, task): checkpoints continue only the same configuration."""
    payload = json.dumps({"h": hparams.to_dict(),
                          "t": {k: v for k, v in task.to_dict().items() if k not in _RUN_ONLY}},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
