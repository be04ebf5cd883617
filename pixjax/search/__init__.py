"""Search: evolutionary operators, archives, encodings and the fooling-images search
(Nguyen, Yosinski & Clune, CVPR 2015).

* :mod:`~pixjax.search.operators`: polynomial mutation, SBX crossover (sferes2's
  ``EvoFloat``);
* :mod:`~pixjax.search.map_elites`: the one-cell-per-class archive;
* :mod:`~pixjax.search.evolve`: the :class:`Encoding` protocol and one generation;
* :mod:`~pixjax.search.direct`: the direct encoding;
* :mod:`~pixjax.search.targets`: fitness from a network or an ensemble.
"""

from pixjax.search.direct import DirectSettings, direct_encoding
from pixjax.search.evolve import (
    Encoding,
    SearchState,
    init_state,
    make_generation,
    render_population,
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
from pixjax.search.targets import target_probs

__all__ = [
    "DirectSettings",
    "direct_encoding",
    "Encoding",
    "SearchState",
    "init_state",
    "make_generation",
    "render_population",
    "UPDATE_RULES",
    "Archive",
    "add",
    "empty_archive",
    "select_parents",
    "polynomial_delta",
    "polynomial_mutation",
    "sbx_children",
    "sbx_crossover",
    "target_probs",
]
