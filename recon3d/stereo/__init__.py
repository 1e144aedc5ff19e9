"""Stereo depth: rectification, semi-global matching, depth, point clouds, fusion, evaluation.

Modules (each small and usable on its own):

* :mod:`~recon3d.stereo.rectify` – loading pairs and ``stereo.json``, rectification, rigs from poses
* :mod:`~recon3d.stereo.disparity` – tuned OpenCV SGBM (padding, left-right check, sub-pixel refinement)
* :mod:`~recon3d.stereo.depth` – depth from disparity, point clouds, PLY, coloured disparity
* :mod:`~recon3d.stereo.pfm` – Middlebury PFM files
* :mod:`~recon3d.stereo.pair` – the ``recon3d stereo LEFT RIGHT`` stage
* :mod:`~recon3d.stereo.sfm_pairs` – choosing stereo pairs in an SfM model
* :mod:`~recon3d.stereo.fusion` – multi-view consistency filter and TSDF fusion (Open3D)
* :mod:`~recon3d.stereo.mvs` – the ``recon3d stereo WS`` stage
* :mod:`~recon3d.stereo.evaluate` – disparity, depth and surface metrics against ground truth

Conventions: disparities are ``x_left - x_right`` in pixels of the rectified images; depth is
z in the rectified-left camera; all ``K`` use COLMAP pixel centres (see :mod:`recon3d.geometry`).
"""
