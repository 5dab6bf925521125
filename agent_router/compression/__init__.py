"""Compression: fit chat messages into a token budget without losing what matters (blocks, facts, summaries).

The public names are `compressor.__all__`: one list, kept where the names are defined."""

from .compressor import *  # noqa: F403
from .compressor import __all__  # noqa: F401
