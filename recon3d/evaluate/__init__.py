"""Evaluation of a workspace: reprojection error, pose error against ground truth, image metrics.

:func:`evaluate_workspace` gathers it all into ``reports/eval.json``; :mod:`.poses` holds the
pose-error measures and :mod:`.images` PSNR and SSIM. The alignment and the reprojection error
themselves are geometry (:mod:`recon3d.geometry.align`, :mod:`recon3d.geometry.reprojection`).
"""

from recon3d.evaluate.poses import (
           AUC_THRESHOLDS_DEG,
           PoseEvaluation,
           evaluate_poses,
           pose_auc,
           relative_pose_errors,
)
from recon3d.evaluate.report import evaluate_stage, evaluate_workspace, format_report

__all__ = ["AUC_THRESHOLDS_DEG", "PoseEvaluation", "evaluate_poses", "evaluate_stage", "evaluate_workspace",
           "format_report", "pose_auc", "relative_pose_errors"]
