"""Search: evolutionary operators and archives for fooling-image and few-pixel searches
(issue 13, in progress: so far the direct encoding's variation operators, the
MAP-Elites archive and the direct-encoding generation step)."""

from pixjax.search.direct import (
    DirectSettings,
    SearchState,
    init_state,
    make_generation,
)
from pixjax.search.map_elites import (
    UPDATE_RULES,
    Archive,
    add,
    empty_archive,
    select_parents,
)
from pixjax.search.operators import (
    polynomial_delta,
    polynomial_mutation,
    sbx_children,
    sbx_crossover,
)

__all__ = [
    "DirectSettings",
    "SearchState",
    "init_state",
    "make_generation",
    "UPDATE_RULES",
    "Archive",
    "add",
    "empty_archive",
    "select_parents",
    "polynomial_delta",
    "polynomial_mutation",
    "sbx_children",
    "sbx_crossover",
]
