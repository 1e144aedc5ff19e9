"""Camera paths through a workspace's scene and videos along them, for every trained backend.

* :mod:`recon3d.render.paths` -- the paths (``orbit``, ``interp``) and their intrinsics.
* :mod:`recon3d.render.video` -- rendering a path with any renderer, writing MP4 or PNG frames.

Backends are reached only through :mod:`recon3d.core.registry` (each method's ``renderer``), so
this package imports neither torch nor a backend.
"""
