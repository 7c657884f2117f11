"""The per-layer measures, on numpy arrays, written against their papers.

* ``linear_cka``: linear centred kernel alignment (Kornblith et al. 2019, eq. 5):
  ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on column-centred X, Y; 1 for the same representation,
  invariant to orthogonal transforms and isotropic scaling.
* ``logme``: the log maximum evidence of a Bayesian linear model from features to each
  one-hot target column, averaged over classes (You et al. 2021, Algorithm 1), per sample.
* ``leep``: the log expected empirical prediction (Nguyen et al. 2020, eq. 2) from a source
  classifier's probabilities over its own classes and the target labels.
* ``ridge_probe``: the linear probe, a fixed recipe with no search: standardise features
  with the training set's statistics, fit ridge regression (with a bias) to one-hot targets
  with lambda = 1e-3 x n, predict by arg max. Deterministic, closed form.
"""

from __future__ import annotations

import numpy as np


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between representations x (n x p) and y (n x q) of the same n examples."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(0)
    y = y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denominator) if denominator > 0 else 0.0


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` (n x d) for integer ``labels``: mean over classes of the maximised
    log evidence per sample (higher: the features explain the labels better)."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    # Eigen-decomposition of f'f, shared by every class (Algorithm 1's preprocessing).
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0.0, None)
    evidences = []
    for k in np.unique(labels):
        y = (labels == k).astype(np.float64)
        projected = v.T @ (f.T @ y)  # v' f' y
        alpha, beta = 1.0, 1.0
        for _ in range(100):
            gamma = float((beta * s / (alpha + beta * s)).sum())
            m = v @ (beta * projected / (alpha + beta * s))
            m_norm = float(m @ m)
            residual = float(((y - f @ m) ** 2).sum())
            new_alpha = gamma / (m_norm + 1e-12)
            new_beta = (n - gamma) / (residual + 1e-12)
            converged = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < 1e-4
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        m = v @ (beta * projected / (alpha + beta * s))
        m_norm, residual = float(m @ m), float(((y - f @ m) ** 2).sum())
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * s).sum()
                    - beta / 2 * residual - alpha / 2 * m_norm - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def leep(source_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of a source classifier's probabilities (n x source classes) for target ``labels``."""
    theta = np.asarray(source_probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    target_classes = int(labels.max()) + 1
    joint = np.zeros((target_classes, theta.shape[1]))
    np.add.at(joint, labels, theta / n)  # P(y, z)
    conditional = joint / np.clip(joint.sum(0, keepdims=True), 1e-12, None)  # P(y | z)
    expected = (theta * conditional[labels]).sum(1)  # sum_z P(y_i | z) theta_z(x_i)
    return float(np.mean(np.log(np.clip(expected, 1e-12, None))))


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> float:
    """Top-1 on (val_x, val_y) of the fixed linear probe trained on (train_x, train_y)."""
    train_x = np.asarray(train_x, dtype=np.float64)
    val_x = np.asarray(val_x, dtype=np.float64)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (val_x - mean) / std
    a = np.hstack([a, np.ones((len(a), 1))])
    b = np.hstack([b, np.ones((len(b), 1))])
    classes = int(max(train_y.max(), val_y.max())) + 1
    targets = np.eye(classes)[train_y]
    lam = 1e-3 * len(a)
    weights = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ targets)
    return float(np.mean((b @ weights).argmax(1) == val_y))
