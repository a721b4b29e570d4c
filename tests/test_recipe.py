"""Issue 20's recipe, part by part: group sampling and pairs, the release gate's noise, weights on the
7-bit grid, and media as a social network passes it on."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from detector.config import REPO_ROOT
from detector.training.release import provenance
from detector.training.sampling import GroupSampler, parse_weights
from detector.training.tables import per_source, run_log, shared, targets


def _rows() -> list[dict]:
    rows = []
    # a video source: 2 groups, one with 40 frames of each label, one with 2
    for group, n in (("big", 40), ("small", 2)):
        for i in range(n):
            rows.append(
                {"source": "ffpp", "group": f"ffpp:{group}", "label": 0, "file": f"real_{group}_{i:02d}.jpg"}
            )
            rows.append(
                {
                    "source": "ffpp",
                    "group": f"ffpp:{group}",
                    "label": 1,
                    "file": f"deepfakes_{group}_x_{i:02d}.jpg",
                }
            )
    # an identity source whose fakes name their real: celeba_gN and celeba_gN_Blond_Hair
    for g in range(30):
        rows.append({"source": "stargan", "group": f"s:{g}", "label": 0, "file": f"celeba_g{g:02d}.jpg"})
        rows.append(
            {"source": "stargan", "group": f"s:{g}", "label": 1, "file": f"celeba_g{g:02d}_Blond_Hair.jpg"}
        )
    # a one-class source of single images
    for g in range(10):
        rows.append({"source": "sdfd", "group": f"sd:{g}", "label": 1, "file": f"fake/{g}.jpg"})
    return rows


def test_groups_count_once_whatever_they_hold():
    rows = _rows()
    sampler = GroupSampler(rows, batch=20, steps=400, pair_share=0.0)
    drawn = Counter(rows[i]["group"] for batch in sampler for i in batch if rows[i]["source"] == "ffpp")
    # 40 frames against 2, yet the two videos are drawn about equally often
    assert 0.8 < drawn["ffpp:big"] / drawn["ffpp:small"] < 1.25
    by_frame = GroupSampler(rows, batch=20, steps=400, pair_share=0.0, by_group=False)
    drawn = Counter(rows[i]["group"] for batch in by_frame for i in batch if rows[i]["source"] == "ffpp")
    assert drawn["ffpp:big"] / drawn["ffpp:small"] > 10


def test_every_batch_is_half_real_and_pairs_come_from_one_group_and_frame():
    rows = _rows()
    sampler = GroupSampler(rows, batch=16, steps=200, sbi=5, sbi_share=0.3, pair_share=0.5, seed=3)
    for batch in sampler:
        assert len(batch) == 16
        labels = [1 if i >= len(rows) else rows[i]["label"] for i in batch]
        assert labels.count(0) == 8
        for real, fake in zip(batch[:8:2], batch[1:8:2], strict=True):
            r, f = rows[real], rows[fake]
            assert (r["label"], f["label"]) == (0, 1) and r["group"] == f["group"]
            stem_r, stem_f = r["file"][:-4], f["file"][:-4]
            if r["source"] == "ffpp":
                assert stem_r[-2:] == stem_f[-2:]  # the same frame index
            else:
                assert stem_f.startswith(stem_r)  # the edit of this very face
    sources = Counter(rows[i]["source"] for b in sampler for i in b if i < len(rows))
    assert sources["sdfd"] > 0 and sum(1 for b in sampler for i in b if i >= len(rows)) > 0


def test_real_weight_draws_a_sources_real_faces_and_pairs_more_and_nothing_else():
    rows = _rows()

    def drawn(sampler: GroupSampler) -> tuple[Counter, Counter]:
        reals, fakes = Counter(), Counter()
        for batch in sampler:
            for i in batch:
                (fakes if rows[i]["label"] else reals)[rows[i]["source"]] += 1
        return reals, fakes

    plain_r, plain_f = drawn(GroupSampler(rows, batch=16, steps=300, seed=1))
    heavy_r, heavy_f = drawn(GroupSampler(rows, batch=16, steps=300, seed=1, real_weight={"ffpp": 4}))
    share = lambda c, s: c[s] / sum(c.values())  # noqa: E731
    assert share(heavy_r, "ffpp") > 1.5 * share(plain_r, "ffpp")
    # fakes come along only through pairs; the one-class source keeps its unpaired fake draws
    assert abs(heavy_f["sdfd"] - plain_f["sdfd"]) < 0.25 * plain_f["sdfd"]
    assert parse_weights("ffpp=4, political=2.5") == {"ffpp": 4.0, "political": 2.5}
    assert parse_weights("") == {}
    for bad in ("ffpp", "ffpp=0", "ffpp=x"):
        with pytest.raises(ValueError):
            parse_weights(bad)
    with pytest.raises(ValueError, match="politcal"):
        GroupSampler(rows, batch=8, steps=2, real_weight={"politcal": 4})


def test_a_recovery_can_draw_a_source_that_pruning_cost_more_often():
    from detector.training.prune import build_parser, draws

    ckpt = {"args": {"sampling": "groups", "pairs": 0.5, "real_weight": "political=4,ffpp=2"}}
    assert draws(ckpt) == ckpt["args"]  # by default as the student was trained
    heavier = draws(ckpt, build_parser().parse_args(["x.pt", "--real-weight", "political=8"]).real_weight)
    assert heavier == {"sampling": "groups", "pairs": 0.5, "real_weight": "political=8"}
    assert ckpt["args"]["real_weight"] == "political=4,ffpp=2"  # the checkpoint is not changed
    assert draws(ckpt, "")["real_weight"] == ""  # '' draws every source's reals alike
    with pytest.raises(ValueError, match="political"):
        draws(ckpt, "political")


def test_a_resumed_sampler_continues_with_the_same_batches():
    rows = _rows()
    whole = list(GroupSampler(rows, batch=8, steps=30, seed=7))
    resumed = list(GroupSampler(rows, batch=8, steps=30, seed=7, start=12))
    assert resumed == whole[12:] and len(resumed) == 18
    assert list(GroupSampler(rows, batch=8, steps=30, seed=8)) != whole


# --- the release gate (detector.training.release) ---


def test_the_release_gates_noise_is_a_bootstrap_over_groups():
    import numpy as np

    from detector.training.metrics import bootstrap_noise, source_masks

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    groups = np.array([f"g{i // 4}" for i in range(400)])  # 100 groups of 4 crops
    shipped = labels + rng.normal(0, 0.8, 400)  # AUC about 0.8
    noise = bootstrap_noise(labels, shipped, groups)
    assert 0.02 < noise < 0.08  # about 0.04 for 400 crops in 100 groups
    # ten groups of forty crops: fewer independent draws, more noise
    assert bootstrap_noise(labels, shipped, np.array([f"g{i // 40}" for i in range(400)])) > noise
    masks = source_masks(np.array([0, 1, 1]), np.array(["a", "a", "b"]))
    assert masks["a"].tolist() == [True, True, False]
    assert masks["b"].tolist() == [True, False, True]  # a fake-only set against every real face


def test_a_source_with_one_group_is_resampled_by_clip_not_by_frame():
    """Political validation is one person: its frames of one interview are near copies and count
    once together, so its noise is wider than crop by crop; a source with many groups keeps them."""
    import numpy as np

    from detector.training.metrics import bootstrap_noise, noise_units

    rng = np.random.default_rng(2)
    frames = [f"real/p_vid_Talk{i % 2}_f{i:06d}.jpg" for i in range(200)]  # two interviews
    photos = [f"real/p_photo_{i}.jpg" for i in range(20)] + [f"fake/p_{i}.jpg" for i in range(220)]
    rows = [{"source": "political", "group": "p", "file": f} for f in frames + photos]
    rows += [{"source": "dfdc", "group": f"v{i // 3}", "file": f"x{i}.jpg"} for i in range(60)]
    units = noise_units(rows)
    assert len(set(units[:200])) == 2  # each interview once
    assert len(set(units[200:440])) == 240  # each photo and each fake alone
    assert len(set(units[440:])) == 20  # dfdc's 20 videos, its groups

    labels = np.array([0] * 220 + [1] * 220)
    scores = np.concatenate([rng.normal(0.6 * (np.arange(200) % 2), 1), rng.normal(0, 1, 20)])
    scores = np.concatenate([scores, rng.normal(1, 1, 220)])
    by_crop = bootstrap_noise(labels, scores, np.arange(440).astype(str))
    assert bootstrap_noise(labels, scores, units[:440]) > 1.5 * by_crop


def test_units_names_the_interview_whose_real_frames_turned_fake():
    """``units`` tells which clip moved a fall: one interview's real frames scored higher (more
    fake), the other interview and the fakes unchanged."""
    import numpy as np

    from detector.training.units import unit_scores

    files = [f"real/p_vid_Talk{i % 2}_f{i:06d}.jpg" for i in range(40)] + [
        f"fake/p_{i}.jpg" for i in range(40)
    ]
    rows = [
        {"source": "political", "group": "p", "file": f, "label": int(f.startswith("fake"))} for f in files
    ]
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.uniform(0.0, 0.4, 40), rng.uniform(0.5, 1.0, 40)])
    scores[1:40:2] += 0.4  # Talk1's frames turn towards fake
    table = unit_scores(rows, scores)
    talk0, talk1 = (table["units"][f"political:p:p_vid_Talk{k}"] for k in (0, 1))
    assert (talk0["n"], talk0["label"], talk1["n"]) == (20, 0, 20)
    assert talk1["mean"] > talk0["mean"] + 0.3
    assert talk0["auc_vs_fakes"] == 1.0 and talk1["auc_vs_fakes"] < 0.9
    assert talk1["auc_vs_fakes"] < table["auc"] < talk0["auc_vs_fakes"]
    fakes = [u for u in table["units"].values() if u["label"] == 1]
    assert len(fakes) == 40 and not any("auc_vs_fakes" in u for u in fakes)  # each fake alone

    # sharpness: a blurred crop is softer than itself sharp, and a score that follows it correlates
    import cv2

    from detector.training.units import sharpness

    crop = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    soft, sharp = sharpness(np.stack([cv2.GaussianBlur(crop, (0, 0), 2.0), crop]))
    assert soft < sharp - 1
    focus = np.where(np.arange(80) < 40, 0.0, 1.0) + scores
    with_focus = unit_scores(rows, scores, focus)
    assert with_focus["sharpness_corr"] == {"0": 1.0, "1": 1.0}
    assert all("sharpness" in u for u in with_focus["units"].values()) and "sharpness" not in talk0


def _one_source_lost():
    """Validation scores of three sources before and after, where the pooled AUC rises while
    source b loses about 0.16."""
    import numpy as np

    rng = np.random.default_rng(1)
    n = 240  # per source: 120 real, 120 fake, in 60 groups of 4
    labels = np.tile(np.repeat([0, 1], n // 2), 3)
    sources = np.repeat(["a", "b", "c"], n)
    groups = np.array([f"{s}{i // 4}" for s, i in zip(sources, np.tile(np.arange(n), 3), strict=True)])
    before = labels + rng.normal(0, 0.7, 3 * n)
    after = before.copy()
    b, c = sources == "b", sources == "c"
    after[b] = labels[b] * 0.5 + rng.normal(0, 0.7, n)  # b lost about 0.16
    after[c] = labels[c] + rng.normal(0, 0.25, n)  # c gained more than that
    return labels, sources, groups, before, after


def test_a_source_lost_beyond_its_noise_is_named_though_the_pooled_score_rises():
    """The gate's rule and training's keep rule (``metrics.sources_fallen``): the sixth
    continuation of 2026-12-02 gained pooled and lost the StyleGAN faces."""
    from detector.training.metrics import auc, sources_fallen

    labels, sources, groups, before, after = _one_source_lost()
    assert auc(labels, after) > auc(labels, before)
    judged = sources_fallen(labels, sources, groups, before, after)
    assert [s for s, row in judged.items() if row["fallen"]] == ["b"]
    assert judged["a"]["before"] == judged["a"]["after"] and 0 < judged["a"]["noise"] < 0.1


def test_training_does_not_keep_weights_that_lose_a_source(tmp_path):
    """A continuation's best weights are judged against its start as the gate would judge
    them; a run log from before sources were saved beside the scores falls back to the pooled
    rule rather than failing."""
    import numpy as np

    from detector.training.train import continuation_losses

    labels, sources, groups, before, after = _one_source_lost()
    np.savez(
        tmp_path / "val_scores.npz", labels=labels, groups=groups, sources=sources, start=before, best=after
    )
    assert continuation_losses(tmp_path) == ["b"]
    np.savez(
        tmp_path / "val_scores.npz", labels=labels, groups=groups, sources=sources, start=before, best=before
    )
    assert continuation_losses(tmp_path) == []
    np.savez(tmp_path / "val_scores.npz", labels=labels, groups=groups, start=before, best=after)
    assert continuation_losses(tmp_path) == []


def test_a_pruned_model_recovers_only_from_the_weights_it_was_cut_from(tmp_path):
    """The two halves of a CPU release run in different sessions (make release-prune, then
    release-recover); weights trained on in between must not become the teacher unnoticed."""
    import pytest

    from detector.training.prune import check_base, fingerprint

    cut_from, trained_since = tmp_path / "a.pt", tmp_path / "b.pt"
    cut_from.write_bytes(b"weights as they were cut")
    trained_since.write_bytes(b"weights trained on since")
    ckpt = {"pruned": True, "pruning": {"base_fingerprint": fingerprint(cut_from)}}
    check_base(ckpt, cut_from)
    with pytest.raises(SystemExit, match="cut from other weights"):
        check_base(ckpt, trained_since)
    check_base({"pruned": True, "pruning": {}}, trained_since)  # pruned before fingerprints


def test_training_judges_validation_as_shared_too(tmp_path):
    """Weights that gain as shared at no cost as they are rank above the start, and a source
    lost only as shared refuses them (0.4.0 read compression as forgery: clean crops hid it)."""
    import numpy as np

    from detector.training.train import continuation_gain, continuation_losses, judged_score

    labels, sources, groups, before, after = _one_source_lost()
    np.savez(
        tmp_path / "val_scores.npz",
        labels=labels,
        groups=groups,
        sources=sources,
        start=before,
        best=before,
        start_shared=before,
        best_shared=after,
    )
    assert continuation_losses(tmp_path) == ["b (shared)"]
    assert continuation_gain(tmp_path)["gain"] == 0
    assert continuation_gain(tmp_path, shared=True)["gain"] > 0
    start = {"val_auc": 0.88, "val_auc_shared": 0.57}
    assert judged_score({"val_auc": 0.878, "val_auc_shared": 0.66}) > judged_score(start)
    assert judged_score({"val_auc": 0.8}) == 0.8  # a run from before shared scoring


# --- weights trained onto the 7-bit grid (detector.training.qat) ---


def test_weights_learn_the_7_bit_grid_and_keep_it_after_baking():
    import torch
    from torch import nn

    from detector.training.qat import LIMIT, bake, on_the_grid

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 8, 8)
    assert on_the_grid(model) == 2
    out = model(x)
    out.sum().backward()  # the rounding passes gradients straight through
    assert model[0].parametrizations.weight.original.grad.abs().sum() > 0
    bake(model)
    for conv in (model[0], model[2]):
        w = conv.weight.detach()
        scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / LIMIT
        steps = w / scale
        assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= LIMIT + 1e-4
    assert torch.allclose(model(x), out, atol=1e-5)  # baked: the same function, no rounding left


# --- media as people share it (detector.training.evaluate) ---


def test_a_social_copy_is_360_lines_of_h264_with_the_audio_and_smaller(tmp_path, make_clip, face_image):
    import av

    from detector.training.evaluate import social_copy
    from detector.video import probe_video

    clip = make_clip(tmp_path / "hd.mp4", [face_image(1)], size=(1280, 720), seconds=1.0, audio=True)
    copy = social_copy(clip, tmp_path / "shared.mp4")
    info = probe_video(copy)
    assert (info.width, info.height) == (640, 360) and info.has_audio
    with av.open(str(copy)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    small = make_clip(tmp_path / "small.mp4", [face_image(1)], size=(320, 240))
    assert probe_video(social_copy(small, tmp_path / "small-shared.mp4")).height == 240  # never up


def test_crops_at_a_smaller_scale_lose_detail_but_keep_their_size():
    import numpy as np

    from detector.training.evaluate import at_scale

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    out = at_scale(crops, 1 / 3)
    assert out.shape == crops.shape and out.dtype == np.uint8
    # fine noise is gone: neighbouring pixels are far closer than in the original
    assert (
        np.abs(np.diff(out.astype(int), axis=1)).mean()
        < np.abs(np.diff(crops.astype(int), axis=1)).mean() / 3
    )


def test_crops_as_shared_also_pass_through_the_video_codec(face_image):
    """The shared copy of a crop is the scaled one plus x264's loss at the social CRF: same size,
    different pixels, and further from the original than scaling alone."""
    import cv2
    import numpy as np

    from detector.training.evaluate import SOCIAL_CRF, at_scale

    crops = np.stack([cv2.resize(face_image(i), (224, 224)) for i in range(2)])
    scaled, shared = at_scale(crops, 1 / 2), at_scale(crops, 1 / 2, SOCIAL_CRF)
    assert shared.shape == crops.shape and shared.dtype == np.uint8
    assert np.abs(shared.astype(int) - crops).mean() > np.abs(scaled.astype(int) - crops).mean() + 0.2


def test_the_model_pages_targets_say_how_far_each_figure_is_from_its_goal():
    report = json.loads((REPO_ROOT / "models" / "unmask-lite0" / "report.json").read_text())
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in targets(report).splitlines()[2:]}
    dfdc = report["per_source"]["dfdc"]["auc"]
    assert rows["AUC `dfdc`"][3].rstrip(" |") == ("met" if dfdc >= 0.88 else f"{0.88 - dfdc:.4f}")
    drop = report["jpeg_auc_drop_95_to_30"]
    assert rows["JPEG 95 -> 30 AUC drop"][3].rstrip(" |") == ("met" if drop <= 0.03 else f"{drop - 0.03:.4f}")
    # Every two-class source has a decided row; one-class sets have none.
    assert "decided `dfdc`" in rows and "decided `sdfd`" not in rows
    assert per_source(report).count("\n") == len(report["per_source"]) + 2


def test_the_run_log_table_counts_only_kept_steps_and_shows_each_gains_noise():
    entry = {"val_auc": 0.80, "per_source": {}}
    log = {
        "continuations": [
            {"date": "d1", "steps": 600, "minutes": 25.9, "kept": True, "start": entry, "best": entry},
            {
                "date": "d2",
                "steps": 900,
                "minutes": 30,
                "kept": False,
                "start": entry,
                "best": {"val_auc": 0.81},
                "gain": {"gain": 0.01, "low": -0.002, "high": 0.02},
                "fallen": ["political"],
            },
            {
                "date": "d3",
                "steps": 400,
                "minutes": 12,
                "kept": True,
                "start": None,
                "best": None,
                "fallen": [],
            },
        ]
    }
    rows = run_log(log).splitlines()[2:]
    assert [r.split("|")[-2].strip() for r in rows] == ["600", "600", "1000"]
    assert "+0.0100 (-0.0020 to +0.0200)" in rows[1] and "| political | no |" in rows[1]
    assert "| none | yes |" in rows[2] and "0.8100" in rows[1]


def test_the_model_page_shows_each_sources_auc_as_shared_beside_as_it_is():
    report = json.loads((REPO_ROOT / "models" / "unmask-lite0" / "report.json").read_text())
    table = shared(report)
    rows = {
        line.split(" | ")[0][2:]: line.split(" | ") for line in table.splitlines() if line.startswith("| `")
    }
    assert set(rows) == {f"`{name}`" for name in report["per_source"]}
    copy = report["shared_360p_crf35"]
    assert float(rows["`dfdc`"][3].rstrip(" |")) == copy["per_source_auc"]["dfdc"]
    assert f"{copy['auc']:.4f} |" in table.splitlines()[-3]
    assert _pct_text(copy["verdicts"]["real_called_fake"]) in table
    # a report from before the shared crops says so instead of failing
    assert "predates" in shared({k: v for k, v in report.items() if k != "shared_360p_crf35"})


def _pct_text(x: float) -> str:
    return f"reals called fake {100 * x:.1f} %"


def test_a_release_card_says_which_weights_and_how_much_training_made_it():
    weights = REPO_ROOT / "models" / "weights" / "lite0-student.pt"
    log = json.loads(weights.with_suffix(".log.json").read_text())
    said = provenance(weights)
    kept = [c for c in log["continuations"] if c["kept"]]
    assert said["weights"]["cumulative_steps"] == sum(c["steps"] for c in kept)
    assert said["weights"]["val_auc"] == kept[-1]["best"]["val_auc"]
    assert {"ffpp", "sdfd", "political", "dfdc:fake"} <= set(said["leave_one_source_out"]["withheld_auc"])
