"""Transform properties: whitening, scaling, consistency on new vectors."""

import numpy as np
import pytest

from idream.transform import fit_transform


@pytest.fixture(scope="module")
def E():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3000, 24)) @ rng.normal(size=(24, 24)) * 0.3 + 2.0


def test_whitened_identity_covariance(E):
    Z = fit_transform(E, "whiten")(E)
    assert np.abs(Z.mean(0)).max() < 1e-4
    assert np.abs(np.cov(Z, rowvar=False, bias=True) - np.eye(24)).max() < 1e-3


def test_scale_unit_mean_variance(E):
    Z = fit_transform(E, "scale")(E)
    assert Z.var(0).mean() == pytest.approx(1.0, rel=1e-4)
    # scale keeps directions: cosine similarities unchanged
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert cos(Z[0], Z[1]) == pytest.approx(cos(E[0], E[1]), rel=1e-4)


def test_new_vectors_transform_consistently(E):
    for kind in ("none", "scale", "whiten"):
        A = fit_transform(E[:2000], kind)
        new = E[2000:2010]
        together = A(np.vstack([E[:5], new]))
        assert np.allclose(together[5:], A(new), atol=1e-5)
        assert np.allclose(A(new), (new - A.mean) @ A.matrix, atol=1e-4)


def test_rank_deficient_items_stay_finite():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(50, 64))  # fewer items than dimensions
    Z = fit_transform(E, "whiten")(E)
    assert np.isfinite(Z).all()


def test_errors(E):
    with pytest.raises(ValueError, match="unknown transform"):
        fit_transform(E, "pca")
    with pytest.raises(ValueError, match="dimension"):
        fit_transform(E, "scale")(np.zeros((2, 5)))


def test_inverse_round_trip(E):
    for kind in ("none", "scale", "whiten"):
        A = fit_transform(E, kind)
        assert np.allclose(A.inverse(A(E[:20])), E[:20], atol=1e-3)
