"""jstyle: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) in JAX.

The paper's losses live in :mod:`jstyle.losses`, the network in :mod:`jstyle.vgg`,
eq. 7 wired to the network in :mod:`jstyle.objective`, the optimisers in
:mod:`jstyle.optimize`, and the command line in :mod:`jstyle.run`.
"""

__version__ = "0.1.0"
