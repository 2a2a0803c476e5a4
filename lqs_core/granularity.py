"""Scale granularities: which axis of a parameter keeps its own scale (docs/method.md §1.2).

The scale ``s`` of a parameter ``P`` keeps the size of one axis of ``P`` and is 1 elsewhere; the *slice* of a
scale element ``s_k`` is every element of ``P`` that shares it.

| name          | Dense ``W (in, out)`` | Conv2D ``K (kh, kw, cin, cout)`` |
|---------------|-----------------------|----------------------------------|
| ``scalar``    | ``(1, 1)``            | ``(1, 1, 1, 1)``                 |
| ``rowwise``   | ``(in, 1)``  axis 0   | ``(kh, 1, 1, 1)``  axis 0        |
| ``columnwise``| ``(1, out)`` axis 1   | ``(1, kw, 1, 1)``  axis 1        |
| ``channelwise``| not defined          | ``(1, 1, cin, 1)`` axis 2        |
| ``outputwise``| ``(1, out)`` axis -1  | ``(1, 1, 1, cout)`` axis 3       |

``outputwise`` (per output channel / filter, the field's usual "per-channel") and an explicit integer ``axis``
go beyond the thesis; the four thesis names mean exactly what the table says.
"""

from __future__ import annotations

from typing import Optional, Sequence

GRANULARITIES = ("scalar", "rowwise", "columnwise", "channelwise", "outputwise")


def validate_granularity(granularity: str) -> str:
    """Return ``granularity`` if it is one of :data:`GRANULARITIES`, else raise a ``ValueError`` naming it."""
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"Unknown granularity {granularity!r}; allowed: {', '.join(GRANULARITIES)} "
            "(or pass an integer `axis=`)."
        )
    return granularity


def scale_axis(granularity: str, ndim: int, axis: Optional[int] = None) -> Optional[int]:
    """The axis of a ``ndim``-D parameter that keeps its size in the scale, or ``None`` for one scale.

    An explicit ``axis`` wins over ``granularity``. Raises ``ValueError`` where the granularity is not defined for
    the parameter's rank (``channelwise`` needs a 4-D Conv2D kernel, ``columnwise`` at least 2 dimensions).
    """
    if axis is not None:
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis={axis} is out of range for a {ndim}-D parameter.")
        return axis % ndim
    validate_granularity(granularity)
    if granularity == "scalar":
        return None
    if granularity == "rowwise":
        return 0
    if granularity == "columnwise":
        if ndim < 2:
            raise ValueError(f"granularity 'columnwise' needs a parameter with at least 2 dimensions, got {ndim}-D.")
        return 1
    if granularity == "channelwise":
        if ndim != 4:
            raise ValueError(
                "granularity 'channelwise' (input channels, axis 2) is defined only for Conv2D kernels "
                f"(kh, kw, cin, cout); got a {ndim}-D parameter. Use 'scalar', 'rowwise' or 'columnwise' for Dense."
            )
        return 2
    return ndim - 1  # outputwise


def scale_shape(param_shape: Sequence[int], granularity: str = "scalar", axis: Optional[int] = None) -> tuple:
    """Shape of the scale of a parameter of shape ``param_shape``: the kept axis' size there, 1 elsewhere."""
    shape = tuple(int(d) for d in param_shape)
    kept = scale_axis(granularity, len(shape), axis)
    return tuple(d if i == kept else 1 for i, d in enumerate(shape))


def reduce_axes(param_ndim: int, kept_axis: Optional[int]) -> list:
    """The axes of ``P`` a scale slice spans: every axis except the kept one."""
    return [i for i in range(param_ndim) if i != kept_axis]
