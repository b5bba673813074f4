"""Real-robot adapters: kinematic chains and the ros2_control bridge core."""
