"""The vocabulary of the shapes world, shared by the generator and the evaluator.

Colours are chosen far apart in RGB so that a colour can be read back from pixels.
"""

# name -> RGB (0..255)
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 235),
    "yellow": (245, 225, 40),
    "orange": (250, 140, 20),
    "purple": (150, 50, 200),
    "cyan": (40, 220, 230),
    "white": (250, 250, 250),
}

BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "dark blue": (15, 25, 90),
    "dark green": (15, 70, 30),
    "beige": (225, 210, 170),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Motions with a direction have a unit vector in (dx, dy) image coordinates (y grows downwards).
MOTION_VECTORS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-0.7071, -0.7071),
    "up-right": (0.7071, -0.7071),
    "down-left": (-0.7071, 0.7071),
    "down-right": (0.7071, 0.7071),
}
MOTIONS: tuple[str, ...] = tuple(MOTION_VECTORS) + ("still", "bouncing")
