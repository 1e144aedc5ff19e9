"""3D Gaussian splatting on gsplat: training from a workspace's SfM poses, evaluation, export.

Modules, smallest first:

- :mod:`recon3d.splat.config`     -- :class:`SplatConfig` and the presets ``splat``, ``splat-mcmc``, ``splat-fast``.
- :mod:`recon3d.splat.rasterize`  -- one render function: gsplat's CUDA rasterizer on GPUs and a
  pure-torch twin (``_rasterize_torch``) built from ``gsplat.cuda._torch_impl`` for CPUs and tests.
- :mod:`recon3d.splat.model`      -- Gaussian parameters: initialisation from sparse points, optimizers,
  conversion to and from :class:`recon3d.gaussians_ply.Splats`.
- :mod:`recon3d.splat.strategy`   -- gsplat densification strategies (and a CPU-capable MCMC).
- :mod:`recon3d.splat.checkpoint` -- atomic checkpoints (parameters, optimizer, strategy, RNG, step).
- :mod:`recon3d.splat.cleanup`    -- the end-of-training removal of Gaussians fewer than 2 training cameras see.
- :mod:`recon3d.splat.evaluate`   -- PSNR/SSIM on held-out views, metrics.json, side-by-side pictures.
- :mod:`recon3d.splat.render`     -- one view of the Gaussians; a trained workspace as a renderer (`recon3d render`).
- :mod:`recon3d.splat.export`     -- ``point_cloud.ply`` and the compact ``.splat`` format.
- :mod:`recon3d.splat.train`      -- the stage function ``train(config, workspace)``.

Nothing here imports torch at module import time except the modules that need it; the CLI imports
:mod:`recon3d.splat.train` only when a splat preset runs.
"""
