"""Frame review: faces in real photos are found, face-free photos and shapes-world videos pass,
blurring hides the faces it found, and a face in a single frame of a video is caught."""

from __future__ import annotations

import numpy as np
import pytest

from cinecube.errors import CinecubeError
from cinecube.safety.frames import FaceReviewer, Finding, FrameReview, FrameReviewer, review_frames, sample_indices

cv2 = pytest.importorskip("cv2")


def _photo(name: str, long_side: int = 320) -> np.ndarray:
    from cinecube.data.assets import photo_paths

    try:
        paths = {p.name: p for p in photo_paths()}
    except CinecubeError as error:
        pytest.skip(str(error))
    if name not in paths:
        pytest.skip(f"{name} is not among the installed photos")
    image = cv2.cvtColor(cv2.imread(str(paths[name])), cv2.COLOR_BGR2RGB)
    scale = min(1.0, long_side / max(image.shape[:2]))
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _video(frame: np.ndarray, frames: int = 2) -> np.ndarray:
    return np.repeat(frame[None], frames, axis=0)


@pytest.fixture(scope="module")
def face_crop():
    """The astronaut's head and shoulders, 128 x 128."""
    image = _photo("astronaut.png", 512)
    return cv2.resize(image[0:300, 100:400], (128, 128), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", ["astronaut.png", "messi5.jpg"])
def test_real_faces_are_found_and_blocked(name):
    review = review_frames(_video(_photo(name, 640)))
    assert not review.allowed and review.action_taken == "blocked"
    assert review.findings and all(f.label == "face" and f.reviewer == "faces" for f in review.findings)
    x, y, w, h = review.findings[0].box
    assert w > 10 and h > 10 and 0 < review.findings[0].score <= 1


@pytest.mark.parametrize("name", ["fruits.jpg", "building.jpg", "baboon.jpg", "HappyFish.jpg", "coffee.png"])
def test_photos_without_people_pass(name):
    review = review_frames(_video(_photo(name)))
    assert review.allowed and review.findings == [] and review.action_taken == "none"


def test_shapes_world_videos_have_no_faces():
    from cinecube.data.shapes import ShapesWorld

    world = ShapesWorld(seed=3)
    for index in range(6):
        video = world.sample_at(index, 64, 64, 16).video
        review = review_frames(video)
        assert review.allowed and review.findings == [], index
        assert review.frames is video


def test_blur_hides_the_face_and_leaves_the_rest(face_crop):
    video = _video(face_crop, 4)
    review = review_frames(video, action="blur")
    assert review.allowed and review.action_taken == "blurred" and review.findings
    assert review.frames.shape == video.shape and review.frames.dtype == np.uint8
    # The blurred video has no detectable face, and every frame was changed.
    reviewer = FaceReviewer()
    assert all(reviewer.review(frame) == [] for frame in review.frames)
    assert all(np.abs(review.frames[t].astype(int) - video[t]).mean() > 1 for t in range(len(video)))
    # Pixels outside every (grown) box are untouched.
    outside = np.ones(video.shape[1:3], bool)
    for f in review.findings:
        x, y, w, h = f.box
        outside[
            max(0, int(y - 0.25 * h)) : int(y + 1.25 * h) + 2, max(0, int(x - 0.25 * w)) : int(x + 1.25 * w) + 2
        ] = False
    assert outside.any()
    assert np.array_equal(review.frames[:, outside], video[:, outside])


@pytest.mark.parametrize("face_at", [8, 5])
def test_a_face_in_one_middle_frame_of_sixteen_is_caught(face_crop, face_at):
    background = _photo("fruits.jpg")[:128, :128]
    video = _video(background, 16).copy()
    video[face_at] = face_crop
    review = review_frames(video, every_k=8)
    assert not review.allowed
    assert {f.frame_index for f in review.findings} == {face_at}
    assert face_at in review.reviewed

    blurred = review_frames(video, every_k=8, action="blur")
    assert blurred.allowed and blurred.action_taken == "blurred"
    assert review_frames(blurred.frames, every_k=1).findings == []
    # Frames far from the face are untouched.
    assert np.array_equal(blurred.frames[0], video[0])


def test_sampling_takes_ends_every_kth_and_sharp_changes():
    video = np.zeros((20, 32, 32, 3), np.uint8)
    assert sample_indices(video, 8) == [0, 8, 16, 19]
    video[11] = 255
    assert sample_indices(video, 8) == [0, 8, 11, 12, 16, 19]


def test_tiny_frames_are_upscaled_so_a_close_up_face_is_found(face_crop):
    small = cv2.resize(face_crop, (32, 32), interpolation=cv2.INTER_AREA)
    assert FaceReviewer().review(small)
    assert not FaceReviewer(min_side=1).review(small)  # without upscaling the cascade cannot see it


class RedReviewer:
    """Flags frames that are mostly red: a stand-in for any other reviewer."""

    name = "red"

    def review(self, frame):
        red = (frame[..., 0] > 200) & (frame[..., 1] < 80)
        if red.mean() < 0.5:
            return []
        return [Finding(0, self.name, "red", (0, 0, frame.shape[1], frame.shape[0]), float(red.mean()))]


def test_reviewers_are_pluggable():
    assert isinstance(RedReviewer(), FrameReviewer) and isinstance(FaceReviewer(), FrameReviewer)
    video = np.zeros((10, 40, 40, 3), np.uint8)
    video[9, ..., 0] = 255
    review = review_frames(video, reviewers=[RedReviewer()])
    assert isinstance(review, FrameReview) and not review.allowed
    assert [(f.frame_index, f.reviewer, f.label) for f in review.findings] == [(9, "red", "red")]


def test_bad_input_is_refused_with_a_clear_error():
    video = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(CinecubeError, match="action"):
        review_frames(video, action="warn")
    with pytest.raises(CinecubeError, match="uint8"):
        review_frames(video.astype(np.float32))
    with pytest.raises(CinecubeError, match="every_k"):
        review_frames(video, every_k=0)
