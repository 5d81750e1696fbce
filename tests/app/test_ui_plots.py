"""The web app's numbers and pictures: PCA in numpy, SVG plots that escape what they show."""

from __future__ import annotations

import numpy as np

from app.services.pca import pca2
from app.ui import plots


def test_pca_finds_the_direction_of_spread() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    x = np.column_stack([t, 2 * t, 0.01 * rng.normal(size=200)])  # one real direction
    p = pca2(x)
    assert p.coords.shape == (200, 2)
    assert p.explained[0] > 0.99
    assert abs(np.corrcoef(p.coords[:, 0], t)[0, 1]) > 0.99
    np.testing.assert_allclose(p.coords.mean(axis=0), 0, atol=1e-9)
    again = pca2(x.copy())
    np.testing.assert_array_equal(p.coords, again.coords)  # signs are fixed
    # …by the loadings: mirrored data gives mirrored scores, not the same picture by chance
    np.testing.assert_allclose(pca2(-x).coords, -p.coords, atol=1e-9)


def test_pca_of_too_few_samples_or_dimensions() -> None:
    assert pca2(np.ones((1, 5))).explained == (0.0, 0.0)
    one_gene = pca2(np.arange(4.0).reshape(4, 1))
    assert one_gene.explained == (1.0, 0.0)
    assert np.all(one_gene.coords[:, 1] == 0)


def test_ticks_are_round_and_cover_the_range() -> None:
    assert plots.ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert plots.ticks(-7.3, 8.1) == [-5.0, 0.0, 5.0]
    assert plots.ticks(3.0, 3.0) == [3.0]


def test_plots_escape_what_they_show() -> None:
    svg = plots.scatter(
        [("<script>x</script>", 0.0, 1.0, "a&b"), ("s2", 1.0, 0.0, "c")],
        ["a&b", "c"],
        title="t",
        description="d",
        x_title="PC1",
        y_title="PC2",
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;x&lt;/script&gt;: a&amp;b" in svg
    assert svg.count('class="point"') == 2
    bar = plots.probability_bar([("x<y", 0.75), ("z", 0.25)], {"x<y": "#000"})
    assert 'aria-label="x&lt;y 75%, z 25%"' in bar
    curve = plots.line_chart(
        [("train", [(1.0, 2.0), (2.0, 1.0)])], title="c", description="d", x_title="e", y_title="l"
    )
    assert curve.count("<polyline") == 1
