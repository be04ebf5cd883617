"""Type aliases shared across pixjax.

Conventions:
  * ``Image``: ``[H, W, C]`` float32 in ``[0, 1]`` (uint8 ``0..255`` on disk / in datasets).
  * ``Batch``: ``[N, H, W, C]`` of the same.
  * ``Logits``: ``[N, num_classes]`` float32, unnormalised.
"""

from collections.abc import Callable
from typing import Any

import jax

PRNGKey = jax.Array
Array = jax.Array
Image = jax.Array
Batch = jax.Array
Logits = jax.Array
Labels = jax.Array
PyTree = Any
LogitsFn = Callable[[Batch], Logits]
