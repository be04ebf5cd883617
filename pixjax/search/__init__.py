"""Search: evolutionary operators for fooling-image and few-pixel searches (issue 13:
in progress; so far the variation operators of the direct encoding)."""

from pixjax.search.operators import (
    polynomial_delta,
    polynomial_mutation,
    sbx_children,
    sbx_crossover,
)

__all__ = [
    "polynomial_delta",
    "polynomial_mutation",
    "sbx_children",
    "sbx_crossover",
]
