"""The pipeline's stages: each a function of its inputs and a stage config (a dataclass checked on construction)."""


def is_number(v) -> bool:
    """An int or a float, not a bool (YAML's `true` is an int to isinstance): what a numeric config value or
    metric must be."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_integer(v) -> bool:
    """An int, not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)
