"""recon3d: from a folder of photos to calibrated cameras, sparse and dense 3D, splats and NeRFs.

The package is a pipeline of stages that pass a :class:`recon3d.workspace.Workspace`
folder between them. Conventions (rotation, quaternion order, pixel centres) are
stated once, in :mod:`recon3d.geometry`.
"""

__version__ = "0.1.0"
