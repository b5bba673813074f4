"""Robot adapters: kinematic chains, the ros2_control bridge core, and the refusal every robot core
raises (the Push-T robot, the world model's, the bridge)."""


class BadCommand(ValueError):
    """A command a robot core refuses (nothing of it runs); ``kind`` names the problem and keys the
    throttled log."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
