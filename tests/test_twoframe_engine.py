"""The classical two-frame engine and synthetic parallax pairs: end to end through a real server."""
from __future__ import annotations

import numpy as np
import pytest

from mattebox import engines
from mattebox.contract import MatteRequest
from mattebox.synth.pairs import HELD_OUT_SEEDS, make_pair, trimap_from_alpha
from mattebox_plugin.client import Client, JobFailed
from mattebox_plugin.protocol import ProtocolError


def test_pairs_are_deterministic_and_consistent():
    a, b = make_pair(5, size=(48, 64), real_alpha=False), make_pair(5, size=(48, 64), real_alpha=False)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.second, b.second)
    assert not np.array_equal(a.image, make_pair(6, size=(48, 64), real_alpha=False).image)
    # both frames obey the compositing equation with their own ground truth
    np.testing.assert_allclose(a.image, a.alpha[..., None] * a.foreground + (1 - a.alpha[..., None]) * a.background,
                               atol=1e-5)
    assert a.second.shape == a.image.shape and a.second_alpha.shape == a.alpha.shape
    assert not np.allclose(a.second, a.image)  # the second view moved
    assert a.parallax_px >= 5.0
    assert set(np.unique(a.trimap)) <= {0.0, 0.5, 1.0}
    assert len(HELD_OUT_SEEDS) == 1000


def test_true_layer_flows_carry_each_layer_of_the_second_view_onto_the_base_frame():
    from mattebox.matting.motion import warp

    pair = make_pair(7, size=(96, 128), real_alpha=False)
    inner = (slice(16, -16), slice(16, -16))  # away from the frame edge, where frame 0 has no pixels to show
    # alpha moves with the foreground layer: frame-1 alpha = frame-0 alpha at p + f(p)
    moved = warp(pair.second_alpha, pair.foreground_flow)
    assert np.abs(moved - pair.alpha)[inner].mean() < 0.05  # bilinear resampling of 1-px strands
    assert np.abs(pair.second_alpha - pair.alpha)[inner].mean() > 5 * np.abs(moved - pair.alpha)[inner].mean()
    # on pure background (both frames), the background flow lines frame 0 up with frame 1
    clear = (pair.alpha < 1e-3) & (warp(pair.second_alpha, pair.background_flow) < 1e-3)
    clear[:16] = clear[-16:] = False
    clear[:, :16] = clear[:, -16:] = False
    error = np.abs(warp(pair.second, pair.background_flow) - pair.image).sum(-1)[clear].mean()
    assert error < 0.25 * np.abs(pair.second - pair.image).sum(-1)[clear].mean()
    # the layers moved apart by the parallax
    assert np.median(np.linalg.norm(pair.foreground_flow - pair.background_flow, axis=-1)) > 4.0


def test_trimap_from_alpha_covers_fractional_alpha():
    alpha = np.zeros((20, 20), np.float32)
    alpha[5:15, 5:15] = 1.0
    alpha[10, 2] = 0.5
    trimap = trimap_from_alpha(alpha, 1)
    assert trimap[10, 2] == 0.5 and trimap[10, 10] == 1.0 and trimap[0, 19] == 0.0


def test_auto_chooses_the_pair_engine_only_with_a_second_frame():
    assert engines.resolve("auto", ["second"]).name == "classical-pair"
    assert engines.resolve("auto", []).name == "classical"


def test_pair_engine_without_second_is_the_classical_engine():
    pair = make_pair(3, size=(48, 64), real_alpha=False)
    request = MatteRequest(image=pair.image, trimap=pair.trimap)
    result = engines.get("classical-pair").matte(request)
    assert result.info["pair_usable"] is False and result.info["revealed_coverage"] == 0.0
    np.testing.assert_allclose(result.alpha, engines.get("classical").matte(request).alpha)


def test_pair_engine_end_to_end_through_a_server(mattebox_server):
    pair = make_pair(HELD_OUT_SEEDS[0], size=(72, 96), real_alpha=False)
    with Client(mattebox_server, timeout=60) as client:
        result = client.submit(image=pair.image, second=pair.second, trimap=pair.trimap,
                               params={"engine": "auto"}).result(timeout=60)
    assert result.info["engine"] == "classical-pair"
    assert result.info["pair_usable"] is True
    assert 0.0 < result.info["revealed_coverage"] <= 1.0
    assert result.alpha.shape == (72, 96)
    band = pair.trimap == 0.5
    assert np.abs(result.alpha - pair.alpha)[band].mean() < 0.2  # a matte, not noise


def test_second_frame_of_another_size_is_a_shape_mismatch(mattebox_server):
    pair = make_pair(1, size=(32, 48), real_alpha=False)
    with Client(mattebox_server, timeout=20) as client:
        with pytest.raises((JobFailed, ProtocolError)) as failure:  # the client checks before sending
            client.submit(image=pair.image, second=pair.second[:16], trimap=pair.trimap,
                          params={"engine": "classical-pair"})
    assert "shape_mismatch" in str(failure.value) and "second" in str(failure.value)


def test_a_second_frame_the_engine_does_not_use_is_reported_not_dropped_silently(mattebox_server):
    from mattebox_plugin.client import pair_note

    pair = make_pair(4, size=(32, 48), real_alpha=False)
    with Client(mattebox_server, timeout=20) as client:
        classical = client.submit(image=pair.image, second=pair.second, trimap=pair.trimap,
                                  params={"engine": "classical"}).result()
        both = client.submit(image=pair.image, second=pair.image, trimap=pair.trimap,
                             params={"engine": "auto"}).result()
    assert classical.info["ignored_inputs"] == ["second"]
    assert pair_note([classical.info]).startswith("second frame ignored on 1 frame(s): engine classical")
    assert "ignored_inputs" not in both.info and both.info["engine"] == "classical-pair"
    assert pair_note([both.info]).startswith("second frame not used on 1 of 1 frame(s): the second frame shows")
    assert pair_note([dict(both.info, pair_usable=True)] * 2) == "second frame used on 2 frame(s)"
    assert pair_note([{"engine": "classical"}]) is None
