"""Browser viewer (viser): cameras, points, splats, stereo clouds and renders of a workspace, live during training.

* ``recon3d view WS`` serves :class:`~recon3d.viewer.app.ViewerApp` (see :mod:`recon3d.cli.view`).
* ``recon3d train WS --view`` uses :class:`~recon3d.viewer.live.LiveViewer` as the training monitor.

Modules: :mod:`.data` (arrays: cameras, reprojection error, splat covariances, reports; no viser),
:mod:`.colors` (colour maps and legends), :mod:`.layers` (scene nodes), :mod:`.panels` (GUI panels),
:mod:`.server` (safe server start, client camera conversions), :mod:`.app`, :mod:`.live`.
"""
