"""Search: evolutionary operators, archives, encodings and the fooling-images search
(Nguyen, Yosinski & Clune, CVPR 2015).

* :mod:`~pixjax.search.operators`: polynomial mutation, SBX crossover (sferes2's
  ``EvoFloat``);
* :mod:`~pixjax.search.map_elites`: the one-cell-per-class archive;
* :mod:`~pixjax.search.evolve`: the :class:`Encoding` protocol and one generation;
* :mod:`~pixjax.search.direct`: the direct encoding;
* :mod:`~pixjax.search.cppn`: the CPPN encoding (padded genomes, any resolution, HSL);
* :mod:`~pixjax.search.ascent`: gradient-ascent fooling images;
* :mod:`~pixjax.search.differential`: differential evolution (the few-pixel attack,
  :mod:`pixjax.attacks.few_pixel`);
* :mod:`~pixjax.search.targets`: fitness from a network or an ensemble.
"""

from pixjax.search.ascent import (
    AscentResult,
    AscentSettings,
    fooling_ascent,
    make_ascent,
    settings_grid,
)
from pixjax.search.cppn import CPPNGenome, CPPNSettings, cppn_encoding, render
from pixjax.search.differential import DEResult, DESettings, minimise
from pixjax.search.direct import DirectSettings, direct_encoding
from pixjax.search.evolve import (
    Encoding,
    SearchRun,
    SearchState,
    first_reaching,
    init_state,
    make_generation,
    render_population,
    search,
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
    "AscentResult",
    "AscentSettings",
    "fooling_ascent",
    "make_ascent",
    "settings_grid",
    "CPPNGenome",
    "CPPNSettings",
    "cppn_encoding",
    "render",
    "SearchRun",
    "first_reaching",
    "search",
    "DEResult",
    "DESettings",
    "minimise",
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
