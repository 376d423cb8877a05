"""Safety and provenance stages: prompt policy, frame review, watermark, C2PA signing, detector, audit log."""
