"""The per-layer measures, on numpy arrays, written against their papers.

* ``linear_cka``: linear centred kernel alignment (Kornblith et al. 2019, eq. 5):
  ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on column-centred X, Y; 1 for the same representation,
  invariant to orthogonal transforms and isotropic scaling. It is the *biased* estimator: for
  unrelated features its value grows with the width of the layers at a fixed number of images
  (about 0.1 at width 128 and 0.8 at 4,096 with 1,000 images), so it compares layers of
  different widths badly.
* ``debiased_cka``: the same alignment from the unbiased HSIC estimator (Song et al. 2012, as
  used for CKA by Nguyen et al. 2021): about 0 for unrelated features at any width.
* ``logme``: the log maximum evidence of a Bayesian linear model from features to each
  one-hot target column, averaged over classes (You et al. 2021, Algorithm 1), per sample.
* ``leep``: the log expected empirical prediction (Nguyen et al. 2020, eq. 2) from a source
  classifier's probabilities over its own classes and the target labels.
* ``ridge_probe``: the linear probe: standardise features with the training set's statistics,
  fit ridge regression (with a bias) to one-hot targets, predict by arg max; the ridge penalty
  is chosen by 3-fold cross-validation on the training images (``RIDGE_GRID`` x n), the test
  images are never looked at. Deterministic, closed form (one SVD per fold).
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


def debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA from the unbiased HSIC estimator: HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L))
    with K = xx', L = yy' (n >= 4 examples)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 4:
        raise ValueError("debiased CKA needs at least 4 examples")

    def hsic(k: np.ndarray, l: np.ndarray) -> float:
        k, l = k.copy(), l.copy()
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(l, 0.0)
        ones_k, ones_l = k.sum(0), l.sum(0)
        value = (np.sum(k * l) + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * float(ones_k @ ones_l))
        return value / (n * (n - 3))

    gram_x, gram_y = x @ x.T, y @ y.T
    denominator = hsic(gram_x, gram_x) * hsic(gram_y, gram_y)
    return float(hsic(gram_x, gram_y) / np.sqrt(denominator)) if denominator > 0 else 0.0


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


RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # ridge penalties tried, times the number of training images
FOLDS = 3


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return [np.hstack([(part - mean) / std, np.ones((len(part), 1))]) for part in (train, *others)]


def _ridge_predictions(a: np.ndarray, targets: np.ndarray, b: np.ndarray, penalties: list[float]) -> list[np.ndarray]:
    """Predicted class of every row of ``b`` for each ridge penalty, from one thin SVD of ``a``."""
    u, sigma, vt = np.linalg.svd(a, full_matrices=False)
    projected_targets = u.T @ targets  # k x classes
    projected_b = b @ vt.T  # rows of b in the right singular basis
    out = []
    for penalty in penalties:
        weights = (sigma / (sigma ** 2 + penalty))[:, None] * projected_targets
        out.append((projected_b @ weights).argmax(1))
    return out


def ridge_penalty(train_x: np.ndarray, train_y: np.ndarray) -> float:
    """The ridge penalty (from RIDGE_GRID x n) with the best mean top-1 over FOLDS folds of the
    training images (a seeded split); ties go to the larger penalty."""
    n = len(train_x)
    order = np.random.default_rng(0).permutation(n)
    classes = int(train_y.max()) + 1
    scores = np.zeros(len(RIDGE_GRID))
    for fold in range(FOLDS):
        held = order[fold::FOLDS]
        kept = np.setdiff1d(order, held)
        a, b = _standardise(np.asarray(train_x[kept], dtype=np.float64), np.asarray(train_x[held], dtype=np.float64))
        penalties = [factor * len(kept) for factor in RIDGE_GRID]
        for i, predicted in enumerate(_ridge_predictions(a, np.eye(classes)[train_y[kept]], b, penalties)):
            scores[i] += np.mean(predicted == train_y[held])
    best = max(range(len(RIDGE_GRID)), key=lambda i: (round(scores[i], 12), i))
    return RIDGE_GRID[best] * n


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                penalty: float | None = None) -> float:
    """Top-1 on (val_x, val_y) of the linear probe trained on (train_x, train_y), its ridge penalty
    chosen on the training images (``ridge_penalty``) unless given."""
    train_x = np.asarray(train_x, dtype=np.float64)
    val_x = np.asarray(val_x, dtype=np.float64)
    penalty = ridge_penalty(train_x, train_y) if penalty is None else penalty
    a, b = _standardise(train_x, val_x)
    classes = int(max(train_y.max(), val_y.max())) + 1
    [predicted] = _ridge_predictions(a, np.eye(classes)[train_y], b, [penalty])
    return float(np.mean(predicted == val_y))
