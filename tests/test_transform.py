"""Transform properties, each checked from first principles with numpy (never by re-applying the
fitted object's own mean and matrix): whitening, scaling, consistency on new vectors."""

import numpy as np
import pytest
from scipy.linalg import sqrtm
from scipy.stats import ortho_group

from idream.core.transform import fit_transform

D = 24


@pytest.fixture(scope="module")
def E():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3000, D)) @ rng.normal(size=(D, D)) * 0.3 + 2.0


def centred_cov(X):
    """Mean and biased covariance, the textbook way (no np.cov, no eigh)."""
    mu = X.sum(0) / len(X)
    Xc = X - mu
    return mu, Xc.T @ Xc / len(X)


def test_whitened_identity_covariance(E):
    Z = fit_transform(E, "whiten")(E).astype(np.float64)
    mu, C = centred_cov(Z)
    assert np.abs(mu).max() < 1e-4
    assert np.abs(C - np.eye(D)).max() < 1e-3
    # the input was far from white: the check above has something to show
    _, C_in = centred_cov(E)
    assert np.abs(C_in - np.eye(D)).max() > 0.5 and np.abs(E.mean(0)).min() > 1.0


def test_whitening_is_the_inverse_square_root_of_the_covariance(E):
    """ZCA: z = C^{-1/2} (e - μ), with C^{-1/2} from scipy's matrix square root (not eigh)."""
    mu, C = centred_cov(E)
    W = np.linalg.inv(np.real(sqrtm(C)))
    A = fit_transform(E, "whiten")
    assert np.allclose(A(E[:50]), (E[:50] - mu) @ W, atol=1e-3)


def test_zca_is_the_symmetric_whitening_closest_to_the_data(E):
    """Among all whitening matrices (W·Q for orthogonal Q: PCA whitening is one of them), ZCA is
    the symmetric one and moves the centred vectors least (Kessy et al., 2018)."""
    A = fit_transform(E, "whiten")
    W = A.matrix
    assert np.allclose(W, W.T, atol=1e-8)
    assert np.linalg.eigvalsh(W).min() > 0  # positive definite: no axis flipped
    mu, C = centred_cov(E)
    Xc = E - mu
    lam, O = np.linalg.eigh(C)
    pca = O / np.sqrt(lam)  # PCA whitening: rotate onto the principal axes, then scale
    others = [pca] + [W @ Q for Q in ortho_group.rvs(D, size=5, random_state=3)]
    zca_dist = np.linalg.norm(A(E) - Xc)
    for M in others:
        _, CM = centred_cov(Xc @ M)
        assert np.abs(CM - np.eye(D)).max() < 1e-6  # each is a whitening too
        assert zca_dist < 0.99 * np.linalg.norm(Xc @ M - Xc)


def test_scale_unit_mean_variance(E):
    Z = fit_transform(E, "scale")(E).astype(np.float64)
    mu, C = centred_cov(Z)
    assert np.trace(C) / D == pytest.approx(1.0, rel=1e-4)  # mean per-dimension variance 1
    _, C_in = centred_cov(E)
    assert np.trace(C_in) / D > 2  # (it was not 1 before)
    # scale is one positive factor, no centring: Z = a·E, so dot products keep their order
    a = np.sqrt(D / np.trace(C_in))
    assert np.allclose(Z, a * E, rtol=1e-5, atol=1e-5)
    cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)  # noqa: E731
    assert cos(Z[0], Z[1]) == pytest.approx(cos(E[0], E[1]), rel=1e-4)


def test_none_is_the_identity(E):
    assert np.allclose(fit_transform(E, "none")(E[:20]), E[:20], atol=1e-5)


def test_new_vectors_transform_consistently(E):
    """Fitted on 2,000 items, applied to 1,000 unseen ones from the same distribution: row by row
    (a row's result does not depend on what else is in the batch) and, for whiten, still near
    white (sampling error only)."""
    for kind in ("none", "scale", "whiten"):
        A = fit_transform(E[:2000], kind)
        new = E[2000:2010]
        together = A(np.vstack([E[:5], new]))
        assert np.allclose(together[5:], A(new), atol=1e-5)
        assert np.allclose(np.vstack([A(v[None]) for v in new]), A(new), atol=1e-5)
    Z = fit_transform(E[:2000], "whiten")(E[2000:]).astype(np.float64)
    mu, C = centred_cov(Z)
    assert np.abs(mu).max() < 0.15 and np.abs(C - np.eye(D)).max() < 0.15
    # the fit on the first 2,000 agrees with the closed form computed on those 2,000 alone
    mu0, C0 = centred_cov(E[:2000])
    W0 = np.linalg.inv(np.real(sqrtm(C0)))
    assert np.allclose(fit_transform(E[:2000], "whiten")(E[2000:2010]), (E[2000:2010] - mu0) @ W0, atol=1e-3)


def test_rank_deficient_items_use_the_eigenvalue_floor():
    """50 items in 64 dimensions: the centred items span 49 of them. The 15 empty directions get
    eigenvalue eps·λmax instead of 0 (no division by zero); the 49 others are whitened."""
    rng = np.random.default_rng(1)
    E = rng.normal(size=(50, 64))
    eps = 1e-5
    A = fit_transform(E, "whiten", eps=eps)
    Z = A(E).astype(np.float64)
    assert np.isfinite(A.matrix).all() and np.isfinite(Z).all()
    _, C = centred_cov(E)
    lam = np.linalg.eigvalsh(C)
    assert (lam < 1e-10).sum() == 15  # the input really is rank-deficient
    # the largest gain is that of a floored direction: 1/sqrt(eps·λmax), not unbounded
    assert np.linalg.norm(A.matrix, 2) == pytest.approx(1 / np.sqrt(eps * lam.max()), rel=1e-6)
    _, CZ = centred_cov(Z)
    got = np.sort(np.linalg.eigvalsh(CZ))
    assert np.abs(got[-49:] - 1).max() < 1e-3 and np.abs(got[:15]).max() < 1e-6
    # and it stays invertible: the round trip holds on the items
    assert np.allclose(A.inverse(Z), E, atol=1e-3)
    # an exactly repeated dimension (another kind of deficiency) is finite too
    dup = np.hstack([E[:, :8], E[:, :1]])
    assert np.isfinite(fit_transform(dup, "whiten")(dup)).all()


def test_constant_items_are_refused_clearly():
    """Equal item vectors have no spread to scale or whiten (the floor eps·max would be 0): a clear
    error instead of inf/NaN vectors; `none` still works."""
    E = np.ones((10, 4))
    for kind in ("scale", "whiten"):
        with pytest.raises(ValueError, match="all equal.*--transform none"):
            fit_transform(E, kind)
    assert np.array_equal(fit_transform(E, "none")(E), E)


def test_errors(E):
    with pytest.raises(ValueError, match="unknown transform"):
        fit_transform(E, "pca")
    with pytest.raises(ValueError, match="dimension"):
        fit_transform(E, "scale")(np.zeros((2, 5)))


def test_inverse_round_trip(E):
    rng = np.random.default_rng(5)
    fresh = rng.normal(size=(20, D)) * 3  # not items: the inverse holds for any vector
    for kind in ("none", "scale", "whiten"):
        A = fit_transform(E, kind)
        assert np.allclose(A.inverse(A(E[:20])), E[:20], atol=1e-3)
        assert np.allclose(A(A.inverse(fresh)), fresh, atol=1e-3)
        if kind != "none":
            assert not np.allclose(A(E[:20]), E[:20], atol=0.1)  # a round trip through a real change
