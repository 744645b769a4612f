"""jstyle: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) in JAX.

``jstyle.stylize(content, style, **config)`` runs a whole style transfer in memory
(see :mod:`jstyle.api`). The paper's losses live in :mod:`jstyle.losses`, the network
in :mod:`jstyle.vgg`, eq. 7 wired to the network in :mod:`jstyle.objective`, the
optimisers in :mod:`jstyle.optimize`, and the command line in :mod:`jstyle.run`.
"""

__version__ = "0.11.0"

__all__ = ["__version__", "stylize"]


def __getattr__(name: str):
    if name == "stylize":  # imported on first use: `import jstyle` stays light
        from jstyle.api import stylize

        return stylize
    raise AttributeError(f"module 'jstyle' has no attribute {name!r}")
