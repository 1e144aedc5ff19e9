"""recon3d's compact nerfacto-style NeRF, in plain torch.

Pieces, each a small module with shapes in its docstrings:

* :mod:`~recon3d.nerf.encoding` - multiresolution hash grid, spherical-harmonic directions.
* :mod:`~recon3d.nerf.contraction` - scene contraction (unbounded) and the axis-aligned box (objects).
* :mod:`~recon3d.nerf.field` - density and view-dependent colour MLPs, proposal density fields.
* :mod:`~recon3d.nerf.sampling` - uniform / lin-disp spacing, PDF resampling for proposal levels.
* :mod:`~recon3d.nerf.renderer` - volume-rendering weights, compositing, interlevel and distortion losses.
* :mod:`~recon3d.nerf.model` - the model: rays -> two proposal levels -> field -> pixels.
* :mod:`~recon3d.nerf.scene` - world-to-model normalisation and near/far from SfM points.
* :mod:`~recon3d.nerf.train` - the ``recon3d train --method nerf`` stage; :mod:`~recon3d.nerf.evaluate` its metrics.
* :mod:`~recon3d.nerf.render` - the trained model as a renderer for `recon3d render` (paths and videos: :mod:`recon3d.render`).

Heavy imports (torch) happen inside these modules, never in ``recon3d.nerf`` itself.
"""
