"""`cinecube eval conditioning`: its measurements on videos whose answer is known (the world's own
renders, and renders broken on purpose), and the command on a tiny pixel model."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest

from cinecube.autoencoder import PixelAutoencoder
from cinecube.data.shapes import ObjectSpec, Scene, render
from cinecube.evaluate import conditioning as cond
from cinecube.evaluate.adherence import EvalCase, heldout_cases, measure_video

RUNS = ("animate", "extend forward", "extend backward", "connect", "edit")


def _scene(motion="right", frames=14, height=48, width=48, color="red", shape="circle", x=0.3, y=0.5):
    velocity = {"right": (0.03, 0.0), "left": (-0.03, 0.0), "down": (0.0, 0.03), "still": (0.0, 0.0)}[motion]
    obj = ObjectSpec(color, shape, motion, 0.3, "medium", "", x, y, *velocity)
    return Scene(height, width, frames, "black", (obj,))


def _case(scene, prompt="a red circle moving right"):
    return EvalCase(prompt, scene, seed=3)


@pytest.mark.parametrize("temporal_factor", [1, 4])
def test_the_worlds_own_renders_pass_every_check(temporal_factor):
    # The ceiling of a pixel model is the render itself, with the given frames in place: the
    # measurer must read every check back as passed (else a model's figure would mean nothing).
    for case in heldout_cases(8, seed=99):
        for run in RUNS:
            plan = cond.plan_case(run, case, case.frames, case.height, case.width, temporal_factor)
            video = cond.ceiling(plan, PixelAutoencoder())
            assert video.shape == (case.frames, case.height, case.width, 3)
            for pasted_at, frames in plan.pasted:
                assert np.array_equal(video[pasted_at : pasted_at + len(frames)], frames)
            scored = cond.score(plan, video)
            assert all(v is True for v in scored["checks"].values()), (run, case.prompt, scored)


def test_a_jump_fails_the_seam_and_the_track():
    video = render(_scene("right", frames=14))
    jumped = video.copy()
    jumped[7:] = np.roll(video[7:], 12, axis=2)  # the object leaps 12 px at frame 7
    assert cond.jump_ratio(video, 6, 7) <= cond.SEAM_RATIO < cond.jump_ratio(jumped, 6, 7)
    assert cond.score_extend(video, 7, "forward")["checks"]["seam"] is True
    assert cond.score_extend(jumped, 7, "forward")["checks"]["seam"] is False
    # Connect: A = frames 0-1, B = 12-13; the transition jumps half way.
    assert cond.score_connect(video, 2)["checks"] == {"ends_join": True, "track_continuous": True}
    assert cond.score_connect(jumped, 2)["checks"]["track_continuous"] is False
    # A transition that sits still at A's position and jumps to B at the end.
    stuck = video.copy()
    stuck[2:12] = video[1]
    assert cond.score_connect(stuck, 2)["checks"] == {"ends_join": False, "track_continuous": False}


def test_a_still_clip_is_not_a_jump():
    video = render(_scene("still"))
    assert cond.jump_ratio(video, 0, 1) == 0.0  # the floor keeps 0 / 0 away
    assert cond.score_loop(video)["checks"]["loop_closes"] is True


def test_motion_that_turns_back_fails_direction_agreement():
    # Forward extension whose new frames play the given ones backwards: no seam (it turns
    # back from the last given frame), same colours, but the motion does not continue.
    video = render(_scene("right", frames=12))
    turned = np.concatenate([video[:7], video[:6][::-1]])
    scored = cond.score_extend(turned, 7, "forward")
    assert scored["checks"] == {"color_kept": True, "motion_continues": False, "seam": True}
    assert scored["directions"] == [["right", "left"]]
    # Backwards: the new frames come first; a time-reversed clip disagrees with the given part.
    backward = np.concatenate([video[6:][::-1], video[6:]])
    assert cond.score_extend(backward, 6, "backward")["checks"]["motion_continues"] is False
    assert cond.score_extend(video, 6, "backward")["checks"]["motion_continues"] is True


def test_an_object_that_changes_colour_or_shape_is_not_kept():
    scene = _scene("right")
    video = render(scene)
    case = _case(scene)
    assert cond.score_animate(case, video)["checks"] == {
        "color_kept": True,
        "shape_kept": True,
        "direction": True,
        "seam": True,
    }
    blue = render(dataclasses.replace(scene, objects=(dataclasses.replace(scene.objects[0], color="blue"),)))
    square = render(dataclasses.replace(scene, objects=(dataclasses.replace(scene.objects[0], shape="square"),)))
    recoloured = np.concatenate([video[:1], blue[1:]])
    reshaped = np.concatenate([video[:1], square[1:]])
    assert cond.score_animate(case, recoloured)["checks"]["color_kept"] is False
    assert cond.score_animate(case, recoloured)["checks"]["seam"] is False
    checks = cond.score_animate(case, reshaped)["checks"]
    assert checks["color_kept"] is True and checks["shape_kept"] is False
    # Moving the other way: the prompt's direction fails, identity holds.
    left = render(_scene("left", x=0.7))
    checks = cond.score_animate(case, left)["checks"]
    assert checks["direction"] is False and checks["color_kept"] is True


def test_a_loop_closes_only_when_it_comes_back():
    video = render(_scene("right", frames=10))
    there_and_back = np.concatenate([video, video[-2:0:-1]])  # last frame = frame 1
    assert cond.score_loop(there_and_back)["checks"]["loop_closes"] is True
    assert cond.score_loop(video)["checks"]["loop_closes"] is False


def test_edit_measures_colour_and_how_far_the_tracks_moved():
    scene = _scene("down", x=0.5, y=0.3)
    source = render(scene)
    recoloured = dataclasses.replace(scene, objects=(dataclasses.replace(scene.objects[0], color="green"),))
    case = _case(recoloured, "a green circle moving down")
    edited = render(recoloured)
    assert cond.score_edit(case, source, edited)["checks"] == {"color_follows": True, "track_kept": True}
    assert cond.score_edit(case, source, edited)["measures"]["track_distance_px"] == pytest.approx(0, abs=0.05)
    assert cond.score_edit(case, source, source)["checks"] == {"color_follows": False, "track_kept": True}
    shifted = np.roll(edited, 6, axis=2)
    scored = cond.score_edit(case, source, shifted)
    assert scored["checks"]["track_kept"] is False
    assert scored["measures"]["track_distance_px"] == pytest.approx(6, abs=0.3)
    empty = np.zeros_like(edited)
    assert cond.score_edit(case, source, empty)["checks"] == {"color_follows": False, "track_kept": False}


def test_recolouring_changes_the_objects_and_their_words_only():
    assert (
        cond.recolor_prompt("Blue square and a red circle on a dark blue backdrop", {"blue": "green", "red": "white"})
        == "Green square and a white circle on a dark blue backdrop"
    )
    for case in heldout_cases(20, seed=5):
        edited, mapping = cond.recolor(case)
        old = [o.color for o in case.scene.objects]
        new = [o.color for o in edited.scene.objects]
        assert set(mapping) <= set(old) and not set(mapping.values()) & set(old)
        assert len(set(new)) == len(new) and [mapping.get(c, c) for c in old] == new
        for colour in mapping.values():
            assert colour in edited.prompt.lower()
        assert edited.scene.background == case.scene.background and edited.seed == case.seed


def test_plans_put_the_given_frames_where_the_pipeline_puts_them():
    case = _case(_scene("right", frames=14))
    forward = cond.plan_case("extend forward", case, 14, 48, 48, temporal_factor=4)
    backward = cond.plan_case("extend backward", case, 14, 48, 48, temporal_factor=4)
    assert len(forward.inputs[0]) == 5 and forward.pasted[0][0] == 0  # 1 + 4k frames, the causal layout
    assert backward.pasted[0][0] == 9 and np.array_equal(backward.inputs[0], backward.source[9:])
    connect = cond.plan_case("connect", case, 14, 48, 48, temporal_factor=4)
    assert [len(x) for x in connect.inputs] == [2, 2] and connect.pasted[1][0] == 12
    assert cond.ceiling(cond.plan_case("loop", case, 14, 48, 48, 4), PixelAutoencoder()) is None


def test_modes_and_intervals():
    assert cond.parse_modes("edit, animate") == ("animate", "edit")
    for bad in ("", "animate,fly", "loop,loop"):
        with pytest.raises(argparse.ArgumentTypeError):
            cond.parse_modes(bad)
    assert cond.median_interval([]) is None
    low, high = cond.median_interval(list(range(30)))
    assert low < 14.5 < high and (low, high) == (9.0, 20.0)
    record = {"checks": {"color_follows": True, "track_kept": False}, "measures": {"track_distance_px": 4.0}}
    summary = cond.summarise("edit", [record | {"ceiling": None}, record | {"ceiling": record}])
    follows = summary["checks"]["color_follows"]
    assert follows["rate"] == 1.0 and follows["met"] is True and follows["interval_95"][1] == 1.0
    assert follows["ceiling"] == {"passed": 1, "scored": 1, "rate": 1.0}
    assert summary["measures"]["track_distance_px"]["median"] == 4.0


def test_the_command_writes_a_report_on_a_pixel_model(tiny_run, tmp_path, capsys):
    from cinecube.cli import main

    out = tmp_path / "report"
    args = ["eval", "conditioning", "--model", tiny_run, "--n", "2", "--steps", "2", "--out", out]
    assert main([str(a) for a in args]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "animate" in printed and "ceiling" in printed
    report = json.loads((out / "conditioning.json").read_text())
    assert list(report["summary"]) == ["animate", "extend forward", "extend backward", "loop", "connect", "edit"]
    for run, summary in report["summary"].items():
        assert summary["cases"] == 2 and len(report["records"][run]) == 2
        for name, check in summary["checks"].items():
            assert name in cond.CHECKS[run] and check["scored"] + summary["refused"] == 2
            if check["scored"]:
                assert check["interval_95"] is not None
            if run != "loop" and check["ceiling"]["scored"]:
                assert check["ceiling"]["rate"] == 1.0, (run, name)  # the render itself passes
        assert (out / "sheets" / cond.slug(run) / "contact_sheet.png").is_file()
    page = (out / "index.html").read_text()
    assert "sheets/extend-forward/contact_sheet.png" in page and "Wilson" in page
    assert cond.is_report_folder(out)
    # An earlier report is replaced only with --force; some modes only.
    assert main([str(a) for a in args]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([str(a) for a in [*args, "--modes", "loop", "--force"]]) == 0
    assert list(json.loads((out / "conditioning.json").read_text())["summary"]) == ["loop"]


@pytest.mark.parametrize(
    "bad,needle",
    [
        (["--n", "0"], "--n"),
        (["--modes", "animate,fly"], "unknown mode 'fly'"),
        (["--steps", "5000"], "--steps 5000"),
        (["--guidance", "-1"], "--guidance -1"),
        (["--seed", "-3"], "--seed"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_any_work(bad, needle, tmp_path, capsys, monkeypatch):
    import cinecube.pipeline
    from cinecube.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(cinecube.pipeline.Pipeline, "from_pretrained", no_model)
    out = tmp_path / "new" / "report"
    assert main(["eval", "conditioning", "--out", str(out), *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "new").exists()


def test_measure_video_reads_the_renders_the_checks_use():
    # The fixtures above rely on the measurer seeing one red circle moving right.
    (obj,) = measure_video(render(_scene("right")))
    assert (obj.color, obj.shape, obj.direction) == ("red", "circle", "right")
