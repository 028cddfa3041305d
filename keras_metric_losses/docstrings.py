"""Docstring parts shared by several public objects (an Args block, a Raises block, ...).

`python -OO` strips docstrings (`fn.__doc__` is `None`), so a docstring must not be built with
`fn.__doc__ += ...` at import time; `append` builds it and leaves a stripped one alone.
"""


def append(*parts, **fields):
    """A decorator that appends `parts` to the decorated object's docstring.

    Each part is a block indented like the docstring body (four spaces). With `fields`, every
    part is filled in with `str.format(**fields)` (so literal braces are written `{{ }}`).
    A docstring stripped by `python -OO` stays `None`.

    Args:
        *parts: Strings appended in order.
        **fields: Values of the `{name}` placeholders in `parts`.

    Returns:
        A decorator returning the object itself, its `__doc__` extended.

    Example:

    >>> from keras_metric_losses import docstrings
    >>> @docstrings.append("\\n    Args:\\n        x: A {what}.\\n", what="number")
    ... def double(x):
    ...     '''Doubles `x`.
    ...     '''
    ...     return 2 * x
    >>> print(double.__doc__)
    Doubles `x`.
    <BLANKLINE>
        Args:
            x: A number.
    <BLANKLINE>
    """
    text = "".join(part.format(**fields) if fields else part for part in parts)

    def decorate(obj):
        if obj.__doc__ is not None:
            obj.__doc__ = obj.__doc__.rstrip(" ") + text
        return obj

    return decorate
