import dataclasses
import os
import tempfile

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Signing keys and the audit log written by tests go to a throwaway config folder, never the
# user's; subprocesses started by tests inherit it.
os.environ["CINECUBE_CONFIG_DIR"] = tempfile.mkdtemp(prefix="cinecube-test-config-")


@pytest.fixture(scope="session")
def text_encoder():
    from cinecube.text import get_text_encoder

    return get_text_encoder(32)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny model trained for a few steps: a real checkpoint to load, generate from and resume."""
    from cinecube.config import PRESETS, TRAIN_PRESETS
    from cinecube.train.loop import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    config = dataclasses.replace(TRAIN_PRESETS["tiny"], steps=4, checkpoint_every=2, sample_every=4, log_every=1)
    train(PRESETS["tiny"], config, run_dir, progress=False)
    return run_dir
