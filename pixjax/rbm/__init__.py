"""Bernoulli RBM + logistic regression, the pipeline of the RBM nudge study.

Pure-JAX ports with scikit-learn semantics (``BernoulliRBM``, multinomial
``LogisticRegression``, ``GridSearchCV`` over the pipeline, ``classification_report``):

* :mod:`pixjax.rbm.rbm`: the RBM (sampling, free energy, PCD, ``fit`` as one scan);
* :mod:`pixjax.rbm.logistic`: L2 logistic regression with ``optax.lbfgs`` and the
  RBM -> logistic pipeline;
* :mod:`pixjax.rbm.grid`: k-fold splits and the vectorised grid search;
* :mod:`pixjax.rbm.report`: per-class precision / recall / F1 and the text report.
"""

from pixjax.rbm.grid import PROTOCOL_GRID, Grid, GridResult, grid_search, kfold_indices
from pixjax.rbm.logistic import (
    LogisticInfo,
    LogisticParams,
    PipelineParams,
    fit_logistic,
    fit_pipeline,
    make_fit_logistic,
    pipeline_predict,
    pipeline_predict_proba,
    predict,
    predict_proba,
)
from pixjax.rbm.rbm import (
    RBMParams,
    check_visible,
    fit,
    free_energy,
    gibbs,
    init,
    init_chains,
    make_fit,
    mean_hiddens,
    mean_visibles,
    params_from_sklearn,
    params_to_sklearn,
    pcd_step,
    pcd_uniforms,
    pcd_update,
    sample_hiddens,
    sample_visibles,
    score_samples,
    transform,
)
from pixjax.rbm.report import (
    ClassScores,
    classification_report,
    precision_recall_f1_support,
)

__all__ = [
    "PROTOCOL_GRID",
    "ClassScores",
    "Grid",
    "GridResult",
    "LogisticInfo",
    "LogisticParams",
    "PipelineParams",
    "RBMParams",
    "check_visible",
    "classification_report",
    "fit",
    "fit_logistic",
    "fit_pipeline",
    "free_energy",
    "gibbs",
    "grid_search",
    "init",
    "init_chains",
    "kfold_indices",
    "make_fit",
    "make_fit_logistic",
    "mean_hiddens",
    "mean_visibles",
    "params_from_sklearn",
    "params_to_sklearn",
    "pcd_step",
    "pcd_uniforms",
    "pcd_update",
    "pipeline_predict",
    "pipeline_predict_proba",
    "precision_recall_f1_support",
    "predict",
    "predict_proba",
    "sample_hiddens",
    "sample_visibles",
    "score_samples",
    "transform",
]
