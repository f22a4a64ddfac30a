"""Every code set a config can ask for, by name, for tests that sweep "every mode": "q", "ps",
"dense", and "q+zero" (q with its optional zero level)."""
from autodsnn.shift import ShiftConfig
from autodsnn.shift.modes import code_set_variants, weight_mode

VARIANTS = [m if z == weight_mode(m).has_zero else f"{m}+zero" for m, z in code_set_variants()]


def split(variant: str) -> tuple[str, bool | None]:
    """'q+zero' -> ('q', True); 'ps' -> ('ps', None): the mode and the config's zero_level."""
    return (variant[:-5], True) if variant.endswith("+zero") else (variant, None)


def config(variant: str, **kwargs) -> ShiftConfig:
    mode, zero_level = split(variant)
    return ShiftConfig(mode=mode, zero_level=zero_level, **kwargs)
