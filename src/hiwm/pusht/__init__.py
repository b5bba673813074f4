"""Push-T: the physics world (gym-pusht), a scripted expert, and the robot core."""

from hiwm.pusht.env import GOAL_POSE, MAX_STEPS, Observation, PushTEnv, validate_action
from hiwm.pusht.expert import ExpertConfig, ScriptedExpert

__all__ = ["GOAL_POSE", "MAX_STEPS", "ExpertConfig", "Observation", "PushTEnv", "ScriptedExpert", "validate_action"]
